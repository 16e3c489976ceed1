"""`prune` and `qat` from the command line: real sparsity, sparsity kept through QAT, folders never clobbered.

The pruning tests' fits are split over three modules (this one, test_prune_distill.py and
test_prune_policies.py) so that `make test`'s workers (one file each at a time) run them side by side."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecls.cli import main


@pytest.fixture(scope="module")
def pruned_folder(float_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("p") / "pruned"
    result = CliRunner().invoke(main, ["prune", str(float_model), "--data", "synthetic", "--sparsity", "0.5",
                                       "--schedule", "constant", "--epochs", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_prune_reaches_the_target_sparsity_and_shrinks_the_gzip_size(pruned_folder):
    report = json.loads((pruned_folder / "report.json").read_text())
    assert sorted(p.name for p in pruned_folder.iterdir()) == ["classes.json", "model.keras", "report.json"]
    assert report["sparsity"] == pytest.approx(0.5, abs=0.03)
    assert report["policy"] == "all" and report["xnnpack_sparse_qualifies"] is False  # CIFAR stem: stride 1
    convs = [value for name, value in report["layers"].items() if name.endswith("_pointwise")]
    assert convs and all(value == pytest.approx(0.5, abs=0.05) for value in convs)
    gz = report["tflite_fp32_gzip_bytes"]
    assert gz["after"] < 0.8 * gz["before"]


def test_pruned_model_has_no_wrappers_left(pruned_folder):
    from mobilecls.models.io import load_keras_model

    model = load_keras_model(str(pruned_folder / "model.keras"))
    assert not any("Prune" in type(layer).__name__ for layer in model.layers)


def test_qat_of_a_pruned_model_keeps_its_zeros_and_exports_full_int8(pruned_folder, tmp_path):
    from mobilecls.export.convert import inspect_tflite, to_tflite
    from mobilecls.models.io import load_keras_model

    out = tmp_path / "qat"
    result = CliRunner().invoke(main, ["qat", str(pruned_folder / "model.keras"), "--data", "synthetic",
                                       "--epochs", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "(sparsity preserved)" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "model.h5", "report.json"]
    model = load_keras_model(str(out / "model.h5"))
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert np.isfinite(model(images, training=False).numpy()).all()
    kernels = [w.numpy() for layer in model.layers for w in layer.weights if w.name.endswith("kernel:0")
               and "pointwise" in w.name]
    assert kernels and np.mean([np.mean(k == 0) for k in kernels]) == pytest.approx(0.5, abs=0.05)
    report = inspect_tflite(to_tflite(model, "int8", io="int8"))
    assert report.float_ops == () and report.partitions == 1


def test_existing_output_folder_is_refused(float_model, pruned_folder):
    before = (pruned_folder / "report.json").read_text()
    result = CliRunner().invoke(main, ["qat", str(float_model), "--data", "synthetic", "--out", str(pruned_folder)])
    assert result.exit_code == 2 and "already exists and is not empty" in result.output
    assert (pruned_folder / "report.json").read_text() == before


@pytest.mark.parametrize("args,message", [
    (["--sparsity", "1.5"], "sparsity must be in (0, 1)"),
    (["--structured", "4:2"], "structured N:M needs 0 < N < M"),
    (["--structured", "two:four"], "structured must look like N:M"),
])
def test_bad_prune_arguments_are_refused_before_anything_loads(tmp_path, args, message):
    # the model file does not exist: the arguments are checked before the model and the data load
    result = CliRunner().invoke(main, ["prune", str(tmp_path / "none.keras"), "--data", "synthetic", "--out",
                                       str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o").exists()
