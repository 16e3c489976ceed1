"""ShuffleNetV1 (Zhang et al., 2018): pointwise group convolutions and channel shuffle.

CIFAR layout (input < 96): stride-1 stem and no max-pool, so 32x32 ends at 4x4.
As in the paper, the first pointwise convolution of stage 2 is not grouped (its input has only
24 channels), and no shuffle follows an ungrouped convolution.

How the grouped convolutions are built (and why). TensorFlow's CPU kernel for
``Conv2D(groups>1)`` is slow to train: built with it, ShuffleNetV1 g=3 trained at 39 images/s
here, ShuffleNetV2 1.0x at 247. So each grouped 1x1 convolution with its BatchNorm (and ReLU) is
one ``GroupedPointwiseConvBN`` layer (models/layers.py): the same weights as the textbook's
``Conv2D(groups=g)`` -> BatchNorm -> ReLU, trained by a compiled op (one matrix product per
group, the BatchNorm and the ReLU, forward and backward), and traced as a real grouped
convolution for the converter, so the .tflite file is the textbook graph's. Everything else is
the textbook unit: the stage's state is one tensor, the shuffle is ``layers.channel_shuffle``
(Reshape -> Permute -> Reshape), and ``shuffle=False`` leaves it out, nothing else changed.

``grouped_conv=True`` builds the textbook graph with ``Conv2D(groups=g)`` layers: the reference
the default is tested against (the same function, weights and MACs), slow to train on a CPU.
"""

import math

from mobilecls._tf import keras, tf
from mobilecls.models.layers import (
    AveragePooling3x3,
    GroupedPointwiseConvBN,
    channel_shuffle,
    check_common,
    classifier_head,
    conv_bn,
    depthwise_bn,
    is_cifar_layout,
    layers,
    make_divisible,
    model_input,
)

# Output channels of stages 2-4 for each group count, the paper's Table 1.
STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960),
                  4: (272, 544, 1088), 8: (384, 768, 1536)}
REPEATS = (4, 8, 4)


def pointwise_bn(x, filters, groups, activation, grouped_conv, name):
    """1x1 convolution (grouped when ``groups`` > 1) -> BatchNorm -> activation."""
    if groups == 1 or grouped_conv:
        return conv_bn(x, filters, 1, groups=groups, activation=activation, name=name)
    return GroupedPointwiseConvBN(filters, groups, activation=activation, name=name)(x)


def _unit(x, out_channels, groups, stride, grouped, shuffle, grouped_conv, name):
    """The paper's unit (Fig. 2 b, c): GConv1 -> shuffle -> depthwise -> GConv2, + shortcut."""
    in_channels = x.shape[-1]
    branch_channels = out_channels - in_channels if stride == 2 else out_channels
    conv1_groups = groups if grouped else 1
    y = pointwise_bn(x, out_channels // 4, conv1_groups, "relu", grouped_conv, f"{name}_gconv1")
    if shuffle and conv1_groups > 1:
        y = channel_shuffle(y, groups, name=f"{name}_shuffle")
    y = depthwise_bn(y, 3, stride, activation=None, name=f"{name}_depthwise")
    if stride == 1:
        y = pointwise_bn(y, branch_channels, groups, None, grouped_conv, f"{name}_gconv2")
        return layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([x, y]))
    # The paper applies ReLU after the concatenation; the pooled shortcut of a ReLU output is
    # already >= 0, so applying it to the branch alone is the same function, and it fuses into
    # the convolution instead of being a separate int8 RELU that XNNPACK does not delegate.
    y = pointwise_bn(y, branch_channels, groups, "relu", grouped_conv, f"{name}_gconv2")
    x = AveragePooling3x3(strides=2, name=f"{name}_shortcut_pool")(x)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def stage_channels(width, groups):
    """Output channels of stages 2-4: the paper's stage 2 scaled and rounded to a multiple of
    lcm(8, 4g) (so every grouped convolution divides evenly), doubled at each later stage."""
    first = make_divisible(STAGE_CHANNELS[groups][0] * width, math.lcm(8, 4 * groups))
    return first, 2 * first, 4 * first


def stem_channels(width, groups):
    """The stem's channels: 24 scaled (not above 24), a multiple of lcm(8, g), so that the
    first stride-2 unit's branch (stage 2 minus the stem) divides into g groups."""
    return make_divisible(24 * min(width, 1.0), math.lcm(8, groups))


def shufflenet_v1(width=1.0, input_size=224, num_classes=1000, dropout=0.0, groups=3, shuffle=True,
                  grouped_conv=False, zero_init_residual=False):
    """Build ShuffleNetV1.

    Args:
        width: width multiplier (see ``stage_channels`` and ``stem_channels``).
        input_size: square input side; < 96 selects the CIFAR layout.
        num_classes: number of output logits.
        dropout: dropout rate before the classifier.
        groups: groups of the pointwise convolutions, one of 1, 2, 3, 4, 8.
        shuffle: False removes the channel shuffle, everything else identical (the ablation).
        grouped_conv: True builds the grouped convolutions as ``Conv2D(groups=g)`` layers (the
            textbook layers): the same function, weights and .tflite file, slow to train on a CPU.
        zero_init_residual: True starts the BatchNorm gamma that ends each residual branch (GConv2
            of the stride-1 units) at 0, so that every such unit starts as the identity (Goyal et al.,
            2017; torchvision's keyword). An initialization only: the same graph and weights' shapes.
    """
    check_common("shufflenet_v1", width, input_size, num_classes, dropout)
    if groups not in STAGE_CHANNELS:
        raise ValueError(f"shufflenet_v1: groups must be one of 1, 2, 3, 4, 8, got {groups!r}")
    cifar = is_cifar_layout(input_size)
    x = inputs = model_input(input_size)
    x = conv_bn(x, stem_channels(width, groups), 3, stride=1 if cifar else 2, name="stem")
    if not cifar:
        x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, (out_channels, repeats) in enumerate(zip(stage_channels(width, groups), REPEATS, strict=True),
                                                    start=2):
        for index in range(repeats):
            x = _unit(x, out_channels, groups, 2 if index == 0 else 1, grouped=not (stage == 2 and index == 0),
                      shuffle=shuffle, grouped_conv=grouped_conv, name=f"stage_{stage}_unit_{index + 1}")
    outputs = classifier_head(x, num_classes, dropout)
    suffix = "" if shuffle else "_noshuffle"
    model = keras.Model(inputs, outputs, name=f"shufflenet_v1_g{groups}_{width:g}{suffix}")
    if zero_init_residual:
        for gamma in residual_branch_gammas(model):
            gamma.assign(tf.zeros_like(gamma))
    return model


def residual_branch_gammas(model):
    """The BatchNorm gammas that end the residual branches: GConv2's of every stride-1 unit (the
    units whose output is ``x + branch``), in either build of the grouped convolutions."""
    adds = {layer.name.removesuffix("_add") for layer in model.layers if layer.name.endswith("_add")}
    gammas = []
    for unit in sorted(adds):
        layer = model.get_layer(f"{unit}_gconv2")
        batch_norm = layer.bn if isinstance(layer, GroupedPointwiseConvBN) else model.get_layer(f"{unit}_gconv2_bn")
        gammas.append(batch_norm.gamma)
    return gammas
