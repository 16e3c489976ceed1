"""Quantization-aware training with tfmot's default 8-bit scheme (sparsity-preserving if pruned)."""

from mobilecls._tf import tfmot
from mobilecls.optimize.prune import overall_sparsity

# Above this fraction of zero kernel weights a model counts as pruned, and QAT keeps the zeros.
PRUNED_THRESHOLD = 0.3


def qat(model, preserve_sparsity=None):
    """A new model with fake-quant nodes for 8-bit QAT.

    Args:
        model: a float tf_keras model (mobilecls models need no quantize_scope).
        preserve_sparsity: keep zero weights at zero (tfmot's prune-preserving scheme, for a
            pruned model); None decides from the model's sparsity.
    """
    keras_quantization = tfmot.quantization.keras
    if preserve_sparsity is None:
        preserve_sparsity = overall_sparsity(model) >= PRUNED_THRESHOLD
    if not preserve_sparsity:
        return keras_quantization.quantize_model(model)
    annotated = keras_quantization.quantize_annotate_model(model)
    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    return keras_quantization.quantize_apply(annotated, scheme)
