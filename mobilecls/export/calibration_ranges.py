"""Activation ranges for post-training integer quantization that a few calibration images cannot blow up.

The TFLite converter gives every activation tensor the smallest and largest value it saw over all
calibration images. One kind of image can set that span for everyone: ShuffleNetV1 g=3 without
shuffle (seed 1, CIFAR-10) reaches 560 in a stage-3 tensor on 4 of 256 calibration images (red
cars) while the other images' largest value there has a median of 8.6, so with [0, 560] in 256
int8 steps most images use 3-11 levels and the int8 file scores 51 % against 85 % in float.

``image_quantile`` ranges take, for each tensor, a quantile of the per-image extremes instead
(e.g. 0.95: the largest value of the 95th percentile image): the rare images are clipped, every
other image keeps its resolution. A quantile of 1.0 is the converter's own min / max.

How: the converter calibrates first (its float graph, run on the images, writes each tensor's
min and max into the file) and then quantizes with those. ``clipped_ranges`` steps in between:
it runs the calibrated graph on the same images, keeping every tensor, and writes the quantile
ranges over the converter's. Model inputs keep their ranges (the pixel range is not a statistic).
"""

import contextlib

import numpy as np


def check_range_quantile(quantile):
    """``quantile`` as a float in [0.5, 1] (1: the converter's min / max)."""
    if not isinstance(quantile, (int, float)) or isinstance(quantile, bool) or not 0.5 <= quantile <= 1:
        raise ValueError(f"range quantile must be a number in [0.5, 1] (1 = min / max), got {quantile!r}")
    return float(quantile)


def _calibrated_tensors(model):
    """Indices of the tensors of subgraph 0 that carry calibrated min / max, without model inputs."""
    subgraph = model.subgraphs[0]
    return [index for index, tensor in enumerate(subgraph.tensors)
            if index not in subgraph.inputs and tensor.quantization is not None
            and tensor.quantization.min is not None and len(tensor.quantization.min) == 1]


def image_extremes(calibrated, images):
    """{tensor index: (per-image minima, per-image maxima)} of a calibrated float graph over ``images``.

    Args:
        calibrated: the converter's calibrated model (float ops, min / max on the tensors).
        images: float32 pixels (N, H, W, 3) as the graph's input takes them.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.tools import flatbuffer_utils

    indices = _calibrated_tensors(flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated)))
    # Delegated tensors cannot be read back: the builtin kernels, every tensor kept.
    interpreter = Interpreter(model_content=bytes(calibrated), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    lows, highs = np.empty((len(indices), len(images))), np.empty((len(indices), len(images)))
    for column, image in enumerate(images):
        interpreter.set_tensor(source, image[None].astype(np.float32))
        interpreter.invoke()
        for row, index in enumerate(indices):
            values = interpreter.get_tensor(index)
            lows[row, column], highs[row, column] = values.min(), values.max()
    return {index: (lows[row], highs[row]) for row, index in enumerate(indices)}


def image_quantile_span(lows, highs, quantile):
    """(low, high) from one tensor's per-image minima and maxima: the ``quantile`` of the maxima and
    the same quantile from below of the minima, widened to hold 0 (int8 must represent zero exactly).
    A quantile of 1 gives the overall min and max."""
    quantile = check_range_quantile(quantile)
    low = min(float(np.quantile(lows, 1 - quantile, method="higher")), 0.0)
    high = max(float(np.quantile(highs, quantile, method="lower")), 0.0)
    if high <= low:  # 0 on (nearly) every image: keep the whole span
        low, high = min(float(np.min(lows)), 0.0), max(float(np.max(highs)), 0.0)
    return low, high


def quantile_ranges(extremes, quantile):
    """{tensor index: (low, high)} from ``image_extremes`` (see ``image_quantile_span``)."""
    return {index: image_quantile_span(lows, highs, quantile) for index, (lows, highs) in extremes.items()}


def with_ranges(calibrated, ranges):
    """``calibrated`` with tensor ``index``'s recorded min / max replaced by ``ranges[index]``."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    for index, (low, high) in ranges.items():
        tensors[index].quantization.min, tensors[index].quantization.max = [low], [high]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def clipped_ranges(images, quantile):
    """The edit ``calibration_edited`` applies for ``image_quantile`` ranges at ``quantile``."""
    def edit(calibrated):
        return with_ranges(calibrated, quantile_ranges(image_extremes(calibrated, images), quantile))

    return edit


@contextlib.contextmanager
def calibration_edited(edit):
    """Within: every TFLite conversion passes its calibrated model through ``edit`` (bytes -> bytes)
    before quantizing with it. The converter offers no hook between its two steps, so this wraps
    its calibrator's ``calibrate`` (restored on exit); the rest of the conversion is its own."""
    from tensorflow.lite.python.optimize import calibrator

    original = calibrator.Calibrator.calibrate

    def calibrate(self, dataset_gen):
        return edit(original(self, dataset_gen))

    calibrator.Calibrator.calibrate = calibrate
    try:
        yield
    finally:
        calibrator.Calibrator.calibrate = original
