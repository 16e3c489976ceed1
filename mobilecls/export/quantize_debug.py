"""`quantize --report`: where post-training int8 quantization loses accuracy, layer by layer.

tf.lite.experimental.QuantizationDebugger runs the int8 graph with every quantized op checked
against its float counterpart fed the same (dequantized) inputs, so each row is that op's own
error. Following TensorFlow's guide, ops are ranked by RMSE / output scale: uniform rounding
noise alone gives 1/sqrt(12) = 0.29; much more than that means the op itself quantizes badly.
"""

import contextlib
import csv
import io
import math

import numpy as np

from mobilecls.export.convert import layer_of_tensor

ROUNDING_NOISE = 1 / math.sqrt(12)


def _ranges(calibration, range_quantile):
    """Within: the debugger's conversions calibrate as ``to_tflite(range_quantile=...)`` does."""
    from mobilecls.export.calibration_ranges import calibration_edited, check_range_quantile, clipped_ranges

    if check_range_quantile(range_quantile) == 1.0:
        return contextlib.nullcontext()
    return calibration_edited(clipped_ranges(calibration, range_quantile))


def _debugger(model, calibration, debug_images, denylisted=()):
    from mobilecls._tf import tf
    from mobilecls.export.convert import make_converter

    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylisted)) if denylisted else None
    return tf.lite.experimental.QuantizationDebugger(
        converter=make_converter(model, "int8", calibration=[calibration]),
        debug_dataset=lambda: ([image[None].astype(np.float32)] for image in debug_images),
        debug_options=options)


def layer_errors(model, calibration, debug_images, range_quantile=1.0):
    """Per-op error of post-training int8 quantization, in execution order.

    Args:
        model: a float tf_keras model taking pixels 0..255.
        calibration: float32 images (N, H, W, 3) for the converter's calibration.
        debug_images: float32 images the quantized and float ops are compared on.
        range_quantile: the activation ranges' quantile (``to_tflite``; 1 = min / max).

    Returns:
        A list of dicts: op, tensor (its name in the file, what ``with_layers_in_float`` takes),
        layer, elements, rmse_over_scale, mean_error, max_abs_error, scale.
    """
    with _ranges(calibration, range_quantile):
        debugger = _debugger(model, calibration, debug_images)
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows, output_layer = [], model.layers[-1].name
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        rmse = math.sqrt(max(float(row["mean_squared_error"]), 0.0))
        rows.append({"op": row["op_name"], "tensor": row["tensor_name"],
                     "layer": layer_of_tensor(row["tensor_name"]) or output_layer,
                     "elements": int(float(row["num_elements"])),
                     "rmse_over_scale": rmse / scale if scale > 0 else float("inf"),
                     "mean_error": float(row["mean_error"]), "max_abs_error": float(row["max_abs_error"]),
                     "scale": scale})
    return rows


def with_layers_in_float(model, calibration, debug_images, tensors, range_quantile=1.0):
    """An int8 .tflite (float32 io) in which the ops producing ``tensors`` stay in float."""
    with _ranges(calibration, range_quantile):
        return _debugger(model, calibration, debug_images, denylisted=tensors).get_nondebug_quantized_model()


def quantization_report(model, calibration, debug_images, images, labels, worst=5, range_quantile=1.0):
    """Per-layer PTQ error, the ``worst`` layers, and accuracy with those layers kept in float.

    Args:
        model: a float tf_keras model.
        calibration: float32 calibration images (training split).
        debug_images: images the per-layer errors are measured on.
        images, labels: the evaluation split for the accuracies.
        worst: how many of the worst layers to keep in float.
        range_quantile: the activation ranges' quantile (``to_tflite``; 1 = min / max).

    Returns:
        A dict: layers (execution order), worst (tensors, worst first), accuracy (float, int8,
        int8_worst_in_float).
    """
    from mobilecls.export.convert import to_tflite
    from mobilecls.runtime import predict_tflite

    layers = layer_errors(model, calibration, debug_images, range_quantile)
    ranked = sorted(layers, key=lambda row: row["rmse_over_scale"], reverse=True)[:worst]
    float_scores = model.predict(images.astype(np.float32), batch_size=256, verbose=0)
    int8_scores = predict_tflite(to_tflite(model, "int8", calibration=[calibration], range_quantile=range_quantile),
                                 images)
    kept_scores = predict_tflite(with_layers_in_float(model, calibration, debug_images,
                                                      [row["tensor"] for row in ranked], range_quantile), images)

    def accuracy(scores):
        return float(np.mean(np.asarray(scores).argmax(axis=1) == labels))

    return {"layers": layers, "worst": [row["tensor"] for row in ranked],
            "accuracy": {"float": accuracy(float_scores), "int8": accuracy(int8_scores),
                         "int8_worst_in_float": accuracy(kept_scores)},
            "range_quantile": range_quantile, "calibration_images": int(len(calibration)),
            "debug_images": int(len(debug_images)),
            "evaluation_images": int(len(images)), "rounding_noise": ROUNDING_NOISE}
