"""ShuffleNetV1 (Zhang et al., 2018): pointwise group convolutions and channel shuffle.

CIFAR layout (input < 96): stride-1 stem and no max-pool, so 32x32 ends at 4x4.
As in the paper, the first pointwise convolution of stage 2 is not grouped (its input has only
24 channels), and no shuffle follows an ungrouped convolution.
"""

import math

from mobilecls._tf import keras
from mobilecls.models.layers import (
    AveragePooling3x3,
    channel_shuffle,
    classifier_head,
    conv_bn,
    depthwise_bn,
    layers,
    make_divisible,
    model_input,
)
from mobilecls.models.registry import check_common, is_cifar_layout

# Output channels of stages 2-4 for each group count, the paper's Table 1.
STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960),
                  4: (272, 544, 1088), 8: (384, 768, 1536)}
REPEATS = (4, 8, 4)


def _unit(x, out_channels, groups, stride, first_grouped, shuffle, name):
    in_channels = x.shape[-1]
    branch_channels = out_channels - in_channels if stride == 2 else out_channels
    bottleneck = out_channels // 4
    conv1_groups = groups if first_grouped else 1
    y = conv_bn(x, bottleneck, 1, groups=conv1_groups, name=f"{name}_gconv1")
    if shuffle and conv1_groups > 1:
        y = channel_shuffle(y, groups, name=f"{name}_shuffle")
    y = depthwise_bn(y, 3, stride, activation=None, name=f"{name}_depthwise")
    if stride == 1:
        y = conv_bn(y, branch_channels, 1, groups=groups, activation=None, name=f"{name}_gconv2")
        x = layers.Add(name=f"{name}_add")([x, y])
        return layers.ReLU(name=f"{name}_relu")(x)
    # The paper applies ReLU after the concatenation; the pooled shortcut of a ReLU output is
    # already >= 0, so applying it to the branch alone is the same function, and it fuses into
    # the convolution instead of being a separate int8 RELU that XNNPACK does not delegate.
    y = conv_bn(y, branch_channels, 1, groups=groups, activation="relu", name=f"{name}_gconv2")
    x = AveragePooling3x3(strides=2, name=f"{name}_shortcut_pool")(x)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def shufflenet_v1(width=1.0, input_size=224, num_classes=1000, dropout=0.0, groups=3, shuffle=True):
    """Build ShuffleNetV1.

    Args:
        width: width multiplier; stage channels are rounded to multiples of lcm(8, 4 * groups)
            so that every grouped convolution divides evenly.
        input_size: square input side; < 96 selects the CIFAR layout.
        num_classes: number of output logits.
        dropout: dropout rate before the classifier.
        groups: groups of the pointwise convolutions, one of 1, 2, 3, 4, 8.
        shuffle: False removes the channel shuffle, everything else identical (the ablation).
    """
    check_common("shufflenet_v1", width, input_size, num_classes, dropout)
    if groups not in STAGE_CHANNELS:
        raise ValueError(f"shufflenet_v1: groups must be one of 1, 2, 3, 4, 8, got {groups!r}")
    cifar = is_cifar_layout(input_size)
    divisor = math.lcm(8, 4 * groups)
    x = inputs = model_input(input_size)
    x = conv_bn(x, make_divisible(24 * min(width, 1.0)), 3, stride=1 if cifar else 2, name="stem")
    if not cifar:
        x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, (channels, repeats) in enumerate(zip(STAGE_CHANNELS[groups], REPEATS, strict=True), start=2):
        out_channels = make_divisible(channels * width, divisor)
        for unit in range(repeats):
            x = _unit(x, out_channels, groups, 2 if unit == 0 else 1,
                      first_grouped=not (stage == 2 and unit == 0), shuffle=shuffle,
                      name=f"stage_{stage}_unit_{unit + 1}")
    outputs = classifier_head(x, num_classes, dropout)
    suffix = "" if shuffle else "_noshuffle"
    return keras.Model(inputs, outputs, name=f"shufflenet_v1_g{groups}_{width:g}{suffix}")
