"""Pruning's policies: the functional API returns new models, 2:4 blocks, XNNPACK's sparse policy
(test_prune.py: the command's folders and QAT; test_prune_distill.py: distillation)."""

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecls.cli import main
from mobilecls.models import build_model


def test_prune_returns_a_new_model_and_leaves_the_original_alone():
    from mobilecls.optimize.prune import overall_sparsity, prune, strip, update_step_callback

    model = build_model("mobilenet_v1", width=0.25, input_size=32, num_classes=10)
    before = model.get_layer("block_3_pointwise").kernel.numpy().copy()
    wrapped = prune(model, 0.5, "constant", end_step=2, frequency=1)
    wrapped.compile("sgd", "mse")
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    wrapped.fit(images, np.zeros((8, 10)), epochs=1, batch_size=4, verbose=0, callbacks=[update_step_callback()])
    assert overall_sparsity(strip(wrapped)) > 0.4
    np.testing.assert_array_equal(model.get_layer("block_3_pointwise").kernel.numpy(), before)


def test_structured_2_by_4_prunes_two_of_every_four():
    from mobilecls.optimize.prune import prune, strip, update_step_callback

    model = build_model("mobilenet_v1", width=0.25, input_size=32, num_classes=10)
    wrapped = prune(model, 0.5, "constant", structured="2:4", end_step=2, frequency=1)
    wrapped.compile("sgd", "mse")
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    wrapped.fit(images, np.zeros((8, 10)), epochs=1, batch_size=4, verbose=0, callbacks=[update_step_callback()])
    kernel = strip(wrapped).get_layer("block_3_pointwise").kernel.numpy()  # (1, 1, Cin, Cout)
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
