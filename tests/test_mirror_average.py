"""`quantize --mirror [--shift]`: files that average the logits over the image and its mirror image
(and, with --shift, over those two shifted one pixel up-left and down-right)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.export.metadata import read_metadata
from mobilecls.export.mirror_average import mirror_averaged
from mobilecls.models import build_model

NAMES = ["blob", "checkerboard", "circle", "cross", "diagonal_stripes", "horizontal_stripes", "ring", "square",
         "triangle", "vertical_stripes"]  # the synthetic data's classes (its calibration images)


@pytest.fixture(scope="module")
def float_model():
    from mobilecls._tf import keras

    keras.utils.set_random_seed(0)
    return build_model("mobilenet_v1", width=0.25, input_size=32, num_classes=10)


@pytest.fixture(scope="module")
def saved(float_model, tmp_path_factory):
    """best.keras and, from the same weights, a calibrated QAT model.h5, each with its classes.json."""
    from mobilecls.optimize.qat import qat

    folder = tmp_path_factory.mktemp("run")
    float_model.save(folder / "best.keras")
    images = np.random.default_rng(1).uniform(0, 255, (40, 32, 32, 3)).astype("float32")
    qat(float_model, calibration=images).save(folder / "model.h5")
    (folder / "classes.json").write_text(json.dumps(NAMES))
    return folder


def _images(count, seed=2):
    return np.random.default_rng(seed).uniform(0, 255, (count, 32, 32, 3)).astype("float32")


def _run(content, images):
    from mobilecls.runtime import predict_tflite

    return predict_tflite(content, images)


def test_the_wrapper_returns_the_mean_logits_of_the_image_and_its_mirror_image(float_model):
    wrapped = mirror_averaged(float_model)
    for image in _images(3):
        image = image[None]
        expected = (float_model(image, training=False) + float_model(image[:, :, ::-1], training=False)) / 2
        np.testing.assert_allclose(wrapped(image).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert wrapped.input_shape == (1, 32, 32, 3) and wrapped.output_shape == (1, 10)
    # the model is shared, not copied: the same weight variables, the original left as it was
    assert {id(w) for w in wrapped.weights} == {id(w) for w in float_model.weights}
    assert float_model.input_shape == (None, 32, 32, 3)


def test_shift_averages_six_views_the_image_and_its_mirror_each_as_is_and_shifted_one_pixel(float_model):
    wrapped = mirror_averaged(float_model, shift=True)
    image = _images(1)[0]
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:32, :32], padded[2:, 2:]
    assert np.array_equal(up_left[1:, 1:], image[:-1, :-1]) and np.array_equal(up_left[0, 1:], image[1, :-1])
    views = [view for v in (image, up_left, down_right) for view in (v, v[:, ::-1])]
    expected = np.mean([float_model(view[None], training=False).numpy() for view in views], axis=0)
    np.testing.assert_allclose(wrapped(image[None]).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert {id(w) for w in wrapped.weights} == {id(w) for w in float_model.weights}
    # the mirror image's views are the image's views mirrored: same scores
    np.testing.assert_allclose(wrapped(image[None, :, ::-1]).numpy(), wrapped(image[None]).numpy(), atol=1e-5)


def test_a_model_that_does_not_take_images_is_refused():
    from mobilecls._tf import keras

    inputs = keras.Input((8,))
    with pytest.raises(ValueError, match="mirror averaging needs a model taking images .N, H, W, C.; .* takes"):
        mirror_averaged(keras.Model(inputs, keras.layers.Dense(3)(inputs)))


@pytest.mark.parametrize("shift", [False, True])
def test_fp32_file_gives_the_wrappers_probabilities_and_the_same_scores_for_a_mirrored_image(saved, float_model,
                                                                                            shift):
    flags = ["--mirror", "--shift"] if shift else ["--mirror"]
    result = CliRunner().invoke(main, ["quantize", str(saved / "best.keras"), "--fp32", *flags])
    assert result.exit_code == 0, result.output
    out = saved / f"best_fp32_mirror{'_shift' if shift else ''}.tflite"  # the default name says it
    content = out.read_bytes()
    meta = read_metadata(content)
    assert meta["mirror_average"] is True and meta["class_names"] == NAMES
    assert meta.get("shift_average", False) is shift
    images = _images(4)
    logits = np.concatenate([mirror_averaged(float_model, shift)(image[None]).numpy() for image in images])
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_run(content, images), expected, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(_run(content, images[:, :, ::-1]), _run(content, images), atol=1e-6)


@pytest.mark.parametrize("source", ["best.keras", "model.h5"])
def test_int8_file_is_full_integer_with_the_network_in_one_xnnpack_partition(saved, source, tmp_path):
    from mobilecls.export.convert import inspect_tflite

    plain, mirrored = tmp_path / "plain.tflite", tmp_path / "mirror.tflite"
    for out, flags in ((plain, []), (mirrored, ["--mirror"])):
        result = CliRunner().invoke(main, ["quantize", str(saved / source), "--int8", "--data", "synthetic",
                                           "--calibration-steps", "40", *flags, "-o", str(out)])
        assert result.exit_code == 0, result.output
    report, plain_report = inspect_tflite(mirrored.read_bytes()), inspect_tflite(plain.read_bytes())
    assert {"REVERSE_V2", "CONCATENATION"} <= set(report.ops) and report.ops.count("MEAN") == 2  # pool, mirror mean
    assert report.float_ops == () and report.input_dtype == report.output_dtype == "uint8"
    # the network stays in one XNNPACK partition: only the mirror image (3 KB) is made outside it
    assert report.partitions == plain_report.partitions == 1
    assert set(report.undelegated) - set(plain_report.undelegated) == {"REVERSE_V2"}
    # the weights are stored once: the file is the plain file's size but for the added ops and the longer
    # tensor names (each carries the wrapper's name); a second copy of the weights would double it
    assert 0 < len(mirrored.read_bytes()) - len(plain.read_bytes()) < 0.03 * len(plain.read_bytes())
    meta = read_metadata(mirrored.read_bytes())
    assert meta["mirror_average"] is True and meta["qat"] is (source == "model.h5")
    images = _images(8).round()
    scores = _run(mirrored.read_bytes(), images)
    np.testing.assert_allclose(_run(mirrored.read_bytes(), images[:, :, ::-1]), scores, atol=1 / 256 + 1e-6)


def test_int8_of_a_qat_model_with_mirror_needs_data_and_writes_nothing_without(saved, tmp_path):
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(saved / "model.h5"), "--int8", "--mirror", "-o", str(out)])
    assert result.exit_code != 0
    assert "--int8 --mirror needs calibration data for the image views and their mean: pass --data SPEC" in \
        result.output
    assert not out.exists()


def test_report_and_mirror_together_are_refused(saved):
    result = CliRunner().invoke(main, ["quantize", str(saved / "best.keras"), "--int8", "--data", "synthetic",
                                       "--report", "--mirror"])
    assert result.exit_code == 2 and "run it without --mirror" in result.output


def test_int8_file_with_shift_keeps_the_network_in_one_partition_and_is_marked(saved, tmp_path):
    from mobilecls.export.convert import inspect_tflite

    result = CliRunner().invoke(main, ["quantize", str(saved / "model.h5"), "--int8", "--data", "synthetic",
                                       "--calibration-steps", "40", "--mirror", "--shift"])
    assert result.exit_code == 0, result.output
    out = saved / "model_int8_mirror_shift.tflite"  # the default name says both
    report = inspect_tflite(out.read_bytes())
    assert report.float_ops == () and report.input_dtype == report.output_dtype == "uint8"
    assert {"MIRROR_PAD", "REVERSE_V2", "SLICE"} <= set(report.ops)
    # only the padded image and its mirror image (on the 3 KB input) are made outside XNNPACK, and the
    # int8 softmax after it, as in the plain file (the test above)
    assert report.partitions == 1 and set(report.undelegated) == {"MIRROR_PAD", "REVERSE_V2", "SOFTMAX"}
    meta = read_metadata(out.read_bytes())
    assert meta["mirror_average"] is True and meta["shift_average"] is True and meta["qat"] is True
    images = _images(6).round()
    scores = _run(out.read_bytes(), images)
    np.testing.assert_allclose(_run(out.read_bytes(), images[:, :, ::-1]), scores, atol=1 / 256 + 1e-6)
    # `upgrade` rewrites the metadata and keeps what the file does
    upgraded = tmp_path / "upgraded.tflite"
    upgraded.write_bytes(out.read_bytes())
    result = CliRunner().invoke(main, ["upgrade", str(upgraded)])
    assert result.exit_code == 0, result.output
    meta = read_metadata(upgraded.read_bytes())
    assert (meta["mirror_average"], meta["shift_average"], meta["upgraded_from"]) == (True, True, upgraded.name)


def test_shift_without_mirror_is_refused_and_writes_nothing(saved, tmp_path):
    out = tmp_path / "s.tflite"
    result = CliRunner().invoke(main, ["quantize", str(saved / "best.keras"), "--fp32", "--shift", "-o", str(out)])
    assert result.exit_code != 0
    assert "--shift adds shifted views to --mirror's two: use it with --mirror" in result.output
    assert not out.exists()
