"""Quantization-aware training with tfmot's default 8-bit scheme (sparsity-preserving if pruned)."""

import contextlib
import re

import numpy as np

from mobilecls._tf import keras, tf, tfmot
from mobilecls.export.calibration_ranges import image_quantile_span
from mobilecls.optimize.prune import overall_sparsity

# Above this fraction of zero kernel weights a model counts as pruned, and QAT keeps the zeros.
PRUNED_THRESHOLD = 0.3

# The range variables of the tensors a QAT model fake-quantizes: a wrapped layer's output (or its
# activation's), and the model input (tfmot's QuantizeLayer, named quantize_layer_N after the first).
_RANGE = re.compile(r"/(output|post_activation|quantize_layer(_\d+)?)_(?P<end>min|max):0$")


def qat(model, preserve_sparsity=None, calibration=None, range_quantile=1.0):
    """A new model with fake-quant nodes for 8-bit QAT.

    Args:
        model: a float tf_keras model (mobilecls models need no quantize_scope).
        preserve_sparsity: keep zero weights at zero (tfmot's prune-preserving scheme, for a
            pruned model); None decides from the model's sparsity.
        calibration: images (pixels as the model takes them) on which the float model's
            activations set the starting activation ranges (``calibrated_ranges``), the weight
            ranges then set from the weights; None keeps tfmot's start ([-6, 6] for both).
        range_quantile: with ``calibration``, each activation range spans this quantile of the
            per-image extremes (``calibration_ranges.image_quantile_span``; 1: min / max).
    """
    keras_quantization = tfmot.quantization.keras
    if preserve_sparsity is None:
        preserve_sparsity = overall_sparsity(model) >= PRUNED_THRESHOLD
    if not preserve_sparsity:
        quantized = keras_quantization.quantize_model(model)
    else:
        annotated = keras_quantization.quantize_annotate_model(model)
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
        quantized = keras_quantization.quantize_apply(annotated, scheme)
    if calibration is not None:
        _assign(quantized, calibrated_ranges(quantized, model, calibration, quantile=range_quantile))
        _set_weight_ranges(quantized)
    return quantized


def _float_tensor_name(layer):
    """The float model's layer whose output a QAT layer's range variables cover: a wrapper's inner
    layer, or the input a QuantizeLayer quantizes."""
    inner = getattr(layer, "layer", None)
    if inner is not None:
        return inner.name
    inbound = layer.inbound_nodes[0].inbound_layers
    return (inbound[0] if isinstance(inbound, list) else inbound).name


def _range_variables(quantized):
    """The activation range variables of a QAT model (see ``_RANGE``)."""
    return [variable for variable in quantized.weights if _RANGE.search(variable.name)]


def calibrated_ranges(quantized, model, images, batch_size=32, quantile=1.0):
    """{range variable name: value}: the span (widened to hold 0) of each fake-quantized tensor of
    ``quantized`` over ``images``, measured on the float ``model`` it was made from; with
    ``quantile`` < 1 the span of that quantile of the per-image extremes (the images with rare
    large activations clipped, as int8 PTQ's ``range_quantile`` does).

    Why: tfmot starts every activation range at [-6, 6] and moves it by an exponential average with
    decay 0.999 per training step, so one QAT epoch of 351 steps leaves 70 % of the start in it.
    A ReLU model whose activations reach 40 (ShuffleNetV1 on CIFAR-10) is then clipped through
    QAT (the converter takes these ranges). Starting from the float model's measured ranges, as
    post-training calibration does, removes that (with ``frozen_batchnorm``, the two causes of the
    3.5 points ShuffleNetV1's QAT lost, docs/results.md).
    """
    variables = {}
    for layer in quantized.layers:
        for variable in layer.weights:
            if _RANGE.search(variable.name):
                variables.setdefault(_float_tensor_name(layer), []).append(variable)
    names = sorted(variables)
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])

    @tf.function
    def extremes(batch):
        outputs = probe(batch, training=False)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        flat = [tf.reshape(output, [tf.shape(output)[0], -1]) for output in outputs]
        return [tf.reduce_min(values, axis=1) for values in flat], [tf.reduce_max(values, axis=1) for values in flat]

    lows, highs = [[] for _ in names], [[] for _ in names]
    for start in range(0, len(images), batch_size):
        batch_lows, batch_highs = extremes(tf.constant(images[start:start + batch_size], tf.float32))
        for column, (low, high) in enumerate(zip(batch_lows, batch_highs, strict=True)):
            lows[column].append(low.numpy())
            highs[column].append(high.numpy())
    ranges = {}
    for name, name_lows, name_highs in zip(names, lows, highs, strict=True):
        lowest, highest = image_quantile_span(np.concatenate(name_lows), np.concatenate(name_highs), quantile)
        for variable in variables[name]:
            ranges[variable.name] = lowest if _RANGE.search(variable.name).group("end") == "min" else highest
    return ranges


class KeepRanges(keras.callbacks.Callback):
    """Puts the activation ranges of a QAT model back after every training step.

    Why: tfmot moves each range towards the extremes of every training batch (decay 0.999). With
    ranges clipped to a quantile of the per-image extremes, the batches (128 images, so nearly every
    one holds one of the rare images the clipping leaves out) would widen them again within an
    epoch; kept, each step still sees the calibrated range moved by at most 0.1 % of a batch.
    """

    def __init__(self, quantized):
        super().__init__()
        self.variables = _range_variables(quantized)
        self.values = [variable.numpy() for variable in self.variables]

    def on_train_batch_end(self, batch, logs=None):
        for variable, value in zip(self.variables, self.values, strict=True):
            variable.assign(value)


def _assign(quantized, ranges):
    for variable in quantized.weights:
        if variable.name in ranges:
            variable.assign(np.full(variable.shape, ranges[variable.name], np.float32))


def _set_weight_ranges(quantized):
    """Sets each weight quantizer's range from the weights, as its first training step would.

    Why: tfmot's weight quantizers store their range, start it at [-6, 6] and only update it in
    training, so until then the model in inference quantizes weights of ~0.05 in steps of 0.05.
    This runs each quantizer once in training mode on its weights (tfmot's own code, which
    assigns the range), so the model computes what its int8 file will from the start.
    """
    for layer in quantized.layers:
        for weight, quantizer, variables in getattr(layer, "_weight_vars", ()):  # QuantizeWrapperV2's
            quantizer(weight, training=True, weights=variables)


@contextlib.contextmanager
def frozen_batchnorm(quantized):
    """Within: every BatchNormalization of ``quantized`` (also inside mobilecls layers) is not
    trainable, so tf_keras runs it in inference mode (its moving statistics, never updated), as QAT
    practice freezes BatchNorm statistics; after: as before (tf_keras cannot save the model to .h5
    with them frozen).

    Why: measured on ShuffleNetV1 g=3 (CIFAR-10, calibrated ranges), 30 training steps at
    learning rate 0 took the QAT model from 85.4 to 80.6 % on 1,000 val images, and putting the float
    model's moving statistics back gave 85.5 %: the statistics re-estimated through the
    fake-quantized graph hurt (the same 30 steps on the float model: 85.9 %).
    """
    batchnorms = [layer for layer in quantized._flatten_layers()  # every layer, wrapped and nested too
                  if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    for layer in batchnorms:
        layer.trainable = False
    try:
        yield
    finally:
        for layer in batchnorms:
            layer.trainable = True
