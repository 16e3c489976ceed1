"""Client-ready files: standard TFLite Metadata, softmax output, uint8 I/O, old runtimes, `upgrade`."""

import io
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from tflite_files import NAMES, confident_model, opcode_versions, save_run, with_legacy_metadata

from mobilecls.cli import main
from mobilecls.export.metadata import MIN_PARSER_VERSION, min_runtime_version, read_metadata


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    model = confident_model()
    return save_run(folder, model), model


@pytest.fixture(scope="module")
def images():
    from mobilecls.data import load

    return load("synthetic").splits["val"].images[:48]


def _version(text):
    return tuple(int(part) for part in text.split(".")[:2])


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_fp32_file_has_standard_metadata_labels_and_a_softmax(run, images, tmp_path):
    from mobilecls.export.convert import inspect_tflite
    from mobilecls.export.metadata import _metadata_entries
    from mobilecls.runtime import predict_tflite

    path, model = run
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(path), "--fp32", "--author", "A. Author", "--license",
                                       "Apache-2.0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "output float32 probabilities" in result.output and "min runtime 1." in result.output
    content = out.read_bytes()
    meta = read_metadata(content)
    assert meta["class_names"] == NAMES and meta["probabilities"] is True
    assert meta["normalization"] == {"mean": [0.0], "std": [1.0]}
    assert (meta["author"], meta["license"], meta["min_parser_version"]) == ("A. Author", "Apache-2.0",
                                                                            MIN_PARSER_VERSION)
    assert meta["version"] == "mobilecls 0.1.0" and meta["name"] == model.name and "10 classes" in meta["description"]
    assert (meta["mode"], meta["io"], meta["input_size"]) == ("fp32", "float32", [32, 32])
    assert _metadata_entries(content)["TFLITE_METADATA"][4:8] == b"M001"
    with zipfile.ZipFile(io.BytesIO(content)) as archive:  # the labels file packed as the populator does
        assert archive.namelist() == ["labels.txt"] and archive.read("labels.txt").decode().split("\n") == NAMES
    report = inspect_tflite(content)
    assert report.ops[-2:] == ("FULLY_CONNECTED", "SOFTMAX")
    expected = _softmax(model.predict(images.astype(np.float32), verbose=0))
    np.testing.assert_allclose(predict_tflite(content, images), expected, atol=1e-4)


def test_int8_defaults_to_uint8_io_with_an_int8_softmax_in_one_partition(run, images, tmp_path):
    from mobilecls.export.convert import inspect_tflite
    from mobilecls.runtime import predict_tflite

    path, _ = run
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(path), "--int8", "--data", "synthetic",
                                       "--calibration-steps", "40", "-o", str(out)])
    assert result.exit_code == 0, result.output
    content = out.read_bytes()
    report = inspect_tflite(content)
    assert (report.input_dtype, report.output_dtype) == ("uint8", "uint8")
    assert report.ops[0] == "QUANTIZE" and report.ops[-3:] == ("FULLY_CONNECTED", "SOFTMAX", "QUANTIZE")
    assert report.float_ops == () and report.partitions == 1, report.undelegated
    from mobilecls._tf import Interpreter

    interpreter = Interpreter(model_content=content)
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert source["quantization"] == (1.0, 0)  # uint8 input: the pixel value itself
    assert sink["quantization"] == (1 / 256, 0)  # probabilities 0..255/256
    meta = read_metadata(content)
    assert meta["io"] == "uint8" and meta["probabilities"] and meta["class_names"] == NAMES
    scores = predict_tflite(content, images)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=len(NAMES) / 256)
    assert _version(min_runtime_version(content)) <= (2, 14)


def test_appended_softmax_gives_what_the_converter_makes_of_a_softmax_layer(run, images):
    from mobilecls._tf import keras
    from mobilecls.export.convert import inspect_tflite, to_tflite
    from mobilecls.export.tflite_edit import append_softmax, int8_io_to_uint8
    from mobilecls.runtime import predict_tflite

    _, model = run
    calibration = [images[:16].astype(np.float32)]
    ours = int8_io_to_uint8(append_softmax(to_tflite(model, "int8", calibration=calibration, io="int8")))
    with_layer = keras.Model(model.inputs, keras.layers.Softmax()(model.outputs[0]))
    theirs = to_tflite(with_layer, "int8", calibration=calibration, io="uint8")
    assert inspect_tflite(ours).ops == inspect_tflite(theirs).ops
    np.testing.assert_array_equal(predict_tflite(ours, images), predict_tflite(theirs, images))


