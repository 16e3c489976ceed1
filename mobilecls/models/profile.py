"""Parameters and multiply-accumulates (MACs) with the seed study's formulas.

For a layer whose output is H x W (the output size, so strided layers count once per output
position), with Cin input and Cout output channels and a K x K kernel:

    standard convolution   H * W * Cin * Cout * K * K            (eq. 1)
    depthwise convolution  H * W * Cin * K * K                   (eq. 2)
    pointwise convolution  H * W * Cin * Cout                    (eq. 3)
    depthwise separable    eq. 2 + eq. 3                         (eq. 4)
    ratio separable / standard = 1 / Cout + 1 / K^2              (eq. 5)

A grouped convolution (ShuffleNet) is eq. 1 or 3 divided by the groups; a dense layer is
Cin * Cout. Normalisation, activations, additions and pooling are not counted, as in the papers.
"""

import dataclasses


def standard_conv_macs(height, width, in_channels, out_channels, kernel):
    """Eq. (1): H * W * Cin * Cout * K * K."""
    return height * width * in_channels * out_channels * kernel * kernel


def depthwise_conv_macs(height, width, in_channels, kernel):
    """Eq. (2): H * W * Cin * K * K."""
    return height * width * in_channels * kernel * kernel


def pointwise_conv_macs(height, width, in_channels, out_channels):
    """Eq. (3): H * W * Cin * Cout."""
    return height * width * in_channels * out_channels


def separable_conv_macs(height, width, in_channels, out_channels, kernel):
    """Eq. (4): depthwise (eq. 2) + pointwise (eq. 3)."""
    return (depthwise_conv_macs(height, width, in_channels, kernel)
            + pointwise_conv_macs(height, width, in_channels, out_channels))


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """MACs and parameters of one layer."""

    name: str
    kind: str        # standard | pointwise | depthwise | group | dense
    formula: str     # the equation used
    output: tuple    # (H, W, Cout), or (Cout,) for a dense layer
    kernel: int
    groups: int
    macs: int
    params: int


def _is_fixed(layer):
    # mobilecls' frozen depthwise layers (input normalisation, shortcut pooling) are fixed
    # arithmetic, not learned convolutions: like pooling, they are not counted.
    return getattr(layer, "mobilecls_quantize_weights", None) is not None and not layer.trainable


def layer_costs(model):
    """Per-layer costs of every convolution and dense layer of a built tf_keras model."""
    from mobilecls._tf import keras
    from mobilecls.models.layers import GroupedPointwiseConvBN

    costs = []
    for layer in model.layers:
        if isinstance(layer, GroupedPointwiseConvBN):  # a grouped 1x1 Conv2D with its BatchNorm
            _, height, width, cout = layer.output_shape
            macs = pointwise_conv_macs(height, width, layer.input_shape[-1], cout) // layer.groups
            costs.append(LayerCost(layer.name, "group", "eq. 3 / g", (height, width, cout), 1, layer.groups, macs,
                                   int(layer.kernel.shape.num_elements())))
            continue
        if _is_fixed(layer) or not isinstance(
                layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D | keras.layers.Dense):
            continue
        params = layer.count_params()
        if isinstance(layer, keras.layers.Dense):
            cin, cout = layer.input_shape[-1], layer.units
            costs.append(LayerCost(layer.name, "dense", "Cin*Cout", (cout,), 1, 1, cin * cout, params))
            continue
        _, height, width, cout = layer.output_shape
        cin, kernel = layer.input_shape[-1], layer.kernel_size[0]
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            macs = depthwise_conv_macs(height, width, cin, kernel) * layer.depth_multiplier
            kind, formula, groups = "depthwise", "eq. 2", cin
        else:
            groups = layer.groups
            if kernel == 1:
                macs, formula = pointwise_conv_macs(height, width, cin, cout), "eq. 3"
            else:
                macs, formula = standard_conv_macs(height, width, cin, cout, kernel), "eq. 1"
            kind = "group" if groups > 1 else ("pointwise" if kernel == 1 else "standard")
            if groups > 1:
                macs, formula = macs // groups, f"{formula} / g"
        costs.append(LayerCost(layer.name, kind, formula, (height, width, cout), kernel, groups, macs, params))
    return costs


def count_params(model):
    """Parameters of ``model`` (weights and BatchNorm statistics), fixed layers excluded."""
    return model.count_params() - sum(layer.count_params() for layer in model.layers if _is_fixed(layer))


def _measure(name, width, input_size, num_classes, **kwargs):
    """(parameters, per-layer costs) of the built model ``name``."""
    from mobilecls.models.registry import build_model

    model = build_model(name, width=width, input_size=input_size, num_classes=num_classes, **kwargs)
    return count_params(model), layer_costs(model)


def summarize(name, width=1.0, input_size=224, num_classes=1000, **kwargs):
    """Build ``name`` and return {name, width, input_size, num_classes, params, macs}."""
    params, costs = _measure(name, width, input_size, num_classes, **kwargs)
    return {"name": name, "width": width, "input_size": input_size, "num_classes": num_classes,
            "params": params, "macs": sum(cost.macs for cost in costs)}


def layer_report(name, width=1.0, input_size=224, num_classes=1000, **kwargs):
    """Build ``name`` and return {name, width, params, macs, layers}, ``layers`` being every
    ``LayerCost`` as a dict (what `mobilecls profile --json` prints)."""
    params, costs = _measure(name, width, input_size, num_classes, **kwargs)
    return {"name": name, "width": width, "params": params, "macs": sum(cost.macs for cost in costs),
            "layers": [dataclasses.asdict(cost) for cost in costs]}
