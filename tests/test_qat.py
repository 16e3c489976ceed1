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


def test_every_range_starts_at_what_the_float_tensor_spans_on_the_calibration_images(model_and_images):
    from mobilecls._tf import keras
    from mobilecls.optimize.qat import qat

    model, images = model_and_images
    quantized = qat(model, calibration=images)
    expected = {}
    for layer in quantized.layers:
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
    wide = max(float(np.ravel(v.numpy())[0]) for v in quantized.weights if v.name.endswith("output_max:0"))
    assert wide > 6  # the case tfmot's start of [-6, 6] clips


def test_a_calibrated_qat_model_computes_what_the_float_model_does_before_any_training(model_and_images):
    from mobilecls.optimize.qat import qat

    model, images = model_and_images
    expected = model.predict(images, verbose=0)
    spread = expected.max() - expected.min()
    calibrated = np.abs(qat(model, calibration=images).predict(images, verbose=0) - expected).max() / spread
    # tfmot's start: weights and activations in [-6, 6] until training moves them (pixels clipped at 6)
    uncalibrated = np.abs(qat(model).predict(images, verbose=0) - expected).max() / spread
    assert calibrated < 0.05 and uncalibrated > 0.3, (calibrated, uncalibrated)


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_batchnorm_keeps_every_statistic_through_training_and_unfrozen_does_not(model_and_images, freeze):
    import contextlib

    from mobilecls._tf import keras
    from mobilecls.optimize.qat import frozen_batchnorm, qat

    model, images = model_and_images
    quantized = qat(model, calibration=images)
    moving = [w for w in quantized.weights if "moving_" in w.name]
    assert any("gconv" in w.name for w in moving)  # the BatchNorm inside GroupedPointwiseConvBN too
    trainable = len(quantized.trainable_weights)
    before = [w.numpy() for w in moving]
    with frozen_batchnorm(quantized) if freeze else contextlib.nullcontext():
        quantized.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy")
        quantized.fit(images[:16], np.eye(10)[np.arange(16) % 10], batch_size=16, epochs=1, verbose=0)
    changed = [not np.array_equal(a, w.numpy()) for a, w in zip(before, moving, strict=True)]
    assert not any(changed) if freeze else all(changed)
    assert len(quantized.trainable_weights) == trainable  # as before, so the model saves to .h5
