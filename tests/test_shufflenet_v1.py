"""ShuffleNetV1's fast grouped convolutions: the textbook function, weights, MACs and .tflite file."""

import numpy as np
import pytest

from mobilecls.models import build_model
from mobilecls.models.profile import count_params, layer_costs, summarize

GROUPS = [1, 2, 3, 4, 8]


def _macs(model):
    return sum(cost.macs for cost in layer_costs(model))


def _fused(model):
    return [layer for layer in model.layers if type(layer).__name__ == "GroupedPointwiseConvBN"]


@pytest.mark.parametrize("groups", GROUPS)
def test_default_has_the_textbook_parameters_and_macs(groups):
    fast = build_model("shufflenet_v1", groups=groups, input_size=32, num_classes=10)
    textbook = build_model("shufflenet_v1", groups=groups, input_size=32, num_classes=10, grouped_conv=True)
    assert count_params(fast) == count_params(textbook)
    assert _macs(fast) == _macs(textbook)
    costs = {cost.name: (cost.kind, cost.groups, cost.macs, cost.params) for cost in layer_costs(fast)}
    assert costs == {cost.name: (cost.kind, cost.groups, cost.macs, cost.params) for cost in layer_costs(textbook)}


def test_profile_totals_at_224_are_the_textbook_graphs():
    fast, textbook = summarize("shufflenet_v1", groups=3), summarize("shufflenet_v1", groups=3, grouped_conv=True)
    assert (fast["params"], fast["macs"]) == (textbook["params"], textbook["macs"])
    assert round(fast["params"] / 1e6, 2) == 1.89 and round(fast["macs"] / 1e6, 2) == 137.46


@pytest.mark.parametrize("groups", GROUPS)
def test_default_builds_no_grouped_conv2d(groups):
    model = build_model("shufflenet_v1", groups=groups, input_size=32, num_classes=10)
    assert all(getattr(layer, "groups", 1) == 1 for layer in model.layers
               if type(layer).__name__ == "Conv2D")  # TF's slow grouped kernel: never in training
    # every grouped 1x1 convolution but stage 2's first (ungrouped, as in the paper) is one layer
    assert len(_fused(model)) == (0 if groups == 1 else 2 * 16 - 1)
    assert {layer.groups for layer in _fused(model)} <= {groups}


# Every group count at every width of the paper; the fast run keeps the case that used to fail
# (width 0.5, g=3: a 16-channel stem left 104 branch channels for 3 groups) and the extremes.
FAST_WIDTHS = {(3, 0.5), (8, 0.25), (1, 2.0)}


@pytest.mark.parametrize("groups,width", [
    pytest.param(g, w, marks=() if (g, w) in FAST_WIDTHS else pytest.mark.slow)
    for g in GROUPS for w in (0.25, 0.5, 1.0, 1.5, 2.0)])
def test_builds_at_the_papers_widths(groups, width):
    model = build_model("shufflenet_v1", groups=groups, width=width, input_size=224, num_classes=10)
    assert model.output_shape == (None, 10)


def _textbook_weights(fast, textbook):
    """Every weight of the default model, copied from the textbook graph's layer of that name
    (a GroupedPointwiseConvBN: the textbook's Conv2D(groups) and its BatchNorm, in that order)."""
    mapped = {}
    for layer in fast.layers:
        if not layer.get_weights() or not layer.trainable:
            continue
        weights = textbook.get_layer(layer.name).get_weights()
        if type(layer).__name__ == "GroupedPointwiseConvBN":
            weights = weights + textbook.get_layer(f"{layer.name}_bn").get_weights()
        mapped[layer.name] = weights
    return mapped


def _randomize_batchnorm(model, rng):
    for layer in model.layers:  # random BatchNorm statistics, so that no misplaced channel hides
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])


def _pair(rng, **kwargs):
    textbook = build_model("shufflenet_v1", grouped_conv=True, **kwargs)
    _randomize_batchnorm(textbook, rng)
    fast = build_model("shufflenet_v1", **kwargs)
    for name, weights in _textbook_weights(fast, textbook).items():
        fast.get_layer(name).set_weights(weights)
    return fast, textbook


