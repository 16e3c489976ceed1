"""Magnitude pruning with tfmot: wrap, fine-tune with UpdatePruningStep, strip."""

import numpy as np

from mobilecls._tf import keras, tfmot

SCHEDULES = ("polynomial", "constant")


POLICIES = ("all", "xnnpack")


def prune(model, sparsity, schedule="polynomial", structured=None, begin_step=0, end_step=1000, frequency=None,
          policy="all"):
    """A new model wrapped for magnitude pruning to ``sparsity`` (``model`` is left as it is).

    Args:
        model: a float tf_keras model.
        sparsity: target fraction of zero weights in every prunable kernel, in (0, 1).
        schedule: "polynomial" (0 -> sparsity between begin_step and end_step) or "constant".
        structured: "N:M" block sparsity (e.g. "2:4": 2 zeros in every 4 weights), or None.
        begin_step, end_step: optimizer steps over which the polynomial schedule ramps.
        frequency: steps between mask updates; default a twentieth of the ramp. (tfmot's own
            default of 100 never pruned a short fine-tuning run here: the first update came
            only at step 100.)
        policy: "all" prunes every prunable layer; "xnnpack" only the 1x1 convolutions of a
            model that XNNPACK's sparse inference can run (tfmot's PruneForLatencyOnXNNPack).

    Raises:
        ValueError: sparsity out of range, unknown schedule or policy, a malformed N:M pattern,
            or a model that does not qualify for the xnnpack policy (the reason is named).
    """
    block = check_arguments(sparsity, schedule, structured, policy)
    sparsity_api = tfmot.sparsity.keras
    frequency = frequency or max(1, (end_step - begin_step) // 20)
    # The last mask update must land on end_step, so the ramp spans whole update periods.
    end_step = begin_step + max(1, -(-(end_step - begin_step) // frequency)) * frequency
    if schedule == "polynomial":
        pruning_schedule = sparsity_api.PolynomialDecay(0.0, sparsity, begin_step, end_step, frequency=frequency)
    else:
        pruning_schedule = sparsity_api.ConstantSparsity(sparsity, begin_step, frequency=frequency)
    kwargs = {"pruning_schedule": pruning_schedule}
    if block:
        kwargs["sparsity_m_by_n"] = block
    # tfmot wraps the model's own layer objects, so pruning would also zero the caller's model:
    # prune a copy and leave the original untouched.
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    if policy == "xnnpack":
        kwargs["pruning_policy"] = xnnpack_policy(copy)
    return sparsity_api.prune_low_magnitude(copy, **kwargs)


def check_arguments(sparsity, schedule="polynomial", structured=None, policy="all"):
    """Check ``prune``'s arguments before any model or data is loaded.

    Returns:
        The (N, M) block of ``structured``, or None.

    Raises:
        ValueError: as ``prune`` (all but the model's xnnpack qualification).
    """
    if not 0 < sparsity < 1:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if not structured:
        return None
    try:
        n, m = (int(part) for part in structured.split(":"))
    except ValueError:
        raise ValueError(f"structured must look like N:M (e.g. 2:4), got {structured!r}") from None
    if not 0 < n < m:
        raise ValueError(f"structured N:M needs 0 < N < M, got {structured!r}")
    return n, m


def xnnpack_qualification(model):
    """None when ``model`` qualifies for XNNPACK sparse inference, else tfmot's reason why not."""
    try:
        xnnpack_policy(model)
    except ValueError as error:
        return str(error)
    return None


def xnnpack_policy(model):
    """tfmot's PruneForLatencyOnXNNPack for ``model``.

    Raises:
        ValueError: the model has no subgraph XNNPACK can run sparse (it must start with a
            ZeroPadding2D(1) + 3x3 stride-2 "valid" conv on RGB and reach a global average pool
            through supported layers only: e.g. mobilenet_v1/v2 at >= 96 px with explicit_padding).
    """
    policy = tfmot.sparsity.keras.PruneForLatencyOnXNNPack()
    try:
        policy.ensure_model_supports_pruning(model)
    except ValueError as error:
        raise ValueError(f"{model.name} does not qualify for XNNPACK sparse inference: {error}") from None
    return policy


def update_step_callback():
    """The callback tfmot needs while fine-tuning a pruned model."""
    return tfmot.sparsity.keras.UpdatePruningStep()


def strip(model):
    """A new model without pruning wrappers (the zeros stay in the kernels)."""
    return tfmot.sparsity.keras.strip_pruning(model)


def layer_sparsity(model):
    """{layer name: fraction of zero weights} for every convolution and dense kernel."""
    result = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.trainable:
            kernel = layer.depthwise_kernel
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            kernel = layer.kernel
        else:
            continue
        result[layer.name] = float(np.mean(kernel.numpy() == 0))
    return result


def pointwise_sparsity(model):
    """Fraction of zero weights over the 1x1 convolutions (XNNPACK sparse inference needs 2/3)."""
    kernels = [layer.kernel.numpy() for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)
               and tuple(layer.kernel_size) == (1, 1)]
    total = sum(kernel.size for kernel in kernels)
    return sum(int((kernel == 0).sum()) for kernel in kernels) / total if total else 0.0


def overall_sparsity(model):
    """Fraction of zero weights over all convolution and dense kernels, weighted by size."""
    zeros = total = 0
    for layer in model.layers:
        for weight in layer.weights:
            if weight.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel") and layer.trainable:
                values = weight.numpy()
                zeros, total = zeros + int((values == 0).sum()), total + values.size
    return zeros / total if total else 0.0
