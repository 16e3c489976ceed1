"""MobileNetV3 Large and Small (Howard et al., 2019): hard-swish and squeeze-excite.

CIFAR layout (input < 96): the stem and the first stride-2 block use stride 1.
The head follows the paper: 1x1 conv + BN + hard-swish, pool, 1x1 conv (bias, no BN) +
hard-swish, dropout, classifier. SE widths are make_divisible(expanded / 4).
"""

from mobilecls._tf import keras
from mobilecls.models.layers import (
    check_common,
    conv_bn,
    depthwise_bn,
    hard_swish,
    is_cifar_layout,
    layers,
    make_divisible,
    model_input,
    squeeze_excite,
)

# (kernel, expanded channels, output channels, squeeze-excite, activation, stride):
# Tables 1 and 2 of the paper.
LARGE = ((3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2),
         (3, 72, 24, False, "relu", 1), (5, 72, 40, True, "relu", 2),
         (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
         (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1),
         (3, 184, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
         (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
         (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1),
         (5, 960, 160, True, "hswish", 1))
SMALL = ((3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
         (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hswish", 2),
         (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
         (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1),
         (5, 288, 96, True, "hswish", 2), (5, 576, 96, True, "hswish", 1),
         (5, 576, 96, True, "hswish", 1))


def _bottleneck(x, kernel, expanded, filters, use_se, activation, stride, name):
    in_channels = x.shape[-1]
    shortcut = x
    if expanded != in_channels:
        x = conv_bn(x, expanded, 1, activation=activation, name=f"{name}_expand")
    x = depthwise_bn(x, kernel, stride, activation=activation, name=f"{name}_depthwise")
    if use_se:
        x = squeeze_excite(x, make_divisible(expanded / 4), name=f"{name}_se")
    x = conv_bn(x, filters, 1, activation=None, name=f"{name}_project")
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def _mobilenet_v3(table, last_conv, head, variant, width, input_size, num_classes, dropout):
    check_common(f"mobilenet_v3_{variant}", width, input_size, num_classes, dropout)
    cifar = is_cifar_layout(input_size)
    first_strided = next(i for i, row in enumerate(table) if row[-1] == 2)
    x = inputs = model_input(input_size)
    x = conv_bn(x, make_divisible(16 * width), 3, stride=1 if cifar else 2, activation="hswish", name="stem")
    for index, (kernel, expanded, filters, use_se, activation, stride) in enumerate(table):
        if cifar and index == first_strided:
            stride = 1
        x = _bottleneck(x, kernel, make_divisible(expanded * width), make_divisible(filters * width),
                        use_se, activation, stride, name=f"block_{index}")
    x = conv_bn(x, make_divisible(last_conv * width), 1, activation="hswish", name="last_conv")
    x = layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(x)
    # As in the paper, the head conv is not narrowed for width < 1.
    x = layers.Conv2D(make_divisible(head * max(width, 1.0)), 1, name="head_conv")(x)
    x = hard_swish(x, name="head_hswish")
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Flatten(name="head_flatten")(x)
    outputs = layers.Dense(num_classes, name="head_logits")(x)
    return keras.Model(inputs, outputs, name=f"mobilenet_v3_{variant}_{width:g}")


def mobilenet_v3_large(width=1.0, input_size=224, num_classes=1000, dropout=0.0):
    """Build MobileNetV3-Large (width multiplier, input side, classes, dropout)."""
    return _mobilenet_v3(LARGE, 960, 1280, "large", width, input_size, num_classes, dropout)


def mobilenet_v3_small(width=1.0, input_size=224, num_classes=1000, dropout=0.0):
    """Build MobileNetV3-Small (width multiplier, input side, classes, dropout)."""
    return _mobilenet_v3(SMALL, 576, 1024, "small", width, input_size, num_classes, dropout)
