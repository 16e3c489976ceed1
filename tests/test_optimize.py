"""`prune` and `qat`: new models, real sparsity, sparsity kept through QAT, folders never clobbered."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.models import build_model


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    from mobilecls.data import load

    folder = tmp_path_factory.mktemp("float")
    build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=10).save(folder / "best.keras")
    (folder / "classes.json").write_text(json.dumps(list(load("synthetic").class_names)))
    return folder / "best.keras"


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
    convs = [value for name, value in report["layers"].items() if name.endswith("_project")]
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
               and "project" in w.name]
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


def test_prune_returns_a_new_model_and_leaves_the_original_alone():
    from mobilecls.optimize.prune import overall_sparsity, prune, strip, update_step_callback

    model = build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=10)
    before = model.get_layer("block_3_project").kernel.numpy().copy()
    wrapped = prune(model, 0.5, "constant", end_step=2, frequency=1)
    wrapped.compile("sgd", "mse")
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    wrapped.fit(images, np.zeros((8, 10)), epochs=1, batch_size=4, verbose=0, callbacks=[update_step_callback()])
    assert overall_sparsity(strip(wrapped)) > 0.4
    np.testing.assert_array_equal(model.get_layer("block_3_project").kernel.numpy(), before)


def test_structured_2_by_4_prunes_two_of_every_four():
    from mobilecls.optimize.prune import prune, strip

    model = build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=10)
    wrapped = prune(model, 0.5, "constant", structured="2:4", end_step=2, frequency=1)
    wrapped.compile("sgd", "mse")
    from mobilecls.optimize.prune import update_step_callback

    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    wrapped.fit(images, np.zeros((8, 10)), epochs=1, batch_size=4, verbose=0, callbacks=[update_step_callback()])
    kernel = strip(wrapped).get_layer("block_3_project").kernel.numpy()  # (1, 1, Cin, Cout)
    blocks = kernel.reshape(-1, kernel.shape[-1]).T.reshape(kernel.shape[-1], -1, 4)
    assert ((blocks == 0).sum(axis=-1) >= 2).all()


def test_xnnpack_policy_refuses_a_model_without_a_sparse_subgraph(float_model, tmp_path):
    # before the data loads: the data folder does not even exist
    result = CliRunner().invoke(main, ["prune", str(float_model), "--data", f"folder:{tmp_path / 'nowhere'}",
                                       "--policy", "xnnpack", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "does not qualify for XNNPACK sparse inference" in result.output
    assert "Conv2D 3x3" in result.output and not (tmp_path / "o").exists()


def test_xnnpack_policy_prunes_only_1x1_convs_and_writes_a_sparse_file(tmp_path):
    from mobilecls.export.convert import inspect_tflite
    from mobilecls.optimize.prune import (
        layer_sparsity,
        pointwise_sparsity,
        prune,
        strip,
        update_step_callback,
        xnnpack_qualification,
    )
    from mobilecls.optimize.runs import sparse_inference_speedup

    model = build_model("mobilenet_v2", width=0.35, input_size=96, num_classes=10, explicit_padding=True)
    assert model.get_layer("stem_pad").padding == ((1, 1), (1, 1)) and model.get_layer("stem").padding == "valid"
    wrapped = prune(model, 0.75, "constant", end_step=2, frequency=1, policy="xnnpack")
    wrapped.compile("sgd", "mse")
    images = np.random.default_rng(0).uniform(0, 255, (4, 96, 96, 3)).astype("float32")
    wrapped.fit(images, np.zeros((4, 10)), epochs=1, batch_size=4, verbose=0, callbacks=[update_step_callback()])
    pruned = strip(wrapped)
    assert xnnpack_qualification(model) is None
    assert pointwise_sparsity(pruned) == pytest.approx(0.75, abs=0.01)
    sparsity = layer_sparsity(pruned)
    assert sparsity["stem"] == 0 and sparsity["block_1_depthwise"] == 0 and sparsity["head_logits"] == 0
    measured = sparse_inference_speedup(pruned, str(tmp_path), runs=5)
    assert measured["densify_ops"] > 0 and measured["dense_p50_ms"] > 0 and measured["sparse_p50_ms"] > 0
    assert inspect_tflite((tmp_path / "model_sparse_fp32.tflite").read_bytes()).ops.count("DENSIFY") > 0


def test_distilled_targets_mix_the_labels_with_the_teachers_probabilities():
    from mobilecls._tf import keras, tf
    from mobilecls.optimize.finetune import distilled

    inputs = keras.Input((2,))
    teacher = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer="ones", bias_initializer="zeros")(inputs))
    pixels = np.array([[0.0, 0.0], [1.0, 0.0]], np.float32)
    labels = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    batches = distilled(tf.data.Dataset.from_tensors((pixels, labels)), teacher, 0.25)
    out_pixels, targets = next(iter(batches))
    np.testing.assert_array_equal(out_pixels.numpy(), pixels)
    # The teacher's logits are equal for every class, so its probabilities are uniform (1/3).
    np.testing.assert_allclose(targets.numpy(), 0.75 * labels + 0.25 / 3, rtol=1e-6)


def test_prune_rejects_a_distillation_weight_outside_0_to_1(float_model, tmp_path):
    out = tmp_path / "pruned"
    result = CliRunner().invoke(main, ["prune", str(float_model), "--data", "synthetic", "--sparsity", "0.5",
                                       "--epochs", "1", "--distill", "1.5", "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "distill must be in 0..1, got 1.5" in result.output
    assert not out.exists()


def test_prune_names_a_missing_teacher_and_writes_nothing(float_model, tmp_path):
    out = tmp_path / "pruned"
    result = CliRunner().invoke(main, ["prune", str(float_model), "--data", "synthetic", "--distill", "0.5",
                                       "--teacher", str(tmp_path / "dense.keras"), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"model file not found: {tmp_path / 'dense.keras'}" in result.output
    assert not out.exists()


def test_prune_distils_from_a_teacher_file(float_model, tmp_path):
    out = tmp_path / "pruned"
    result = CliRunner().invoke(main, ["prune", str(float_model), "--data", "synthetic", "--sparsity", "0.5",
                                       "--schedule", "constant", "--epochs", "1", "--distill", "0.5",
                                       "--teacher", str(float_model), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["distill"] == 0.5 and report["teacher"] == str(float_model)
    assert report["sparsity"] == pytest.approx(0.5, abs=0.03)


def test_prune_refuses_a_teacher_with_other_classes(float_model, tmp_path):
    teacher = tmp_path / "teacher.keras"
    build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=5).save(teacher)
    out = tmp_path / "pruned"
    result = CliRunner().invoke(main, ["prune", str(float_model), "--data", f"folder:{tmp_path / 'nowhere'}",
                                       "--distill", "0.5", "--teacher", str(teacher), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output  # refused before the (missing) data folder is read
    assert f"teacher {teacher} maps (32, 32, 3) to (5,)" in result.output
    assert not out.exists()


def test_prune_refuses_a_teacher_without_a_distillation_weight(float_model, tmp_path):
    out = tmp_path / "pruned"
    result = CliRunner().invoke(main, ["prune", str(float_model), "--data", "synthetic",
                                       "--teacher", str(float_model), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"teacher {float_model} is only used with a distillation weight above 0 (--distill)" in result.output
    assert not out.exists()
