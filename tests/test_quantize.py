"""`mobilecls quantize`: checked, self-describing .tflite files; bad input leaves nothing behind."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.export.metadata import read_metadata
from mobilecls.models import build_model


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from mobilecls._tf import keras

    folder = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)  # the same weights whichever tests ran before in this worker
    model = build_model("shufflenet_v2", width=0.5, input_size=32, num_classes=10)
    model.save(folder / "best.keras")
    names = ["blob", "checkerboard", "circle", "cross", "diagonal_stripes", "horizontal_stripes", "ring",
             "square", "triangle", "vertical_stripes"]
    (folder / "classes.json").write_text(json.dumps(names))
    return folder / "best.keras", model, names


def test_fp32_file_gives_keras_probabilities_and_carries_its_class_names(saved_model, tmp_path):
    from mobilecls._tf import Interpreter

    path, model, names = saved_model
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(path), "--fp32", "-o", str(out)])
    assert result.exit_code == 0, result.output
    content = out.read_bytes()
    meta = read_metadata(content)
    assert meta["class_names"] == names and meta["input_size"] == [32, 32] and meta["mode"] == "fp32"
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    image = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    logits = model(image, training=False).numpy()
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()  # the file ends in a softmax
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-3)


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_int8_from_a_float_model_is_full_integer_with_the_requested_io(saved_model, tmp_path, io):
    path, _, _ = saved_model
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(path), "--int8", "--data", "synthetic", "--io", io,
                                       "--calibration-steps", "40", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{io}, " in result.output and "1 XNNPACK partition(s)" in result.output
    assert read_metadata(out.read_bytes())["io"] == io


def test_int8_without_calibration_data_is_an_error_and_writes_nothing(saved_model, tmp_path):
    path, _, _ = saved_model
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(path), "--int8", "-o", str(out)])
    assert result.exit_code == 2 and "needs calibration data: pass --data SPEC" in result.output
    assert not out.exists()


def test_not_a_keras_file_is_a_one_line_error(tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_bytes(b"not a zip file at all")
    result = CliRunner().invoke(main, ["quantize", str(bogus), "--fp32", "-o", str(tmp_path / "m.tflite")])
    assert result.exit_code == 2 and "is not a loadable Keras model" in result.output
    assert len(result.output.strip().splitlines()[-1]) < 400
    assert not (tmp_path / "m.tflite").exists()


def test_truncated_keras_file_is_an_error(saved_model, tmp_path):
    path, _, _ = saved_model
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(path.read_bytes()[:5000])
    result = CliRunner().invoke(main, ["quantize", str(truncated), "--fp32", "-o", str(tmp_path / "m.tflite")])
    assert result.exit_code == 2 and "is not a loadable Keras model" in result.output


def test_missing_model_file(tmp_path):
    result = CliRunner().invoke(main, ["quantize", str(tmp_path / "none.keras"), "--fp32"])
    assert result.exit_code == 2 and "model file not found" in result.output


def test_calibration_images_of_the_wrong_size_are_refused(tmp_path):
    model = build_model("mobilenet_v2", width=0.35, input_size=64, num_classes=10)
    model.save(tmp_path / "m.keras")
    result = CliRunner().invoke(main, ["quantize", str(tmp_path / "m.keras"), "--int8", "--data", "synthetic",
                                       "-o", str(tmp_path / "m.tflite")])
    assert result.exit_code == 2 and "are 32x32x3; the model expects 64x64x3" in result.output
    assert not (tmp_path / "m.tflite").exists()


def test_class_names_that_do_not_match_the_outputs_are_refused(tmp_path):
    model = build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=5)
    model.save(tmp_path / "m.keras")
    result = CliRunner().invoke(main, ["quantize", str(tmp_path / "m.keras"), "--fp32", "--data", "synthetic",
                                       "-o", str(tmp_path / "m.tflite")])
    assert result.exit_code == 2 and "10 class names" in result.output and "5 outputs" in result.output


def test_read_metadata_refuses_a_non_tflite_file():
    with pytest.raises(ValueError, match="not a TFLite file"):
        read_metadata(b"PK\x03\x04 a zip")


def test_written_files_get_normal_permissions_not_the_temp_files_0600(tmp_path):
    import os

    from mobilecls.files import write_atomically

    write_atomically(tmp_path / "a.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o666 & ~mask
    assert os.listdir(tmp_path) == ["a.json"]


def test_report_ranks_per_layer_ptq_error_and_keeps_the_worst_layers_in_float(saved_model, tmp_path):
    from mobilecls.data import load
    from mobilecls.export.convert import inspect_tflite, to_tflite
    from mobilecls.export.quantize import calibration_images
    from mobilecls.export.quantize_debug import with_layers_in_float
    from mobilecls.models.io import load_keras_model
    from mobilecls.runtime import predict_tflite

    path, model, _ = saved_model
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(path), "--int8", "--data", "synthetic", "--calibration-steps",
                                       "20", "--report", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "int8 with those 5 in float" in result.output
    report = json.loads((tmp_path / "m_report.json").read_text())
    rows = {row["tensor"]: row for row in report["layers"]}
    assert len(rows) > 40  # one row per quantized op of ShuffleNetV2
    assert {row["layer"] for row in rows.values()} <= {layer.name for layer in model.layers}
    errors = [row["rmse_over_scale"] for row in rows.values()]
    assert all(error >= 0 for error in errors)
    worst = [rows[tensor]["rmse_over_scale"] for tensor in report["worst"]]
    assert len(worst) == 5 and worst == sorted(worst, reverse=True) and worst[-1] >= sorted(errors)[-6]
    # The two files the report measured, made again from the same model file and images: the plain
    # int8 file has no float op; the other one has exactly the five worst ops in float, and is larger.
    model = load_keras_model(str(path))
    data = load("synthetic")
    calibration, debug = calibration_images(data, 20), calibration_images(data, 64, seed=1)
    plain = to_tflite(model, "int8", calibration=[calibration])
    kept = with_layers_in_float(model, calibration, debug, report["worst"])
    assert inspect_tflite(plain).float_ops == ()
    assert sorted(inspect_tflite(kept).float_ops) == sorted(rows[tensor]["op"] for tensor in report["worst"])
    assert len(kept) > len(plain)
    # What the report measured is what those files and the float model score on the val split, and
    # keeping the five layers in float changes what the file computes.
    val = data.splits["val"]
    plain_scores, kept_scores = predict_tflite(plain, val.images), predict_tflite(kept, val.images)

    def accuracy(scores):
        return float(np.mean(np.asarray(scores).argmax(axis=1) == val.labels))

    float_scores = model.predict(val.images.astype(np.float32), batch_size=256, verbose=0)
    assert report["accuracy"] == pytest.approx({"float": accuracy(float_scores), "int8": accuracy(plain_scores),
                                                "int8_worst_in_float": accuracy(kept_scores)})
    assert np.abs(kept_scores - plain_scores).max() > 0


def test_report_measures_the_ranges_of_the_range_quantile_it_is_given(saved_model, tmp_path):
    from mobilecls.data import load
    from mobilecls.export.quantize import calibration_images
    from mobilecls.export.quantize_debug import layer_errors
    from mobilecls.models.io import load_keras_model

    path, _, _ = saved_model
    result = CliRunner().invoke(main, ["quantize", str(path), "--int8", "--data", "synthetic", "--calibration-steps",
                                       "20", "--range-quantile", "0.9", "--report", "-o", str(tmp_path / "q.tflite")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "q_report.json").read_text())
    assert report["range_quantile"] == 0.9
    data = load("synthetic")
    min_max = layer_errors(load_keras_model(str(path)), calibration_images(data, 20),
                           calibration_images(data, 64, seed=1))
    scales = {row["tensor"]: row["scale"] for row in min_max}
    clipped = {row["tensor"]: row["scale"] for row in report["layers"]}
    assert clipped.keys() == scales.keys()
    # the 0.9 quantile of 20 images' maxima lies within their max: no wider range, several narrower
    assert all(clipped[t] <= scales[t] * (1 + 1e-6) for t in scales)
    assert sum(clipped[t] < 0.99 * scales[t] for t in scales) >= 10


@pytest.mark.slow  # three more conversions with calibration, ~1 min
def test_layers_kept_in_float_are_float_in_the_file_and_nearly_all_give_the_float_model(saved_model, pixels):
    from mobilecls.export.convert import inspect_tflite, to_tflite
    from mobilecls.export.quantize_debug import layer_errors, with_layers_in_float
    from mobilecls.runtime import predict_tflite

    _, model, _ = saved_model
    calibration, debug = pixels(8, 32, seed=1), pixels(4, 32, seed=2)
    rows = layer_errors(model, calibration, debug)
    assert inspect_tflite(to_tflite(model, "int8", calibration=[calibration])).float_ops == ()
    two = inspect_tflite(with_layers_in_float(model, calibration, debug, [row["tensor"] for row in rows[-2:]]))
    assert len(two.float_ops) == 2
    # all but the last op in float (the debugger needs one quantized op left to debug)
    nearly_float = with_layers_in_float(model, calibration, debug, [row["tensor"] for row in rows[:-1]])
    # on calibrated images: the one int8 op left clips what lies outside its calibrated range
    # (CI's run of 2026-12-03 drew 4 other images, unseeded weights, and missed 2 % by clipping)
    images = calibration[:4]
    expected = model.predict(images, verbose=0)
    assert len(inspect_tflite(nearly_float).float_ops) >= len(rows) - 1
    # ops the debugger does not verify (reshapes, transposes, concatenations) stay int8
    assert np.abs(predict_tflite(nearly_float, images) - expected).max() <= 0.02 * np.abs(expected).max()


def test_report_needs_int8_and_data(saved_model):
    path, _, _ = saved_model
    result = CliRunner().invoke(main, ["quantize", str(path), "--fp16", "--report"])
    assert result.exit_code == 2 and "--report needs --int8 and --data" in result.output
