"""Keras -> TFLite conversion with a static batch of 1, and checks of the converted graph."""

import dataclasses
import logging

import numpy as np

from mobilecls._tf import Interpreter, keras, tf
from mobilecls.errors import RunFailed

MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")
IO_TYPES = ("float32", "int8", "uint8")
# Ops that only move data between float and integer at the model's edges.
_EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}


def _static_batch(model):
    """The same model behind an input with a static batch of 1.

    With a dynamic batch the converter emits SHAPE/STRIDED_SLICE/PACK before every reshape
    and the graph splits into many XNNPACK partitions.
    """
    inputs = keras.Input(batch_shape=(1, *model.input_shape[1:]), name="pixels")
    return keras.Model(inputs, model(inputs, training=False), name=model.name)


def _export_function(model):
    """``model`` behind a static batch of 1, traced once inside ``exporting()`` (layers that
    train one way and export another, ShuffleNetV1's grouped convolutions, trace their export
    graph) as the concrete function the converter freezes.

    Why a concrete function without its Keras model: ``from_keras_model`` (and
    ``from_concrete_functions`` given the model) first saves the model as a SavedModel and loads
    it back, which traces every layer's call functions: 25-30 s of a ShuffleNetV2 0.5x's ~27-s
    conversion here. Freezing the one traced function gives the same ops and the same outputs
    in about 1 s (tests/test_tflite_int8.py checks both against each other). TensorFlow calls
    this path deprecated; it is the graph freezing TF1 converters used, still in TF 2.21.
    """
    from mobilecls.models.layers import exporting

    static = _static_batch(model)
    with exporting():
        return tf.function(lambda pixels: static(pixels, training=False)).get_concrete_function(
            tf.TensorSpec(static.input_shape, tf.float32, name="pixels"))


def is_qat_model(model):
    """True when ``model`` carries tfmot fake-quant wrappers (quantization-aware trained), also
    inside a model it wraps (``mirror_averaged``)."""
    return any("Quantize" in type(layer).__name__ or (isinstance(layer, keras.Model) and is_qat_model(layer))
               for layer in model.layers)


def _allow_qat_without_calibration(converter):
    # TF 2.21 validates the quantization mode once before it has loaded the graph (so it
    # cannot see the fake-quant ops and demands a representative dataset) and reads
    # _experimental_low_bit_qat before setting it. Skip the graph-less metrics call; the
    # real validation runs again once the graph is there.
    from tensorflow.lite.python import lite

    lite.QuantizationMode._experimental_low_bit_qat = False
    save_metric = converter._save_conversion_params_metric

    def save_metric_with_graph(graph_def=None, *args, **kwargs):
        if graph_def is not None:
            save_metric(graph_def, *args, **kwargs)

    converter._save_conversion_params_metric = save_metric_with_graph


