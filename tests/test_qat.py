"""QAT's starting ranges: activations measured on the float model, weights from the weights, not tfmot's [-6, 6]."""

import re

import numpy as np
import pytest

from mobilecls.models import build_model


@pytest.fixture(scope="module")
def model_and_images():
    from mobilecls._tf import keras

    keras.utils.set_random_seed(0)
    model = build_model("shufflenet_v1", input_size=32, num_classes=10, width=0.5)
    images = np.random.default_rng(1).uniform(0, 255, (40, 32, 32, 3)).astype("float32")
    return model, images


@pytest.fixture(scope="module")
def calibrated(model_and_images):
    """The QAT model calibrated on the images (read only: tests must not train it)."""
    from mobilecls.optimize.qat import qat

    model, images = model_and_images
    return qat(model, calibration=images)


def test_every_range_starts_at_what_the_float_tensor_spans_on_the_calibration_images(model_and_images, calibrated):
    from mobilecls._tf import keras

    model, images = model_and_images
    expected = {}
    for layer in calibrated.layers:
        ranges = {match.group(3): float(np.ravel(variable.numpy())[0]) for variable in layer.weights
                  if (match := re.search(r"/(output|post_activation|quantize_layer(_\d+)?)_(min|max):0$",
                                         variable.name))}
        if ranges:  # a wrapper covers its inner layer's output; the QuantizeLayer the model input
            expected[layer.layer.name if hasattr(layer, "layer") else model.layers[0].name] = ranges
    tensors = keras.Model(model.inputs, [model.get_layer(name).output for name in expected]).predict(images, verbose=0)
    for (name, ranges), tensor in zip(expected.items(), tensors, strict=True):
        assert ranges == pytest.approx({"min": min(0.0, tensor.min()), "max": max(0.0, tensor.max())}, rel=1e-5), name
    checked = len(expected)
    assert checked > 40  # the input, every unit's ReLU, grouped convolutions, depthwise BatchNorms, ...
    wide = max(float(np.ravel(v.numpy())[0]) for v in calibrated.weights if v.name.endswith("output_max:0"))
    assert wide > 6  # the case tfmot's start of [-6, 6] clips


def test_a_calibrated_qat_model_computes_what_the_float_model_does_before_any_training(model_and_images, calibrated):
    from mobilecls.optimize.qat import qat

    model, images = model_and_images
    expected = model.predict(images, verbose=0)
    spread = expected.max() - expected.min()
    calibrated_error = np.abs(calibrated.predict(images, verbose=0) - expected).max() / spread
    # tfmot's start: weights and activations in [-6, 6] until training moves them (pixels clipped at 6)
    uncalibrated_error = np.abs(qat(model).predict(images, verbose=0) - expected).max() / spread
    assert calibrated_error < 0.05 and uncalibrated_error > 0.3, (calibrated_error, uncalibrated_error)


def _model_with_every_kind_of_batchnorm():
    """A few layers with the BatchNorms ShuffleNetV1 has: after a convolution (folded by tfmot),
    after a depthwise convolution, and inside GroupedPointwiseConvBN."""
    from mobilecls._tf import keras
    from mobilecls.models.layers import GroupedPointwiseConvBN

    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(12, 3, padding="same", use_bias=False)(inputs)))
    x = layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x))
    x = GroupedPointwiseConvBN(12, 3, activation="relu", name="gconv")(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(x)))


def test_a_second_qat_in_the_process_calibrates_its_input_range_too():
    """tfmot names the input QuantizeLayer quantize_layer_N after the first one in a process."""
    from mobilecls.optimize.qat import qat

    images = np.random.default_rng(2).uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    model = _model_with_every_kind_of_batchnorm()
    for _ in range(2):
        quantized = qat(model, calibration=images)
        input_range = {v.name.rsplit("_", 1)[-1]: float(v.numpy()) for v in quantized.layers[1].weights
                       if re.search(r"quantize_layer(_\d+)?_(min|max):0$", v.name)}
        assert input_range == pytest.approx({"min:0": 0.0, "max:0": float(images.max())}, rel=1e-6)
    assert quantized.layers[1].name != "quantize_layer"  # the case: a suffixed name


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_batchnorm_keeps_every_statistic_through_training_and_unfrozen_does_not(freeze):
    import contextlib

    from mobilecls._tf import keras
    from mobilecls.optimize.qat import frozen_batchnorm, qat

    images = np.random.default_rng(1).uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    quantized = qat(_model_with_every_kind_of_batchnorm(), calibration=images)
    moving = [w for w in quantized.weights if "moving_" in w.name]
    assert len(moving) == 6 and any("gconv" in w.name for w in moving)  # three BatchNorms' mean and variance
    trainable = len(quantized.trainable_weights)
    before = [w.numpy() for w in moving]
    with frozen_batchnorm(quantized) if freeze else contextlib.nullcontext():
        quantized.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy")
        quantized.fit(images, np.eye(10)[np.arange(16) % 10], batch_size=16, epochs=1, verbose=0)
    changed = [not np.array_equal(a, w.numpy()) for a, w in zip(before, moving, strict=True)]
    assert not any(changed) if freeze else all(changed)
    assert len(quantized.trainable_weights) == trainable  # as before, so the model saves to .h5
