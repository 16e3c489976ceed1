"""Every model passes tfmot's QAT and pruning as it is and converts to one-partition int8."""

import numpy as np
import pytest

from mobilecls.export.convert import inspect_tflite, to_tflite
from mobilecls.models import build_model, list_models

ALL = list_models()


def _per_model(names, fast):
    """One case per model; all but the ``fast`` two run only with the slow tests (make test-slow)."""
    return [pytest.param(name, marks=() if name in fast else pytest.mark.slow) for name in names]


# The fast run keeps ShuffleNetV1 (frozen shortcut pooling, its own GroupedPointwiseConvBN layer) and MobileNetV3-Small
# (hard-swish, squeeze-excite), whose QAT files nothing else converts; MobileNetV2's QAT file is
# also converted fast in test_prune. What QAT costs is tfmot's wrapping, not the conversion.
QAT_FAST = ("mobilenet_v3_small", "shufflenet_v1")
PTQ_MODELS = ["mobilenet_v1", "mobilenet_v2", "shufflenet_v1", "shufflenet_v2"]
PTQ_FAST = PTQ_MODELS  # each conversion takes about a second (to_tflite freezes one traced function)


@pytest.mark.parametrize("name", _per_model(ALL, QAT_FAST))
def test_tfmot_qat_and_pruning_take_the_model_as_it_is_and_qat_converts_to_one_partition_int8(name):
    from mobilecls._tf import tfmot

    model = build_model(name, input_size=32, num_classes=10)
    qat = tfmot.quantization.keras.quantize_model(model)  # no quantize scope needed
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in qat.layers)
    report = inspect_tflite(to_tflite(qat, "int8", io="int8"))
    assert report.input_shape == (1, 32, 32, 3)
    assert (report.input_dtype, report.output_dtype) == ("int8", "int8")
    assert report.dynamic_shape_ops == ()
    assert report.float_ops == ()
    assert report.partitions == 1, report.undelegated
    assert "CONV_2D" in report.ops and "FULLY_CONNECTED" in report.ops
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    assert any(type(layer).__name__ == "PruneLowMagnitude" for layer in pruned.layers)
    if name == "shufflenet_v1":  # the frozen shortcut pooling is wrapped but has nothing to prune
        wrapper = pruned.get_layer("prune_low_magnitude_stage_2_unit_1_shortcut_pool")
        assert wrapper.layer.get_prunable_weights() == []


@pytest.mark.parametrize("name", _per_model(PTQ_MODELS, PTQ_FAST))
def test_post_training_int8_from_a_float_model_in_one_partition(name, pixels):
    model = build_model(name, input_size=32, num_classes=10)
    report = inspect_tflite(to_tflite(model, "int8", calibration=[pixels(8, 32)], io="int8"))
    assert report.float_ops == () and report.partitions == 1, report.undelegated
    assert report.input_shape == (1, 32, 32, 3)


def test_float_tflite_matches_keras_outputs(pixels):
    from mobilecls._tf import Interpreter

    model = build_model("shufflenet_v2", input_size=32, num_classes=10)
    content = to_tflite(model, "fp32")
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    images = pixels(3, 32)
    for image in images:
        interpreter.set_tensor(source["index"], image[None])
        interpreter.invoke()
        expected = model(image[None], training=False).numpy()
        np.testing.assert_allclose(interpreter.get_tensor(sink["index"]), expected, atol=1e-4, rtol=1e-3)


def test_integer_mode_without_calibration_is_a_clear_error():
    model = build_model("mobilenet_v2", input_size=32, num_classes=10)
    with pytest.raises(ValueError, match="int8 from a float model needs calibration images"):
        to_tflite(model, "int8")
    with pytest.raises(ValueError, match="mode must be one of fp32, fp16, dynamic, int8, int16x8"):
        to_tflite(model, "int4")


@pytest.mark.slow  # the reference converter takes the SavedModel round trip, ~30 s per file
@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_frozen_function_gives_what_the_keras_converter_gives(mode, pixels):
    """to_tflite freezes one traced function instead of the converter's SavedModel round trip
    (about 20x faster): the same ops and the same outputs as ``from_keras_model`` gives."""
    from mobilecls._tf import tf
    from mobilecls.export.convert import _static_batch
    from mobilecls.runtime import predict_tflite

    model = build_model("shufflenet_v2", width=0.5, input_size=32, num_classes=10)
    calibration = pixels(8, 32)
    converter = tf.lite.TFLiteConverter.from_keras_model(_static_batch(model))
    if mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    theirs, ours = converter.convert(), to_tflite(model, mode, calibration=[calibration])
    assert inspect_tflite(ours).ops == inspect_tflite(theirs).ops
    images = pixels(8, 32, seed=5)
    np.testing.assert_array_equal(predict_tflite(ours, images), predict_tflite(theirs, images))