@pytest.mark.parametrize("groups,shuffle,size", [(3, True, 32), (3, False, 32), (8, True, 32), (2, True, 96)])
def test_default_computes_the_textbook_function(groups, shuffle, size):
    rng = np.random.default_rng(0)
    fast, textbook = _pair(rng, groups=groups, shuffle=shuffle, input_size=size, num_classes=10, width=0.5)
    pixels = rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
    expected = textbook(pixels, training=False).numpy()
    np.testing.assert_allclose(fast(pixels, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_one_training_step_matches_the_textbook_graph():
    """Training mode too (batch statistics, gradients): one SGD step moves both alike."""
    from mobilecls._tf import keras

    # Seeded: with batch statistics of a few images, some initialisations amplify the rounding of
    # different summation orders (the compiled op's, the grouped Conv2D's) past the tolerance.
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    fast, textbook = _pair(rng, groups=3, input_size=32, num_classes=10, width=0.5)
    pixels = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    labels = keras.utils.to_categorical(rng.integers(0, 10, 8), 10)
    for model in (fast, textbook):
        model.compile(keras.optimizers.SGD(0.01), keras.losses.CategoricalCrossentropy(from_logits=True))
        model.train_on_batch(pixels, labels)
    for name, weights in _textbook_weights(fast, textbook).items():
        for got, want in zip(fast.get_layer(name).get_weights(), weights, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


def test_shuffle_false_removes_the_shuffle_and_nothing_else():
    on = build_model("shufflenet_v1", input_size=32, num_classes=10)
    off = build_model("shufflenet_v1", input_size=32, num_classes=10, shuffle=False)
    assert on.count_params() == off.count_params()
    shuffles = {layer.name for layer in on.layers if "_shuffle_" in layer.name}
    assert {type(on.get_layer(name)).__name__ for name in shuffles} == {"Reshape", "Permute"}
    assert {layer.name for layer in on.layers} - {layer.name for layer in off.layers} == shuffles
    assert {layer.name for layer in off.layers} <= {layer.name for layer in on.layers}


@pytest.mark.parametrize("grouped_conv", [False, True])
def test_zero_init_residual_starts_every_residual_unit_as_the_identity(grouped_conv):
    from mobilecls._tf import keras
    from mobilecls.models.shufflenet_v1 import residual_branch_gammas

    model = build_model("shufflenet_v1", input_size=32, num_classes=10, width=0.5, grouped_conv=grouped_conv,
                        zero_init_residual=True)
    gammas = residual_branch_gammas(model)
    assert len(gammas) == 3 + 7 + 3  # the stride-1 units of stages 2-4 (REPEATS minus one each)
    assert all(not np.any(gamma.numpy()) for gamma in gammas)
    zeroed = {id(gamma) for gamma in gammas}
    others = [weight for weight in model.weights if weight.name.endswith("gamma:0") and id(weight) not in zeroed]
    assert others and all(np.all(weight.numpy() == 1) for weight in others)
    # a stride-1 unit returns its input (the previous unit's output is >= 0, so the ReLU keeps it)
    probe = keras.Model(model.input, [model.get_layer("stage_3_unit_1_concat").output,
                                      model.get_layer("stage_3_unit_2_relu").output])
    before, after = probe(np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype("float32"), training=False)
    np.testing.assert_array_equal(after.numpy(), before.numpy())
    plain = build_model("shufflenet_v1", input_size=32, num_classes=10, width=0.5, grouped_conv=grouped_conv)
    assert all(np.all(gamma.numpy() == 1) for gamma in residual_branch_gammas(plain))
    assert count_params(plain) == count_params(model)


def test_saved_and_loaded_with_the_same_outputs(tmp_path):
    from mobilecls._tf import keras

    model = build_model("shufflenet_v1", input_size=32, num_classes=10, width=0.5)
    _randomize_batchnorm(model, np.random.default_rng(2))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(pixels).numpy(), model(pixels).numpy(), rtol=1e-5, atol=1e-5)


def test_tfmot_wraps_the_grouped_layer_with_no_scope():
    from mobilecls._tf import tfmot

    model = build_model("shufflenet_v1", input_size=32, num_classes=10)
    qat = tfmot.quantization.keras.quantize_model(model)
    wrapper = qat.get_layer("quant_stage_3_unit_2_gconv1")
    assert type(wrapper.quantize_config).__name__ == "Default8BitConvQuantizeConfig"  # per-channel kernel
    assert wrapper.quantize_config.quantize_output
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    prunable = pruned.get_layer("prune_low_magnitude_stage_3_unit_2_gconv1").layer.get_prunable_weights()
    assert [weight.shape for weight in prunable] == [(1, 1, 160, 120)]


def _tflite_outputs(content, images):
    from mobilecls._tf import Interpreter

    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for image in images:
        interpreter.set_tensor(source["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(sink["index"])[0])
    return np.array(outputs)


def test_fp32_file_is_the_textbook_graphs_and_matches_keras():
    from mobilecls.export.convert import inspect_tflite, to_tflite

    rng = np.random.default_rng(4)
    fast, textbook = _pair(rng, groups=3, input_size=32, num_classes=10)
    fast_file, textbook_file = to_tflite(fast, "fp32"), to_tflite(textbook, "fp32")
    ops = inspect_tflite(fast_file).ops
    assert ops == inspect_tflite(textbook_file).ops  # the same ops in the same order
    assert ops.count("CONV_2D") == 2 * 16 + 1  # stem, GConv1 and GConv2 of every unit
    images = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = fast(images, training=False).numpy()
    np.testing.assert_allclose(_tflite_outputs(fast_file, images), expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(_tflite_outputs(textbook_file, images), expected, rtol=1e-3, atol=1e-4)
