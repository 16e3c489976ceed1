"""`prune --distill`: the fine-tuning targets mix in a teacher's probabilities; bad teachers are refused
before anything loads."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.models import build_model


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
    build_model("mobilenet_v1", width=0.25, input_size=32, num_classes=5).save(teacher)
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
