"""MobileNetV2 (Sandler et al., 2018): inverted residuals and linear bottlenecks.

CIFAR layout (input < 96): the stem and the first stride-2 stage use stride 1.
"""

from mobilecls._tf import keras
from mobilecls.models.layers import (
    check_common,
    classifier_head,
    conv_bn,
    depthwise_bn,
    is_cifar_layout,
    layers,
    make_divisible,
    model_input,
)

# (expansion t, output channels c, repeats n, first stride s), the paper's Table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _inverted_residual(x, expansion, filters, stride, name, explicit_padding=False):
    in_channels = x.shape[-1]
    shortcut = x
    if expansion != 1:
        x = conv_bn(x, in_channels * expansion, 1, activation="relu6", name=f"{name}_expand")
    x = depthwise_bn(x, 3, stride, activation="relu6", name=f"{name}_depthwise", explicit_padding=explicit_padding)
    x = conv_bn(x, filters, 1, activation=None, name=f"{name}_project")
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def mobilenet_v2(width=1.0, input_size=224, num_classes=1000, dropout=0.0, explicit_padding=False):
    """Build MobileNetV2.

    Args:
        width: width multiplier (channels rounded to multiples of 8).
        input_size: square input side; < 96 selects the CIFAR layout.
        num_classes: number of output logits.
        dropout: dropout rate before the classifier.
        explicit_padding: stride-2 3x3 convolutions pad 1 pixel on each side (ZeroPadding2D +
            "valid"), which XNNPACK sparse inference and tfmot's PruneForLatencyOnXNNPack need.
    """
    check_common("mobilenet_v2", width, input_size, num_classes, dropout)
    cifar = is_cifar_layout(input_size)
    x = inputs = model_input(input_size)
    x = conv_bn(x, make_divisible(32 * width), 3, stride=1 if cifar else 2, activation="relu6", name="stem",
                explicit_padding=explicit_padding)
    index = 0
    for stage, (expansion, channels, repeats, stride) in enumerate(STAGES):
        if cifar and stage == 1:
            stride = 1
        for repeat in range(repeats):
            x = _inverted_residual(x, expansion, make_divisible(channels * width),
                                   stride if repeat == 0 else 1, name=f"block_{index}",
                                   explicit_padding=explicit_padding)
            index += 1
    # As in the paper, the last conv is not narrowed for width < 1.
    last = make_divisible(1280 * max(width, 1.0))
    x = conv_bn(x, last, 1, activation="relu6", name="last_conv")
    outputs = classifier_head(x, num_classes, dropout)
    return keras.Model(inputs, outputs, name=f"mobilenet_v2_{width:g}")
