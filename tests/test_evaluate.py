"""`mobilecls eval`: same metrics for .keras and .tflite, sharded TFLite inference, clear errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.data import load
from mobilecls.evaluation.evaluate import compare, evaluate
from mobilecls.models import build_model
from mobilecls.runtime import TFLiteClassifier, predict_tflite


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from mobilecls.export.quantize import quantize

    folder = tmp_path_factory.mktemp("eval")
    data = load("synthetic")
    (folder / "classes.json").write_text(json.dumps(list(data.class_names)))
    model = build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=10)
    # An untrained model's BatchNorm statistics (mean 0, variance 1) on raw pixels give logits so
    # large that the file's softmax overflows; a few training-mode passes set realistic ones.
    pixels = data.splits["train"].images[:64].astype("float32")
    for _ in range(20):
        model(pixels, training=True)
    model.save(folder / "best.keras")
    quantize(str(folder / "best.keras"), "fp32", str(folder / "fp32.tflite"))
    quantize(str(folder / "best.keras"), "int8", str(folder / "int8.tflite"), data="synthetic",
             calibration_steps=40, io="int8")
    return folder, data


def test_sharded_tflite_predictions_equal_one_interpreter(files):
    folder, data = files
    content = (folder / "int8.tflite").read_bytes()
    images = data.splits["val"].images[:30]
    np.testing.assert_array_equal(predict_tflite(content, images, workers=3), TFLiteClassifier(content).predict(images))


def test_fp32_tflite_and_keras_give_the_same_metrics(files):
    folder, data = files
    keras_metrics = evaluate(str(folder / "best.keras"), "synthetic", split="test", dataset=data)
    tflite_metrics = evaluate(str(folder / "fp32.tflite"), "synthetic", split="test", dataset=data)
    samples = len(data.splits["test"])
    assert keras_metrics["samples"] == tflite_metrics["samples"] == samples
    assert tflite_metrics["accuracy"] == pytest.approx(keras_metrics["accuracy"], abs=2.5 / samples)  # <= 2 images
    assert np.abs(np.subtract(tflite_metrics["confusion"], keras_metrics["confusion"])).max() <= 2


def test_int8_file_is_evaluated_with_its_own_quantization(files):
    folder, data = files
    classifier = TFLiteClassifier((folder / "int8.tflite").read_bytes())
    assert classifier.source["dtype"] == np.int8
    images = data.splits["val"].images[:5]
    scores = classifier.predict(images)
    assert scores.dtype == np.float32 and scores.shape == (5, 10) and np.isfinite(scores).all()
    # The pixels go in with the file's own scale and zero point: dequantized, they are the pixels.
    from mobilecls.runtime import quantize_input

    scale, zero = classifier.source["quantization"]
    quantized = quantize_input(images, classifier.source)
    assert quantized.dtype == np.int8
    np.testing.assert_allclose((quantized.astype(np.float32) - zero) * scale, images, atol=scale / 2 + 1e-6)


def test_cli_eval_prints_and_writes_metrics(files, tmp_path):
    folder, data = files
    out = tmp_path / "m.json"
    result = CliRunner().invoke(main, ["eval", str(folder / "int8.tflite"), "--data", "synthetic", "--json", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["samples"] == len(data.splits["val"]) and metrics["split"] == "val" and metrics["images_per_sec"] > 0
    assert f"accuracy {metrics['accuracy']:.4f}" in result.output


def test_mismatched_classes_missing_split_and_bad_files_are_errors(files, tmp_path):
    folder, _ = files
    cifar_like = tmp_path / "data"
    for name in ("cat", "dog"):
        (cifar_like / name).mkdir(parents=True)
        from PIL import Image

        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), i * 40, np.uint8)).save(cifar_like / name / f"{i}.png")
    result = CliRunner().invoke(main, ["eval", str(folder / "fp32.tflite"), "--data", f"folder:{cifar_like}"])
    assert result.exit_code == 2 and "was trained on classes blob" in result.output
    result = CliRunner().invoke(main, ["eval", str(folder / "fp32.tflite"), "--data", "synthetic", "--split", "test"])
    assert result.exit_code == 0
    bogus = tmp_path / "x.tflite"
    bogus.write_bytes(b"nonsense")
    result = CliRunner().invoke(main, ["eval", str(bogus), "--data", "synthetic"])
    assert result.exit_code == 2 and "not a TFLite file" in result.output


def test_compare_reports_agreement_and_differences(files, tmp_path):
    folder, _ = files
    out = tmp_path / "c.json"
    result = CliRunner().invoke(main, ["eval", "--compare", str(folder / "best.keras"), str(folder / "fp32.tflite"),
                                       "--data", "synthetic", "--json", str(out)])
    assert result.exit_code == 0, result.output
    compared = json.loads(out.read_text())
    assert compared["top1_agreement"] >= 0.99 and compared["max_abs_difference"] < 1e-2
    assert compared["accuracy"][0] == pytest.approx(compared["accuracy"][1], abs=0.01)
    result = CliRunner().invoke(main, ["eval", "--compare", str(folder / "best.keras"), "--data", "synthetic"])
    assert result.exit_code == 2 and "--compare takes exactly two models" in result.output


def test_compare_finds_no_diverging_layer_between_a_model_and_its_fp32_file(files):
    folder, data = files
    result = compare(str(folder / "best.keras"), str(folder / "fp32.tflite"), "synthetic", dataset=data)
    divergence = result["divergence"]
    assert divergence["first_divergent_layer"] is None and len(divergence["images"]) == 8
    assert len(divergence["layers"]) > 30 and max(row["relative_error"] for row in divergence["layers"]) < 1e-3


def test_compare_names_the_first_layer_that_diverges(files, tmp_path):
    from mobilecls._tf import keras
    from mobilecls.export.convert import to_tflite
    from mobilecls.models.io import load_keras_model

    folder, data = files
    model = load_keras_model(str(folder / "best.keras"))
    broken = keras.models.clone_model(model)
    broken.set_weights(model.get_weights())
    layer = broken.get_layer("block_5_expand")
    layer.kernel.assign(-layer.kernel)
    (tmp_path / "broken.tflite").write_bytes(to_tflite(broken, "fp32"))
    result = CliRunner().invoke(main, ["eval", "--compare", str(folder / "best.keras"), str(tmp_path / "broken.tflite"),
                                       "--data", "synthetic", "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    divergence = json.loads((tmp_path / "c.json").read_text())["divergence"]
    assert divergence["first_divergent_layer"] in {"block_5_expand", "block_5_expand_bn", "block_5_expand_relu6"}
    assert f"first diverging layer: {divergence['first_divergent_layer']}" in result.output
    names = [row["layer"] for row in divergence["layers"]]
    before = names[:names.index(divergence["first_divergent_layer"])]
    assert "block_4_add" in before or "block_4_project_bn" in before
    assert all(row["relative_error"] < 1e-3 for row in divergence["layers"] if row["layer"] in before)