def make_converter(model, mode="fp32", calibration=None, io="float32", sparse=False):
    """A configured ``TFLiteConverter`` for ``model`` behind a static batch of 1.

    Args:
        model: a tf_keras model taking RGB pixels 0..255 (float or QAT).
        mode: fp32, fp16, dynamic (int8 weights, float activations), int8 (full integer)
            or int16x8 (int16 activations, int8 weights).
        calibration: for int8/int16x8 from a float model, an iterable of float32 image batches
            (N, H, W, 3) in 0..255; not needed for a QAT model.
        io: input/output type of int8 and int16x8 models: float32, int8 or uint8 (int16x8:
            float32 or int16 is what the converter supports; int8/uint8 are refused).
        sparse: store pruned weights in TFLite's sparse format (DENSIFY ops), which XNNPACK's
            sparse inference needs (fp32 / fp16 only).

    Raises:
        ValueError: unknown mode or io, or calibration missing where it is needed.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if io not in IO_TYPES:
        raise ValueError(f"io must be one of {', '.join(IO_TYPES)}, got {io!r}")
    qat = is_qat_model(model)
    integer = mode in ("int8", "int16x8")
    if integer and calibration is None and not qat:
        raise ValueError(f"{mode} from a float model needs calibration images (or a QAT model)")
    if io != "float32" and not integer:
        raise ValueError(f"io={io} needs an integer mode (int8 or int16x8), got mode={mode}")
    if mode == "int16x8" and io != "float32":
        raise ValueError("int16x8 models take float32 input and output")
    if sparse and mode not in ("fp32", "fp16"):
        raise ValueError(f"sparse storage is for fp32 and fp16 files (XNNPACK sparse inference), got mode={mode}")

    absl = logging.getLogger("absl")  # silence its "trackable_obj ... deprecated" warning: see _export_function
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([_export_function(model)])
    finally:
        absl.setLevel(level)
    if mode != "fp32" or qat:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "dynamic":
        # TF >= 2.17 quantizes dense weights per channel, which makes FULLY_CONNECTED version 12:
        # runtimes before 2.17 (tflite-runtime 2.14, older apps) refuse to load the file. Per-tensor
        # dense weights keep it at version 9 (runtime >= 2.4).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if integer:
        if calibration is not None:
            batches = list(calibration)
            converter.representative_dataset = lambda: (
                [image[None].astype(np.float32)] for batch in batches for image in batch)
        elif qat:
            _allow_qat_without_calibration(converter)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if mode == "int16x8" else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float32":
            converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    return converter


def to_tflite(model, mode="fp32", calibration=None, io="float32", sparse=False, range_quantile=1.0):
    """Convert a Keras model to a TFLite flatbuffer with a static batch of 1 (see ``make_converter``).

    ``range_quantile`` < 1 (int8 / int16x8 from a float model): each activation range spans that
    quantile of the per-image extremes over the calibration images instead of their min / max
    (``mobilecls.export.calibration_ranges``).

    Returns:
        The .tflite file content as bytes.
    """
    from mobilecls.export.calibration_ranges import calibration_edited, check_range_quantile, clipped_ranges

    converter = make_converter(model, mode, calibration, io, sparse)
    if check_range_quantile(range_quantile) == 1.0 or calibration is None:
        return converter.convert()
    images = np.concatenate([np.asarray(batch, np.float32) for batch in calibration])
    with calibration_edited(clipped_ranges(images, range_quantile)):
        return converter.convert()


def layer_of_tensor(tensor_name):
    """The Keras layer behind a converted tensor's name, or None when the name has none.

    "model/model/block_1_relu6/Relu6;model/model/block_1/Conv2D" -> "block_1_relu6": the first
    of the fused names is the op that produced the tensor; tfmot's "quant_" prefix is dropped.
    Graph inputs and outputs ("serving_default_pixels:0", "StatefulPartitionedCall:0") and
    converter-made tensors ("tfl.quantize") carry no layer.
    """
    parts = tensor_name.split(";")[0].split("/")
    return parts[-2].removeprefix("quant_") if len(parts) >= 2 else None


@dataclasses.dataclass(frozen=True)
class GraphReport:
    """What a converted graph holds and how the LiteRT interpreter runs it."""

    ops: tuple            # op names in execution order (before delegation)
    partitions: int       # XNNPACK delegate partitions
    undelegated: tuple    # ops left to the interpreter at partition boundaries
    float_ops: tuple      # compute ops with a float32 operand (edge QUANTIZE/DEQUANTIZE excluded)
    input_shape: tuple
    input_dtype: str
    output_dtype: str

    @property
    def dynamic_shape_ops(self):
        """Ops that compute shapes at run time (a dynamic batch leaves these behind)."""
        return tuple(op for op in self.ops if op in ("SHAPE", "PACK", "STRIDED_SLICE"))


def inspect_tflite(content, num_threads=1):
    """Load ``content`` in the LiteRT interpreter (XNNPACK on) and report its graph."""
    interpreter = Interpreter(model_content=bytes(content), num_threads=num_threads)
    interpreter.allocate_tensors()
    details = interpreter._get_ops_details()
    delegates = [op for op in details if op["op_name"] == "DELEGATE"]
    nodes = [op for op in details if op["op_name"] != "DELEGATE"]
    delegate_in = {int(t) for op in delegates for t in op["inputs"]}
    delegate_out = {int(t) for op in delegates for t in op["outputs"]}
    undelegated = tuple(
        op["op_name"] for op in nodes
        if delegates and ({int(t) for t in op["inputs"]} & delegate_out
                          or {int(t) for t in op["outputs"]} & delegate_in))
    float_ops = tuple(
        op["op_name"] for op in nodes
        if op["op_name"] not in _EDGE_OPS
        and np.float32 in list(op["operand_types"]) + list(op["result_types"]))
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    return GraphReport(
        ops=tuple(op["op_name"] for op in nodes), partitions=len(delegates), undelegated=undelegated,
        float_ops=float_ops, input_shape=tuple(int(d) for d in source["shape"]),
        input_dtype=np.dtype(source["dtype"]).name, output_dtype=np.dtype(sink["dtype"]).name)


def check_graph(report, mode):
    """Raise RunFailed if an exported graph is not what ``mode`` promises.

    Every file: a static batch of 1 and no run-time shape ops. int8: no float compute op.
    """
    if report.input_shape[0] != 1 or report.dynamic_shape_ops:
        raise RunFailed(f"converted graph has a dynamic batch (input {report.input_shape}, "
                         f"ops {', '.join(report.dynamic_shape_ops)})")
    if mode == "int8" and report.float_ops:
        raise RunFailed(f"int8 export left float compute ops: {', '.join(sorted(set(report.float_ops)))}; "
                         "these layers are not quantized")