def test_logits_option_and_int8_io_contract(run, tmp_path):
    from mobilecls.export.convert import inspect_tflite

    path, _ = run
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(path), "--int8", "--data", "synthetic", "--io", "int8",
                                       "--logits", "--calibration-steps", "20", "-o", str(out)])
    assert result.exit_code == 0, result.output
    content = out.read_bytes()
    report = inspect_tflite(content)
    assert "SOFTMAX" not in report.ops and (report.input_dtype, report.output_dtype) == ("int8", "int8")
    meta = read_metadata(content)
    assert meta["probabilities"] is False and meta["normalization"] == {"mean": [128.0], "std": [1.0]}


def test_dynamic_file_avoids_fully_connected_version_12(run, tmp_path):
    path, _ = run
    out = tmp_path / "m.tflite"
    result = CliRunner().invoke(main, ["quantize", str(path), "--dynamic", "-o", str(out)])
    assert result.exit_code == 0, result.output
    content = out.read_bytes()
    assert max(opcode_versions(content)["FULLY_CONNECTED"]) <= 9
    assert _version(min_runtime_version(content)) <= (2, 14)  # per-channel dense weights made it 2.17
    assert f"min runtime {min_runtime_version(content)}" in result.output


def _legacy_file(model, mode, tmp_path, io="float32", images=None):
    """A file as mobilecls wrote it before: logits, int8 I/O, per-channel dense weights, JSON metadata."""
    from mobilecls.export.convert import make_converter

    calibration = None if images is None else [images[:16].astype(np.float32)]
    converter = make_converter(model, mode, calibration=calibration, io=io)
    converter._experimental_disable_per_channel_quantization_for_dense_layers = False  # as TF 2.21 did by default
    content = with_legacy_metadata(converter.convert(), {"class_names": NAMES, "mode": mode, "io": io, "qat": False,
                                                         "source": "best.keras", "producer": "mobilecls"})
    path = tmp_path / f"old_{mode}.tflite"
    path.write_bytes(content)
    return path, content


def test_upgrade_turns_an_old_int8_file_into_a_client_ready_one_with_the_same_top1(run, images, tmp_path):
    from mobilecls.export.convert import inspect_tflite
    from mobilecls.runtime import predict_tflite

    _, model = run
    path, old = _legacy_file(model, "int8", tmp_path, io="int8", images=images)
    assert read_metadata(old)["class_names"] == NAMES  # old files: names from the legacy buffer
    result = CliRunner().invoke(main, ["upgrade", str(path)])
    assert result.exit_code == 0, result.output
    assert "io uint8/uint8, softmax added" in result.output and "top-1 kept on 100.00% of 64" in result.output
    new = path.read_bytes()
    report = inspect_tflite(new)
    assert report.ops[-2:] == ("SOFTMAX", "QUANTIZE") and report.float_ops == () and report.partitions == 1
    meta = read_metadata(new)
    assert meta["class_names"] == NAMES and meta["probabilities"] and meta["mode"] == "int8"
    before, after = predict_tflite(old, images), predict_tflite(new, images)
    winners = before.argmax(axis=1)
    assert np.all(after[np.arange(len(after)), winners] == after.max(axis=1))
    again = CliRunner().invoke(main, ["upgrade", str(path)])  # idempotent: nothing left to add
    assert again.exit_code == 0 and "softmax kept" in again.output
    assert inspect_tflite(path.read_bytes()).ops == report.ops


def test_upgrade_stores_per_channel_hybrid_dense_weights_as_float(run, images, tmp_path):
    from mobilecls.runtime import predict_tflite

    _, model = run
    path, old = _legacy_file(model, "dynamic", tmp_path)
    assert opcode_versions(old)["FULLY_CONNECTED"] == [12]
    result = CliRunner().invoke(main, ["upgrade", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 dense op(s) to float" in result.output
    new = path.read_bytes()
    assert opcode_versions(new)["FULLY_CONNECTED"] == [1] and min_runtime_version(new) is None
    expected = _softmax(model.predict(images.astype(np.float32), verbose=0))
    assert np.mean(predict_tflite(new, images).argmax(axis=1) == expected.argmax(axis=1)) >= 0.95


def test_upgrade_errors_are_one_line_and_leave_the_file_alone(tmp_path):
    bogus = tmp_path / "m.tflite"
    bogus.write_bytes(b"PK\x03\x04 not a model")
    result = CliRunner().invoke(main, ["upgrade", str(bogus)])
    assert result.exit_code == 2 and "is not a TFLite file" in result.output
    assert bogus.read_bytes() == b"PK\x03\x04 not a model"
    missing = CliRunner().invoke(main, ["upgrade", str(tmp_path / "none.tflite")])
    assert missing.exit_code == 2 and "model file not found" in missing.output


def test_class_names_must_match_the_output():
    from mobilecls.export.convert import to_tflite
    from mobilecls.export.metadata import write_metadata
    from mobilecls.models import build_model

    content = to_tflite(build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=3))
    with pytest.raises(ValueError, match="class_names must be 3 non-empty one-line names"):
        write_metadata(content, ["a", "b"], True, {})
