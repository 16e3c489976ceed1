"""MobileNetV1 (Howard et al., 2017): depthwise separable convolutions.

CIFAR layout (input < 96): the stem and the first stride-2 block use stride 1, so a 32x32
image ends at 4x4 instead of 1x1 (output stride 8). ``cifar_output_stride=16`` keeps block 2's
stride, the layout of most CIFAR MobileNets (2x2 at the end, a quarter of the MACs).
"""

from mobilecls._tf import keras
from mobilecls.models.layers import (
    check_common,
    classifier_head,
    conv_bn,
    depthwise_bn,
    is_cifar_layout,
    make_divisible,
    model_input,
)

# (output channels, stride) of the 13 depthwise separable blocks.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def mobilenet_v1(width=1.0, input_size=224, num_classes=1000, dropout=0.0, separable=True, explicit_padding=False,
                 cifar_output_stride=8):
    """Build MobileNetV1.

    Args:
        width: width multiplier (channels rounded to multiples of 8).
        input_size: square input side; < 96 selects the CIFAR layout.
        num_classes: number of output logits.
        dropout: dropout rate before the classifier.
        separable: False replaces each depthwise separable pair by one standard 3x3
            convolution with the same output channels and stride (the study's ablation).
        explicit_padding: stride-2 3x3 convolutions pad 1 pixel on each side (ZeroPadding2D +
            "valid"), which XNNPACK sparse inference and tfmot's PruneForLatencyOnXNNPack need.
        cifar_output_stride: 8 (block 2 at stride 1) or 16 (block 2 at stride 2); 16 needs the
            CIFAR layout (the ImageNet layout's output stride is 32).
    """
    check_common("mobilenet_v1", width, input_size, num_classes, dropout)
    if cifar_output_stride not in (8, 16):
        raise ValueError(f"mobilenet_v1: cifar_output_stride must be 8 or 16, got {cifar_output_stride!r}")
    cifar = is_cifar_layout(input_size)
    if cifar_output_stride == 16 and not cifar:
        raise ValueError(f"mobilenet_v1: cifar_output_stride=16 needs the CIFAR layout: input_size < 96, "
                         f"got input_size {input_size}")
    x = inputs = model_input(input_size)
    x = conv_bn(x, make_divisible(32 * width), 3, stride=1 if cifar else 2, activation="relu6", name="stem",
                explicit_padding=explicit_padding)
    for index, (channels, stride) in enumerate(BLOCKS, start=1):
        if cifar and index == 2 and cifar_output_stride == 8:
            stride = 1
        filters = make_divisible(channels * width)
        name = f"block_{index}"
        if separable:
            x = depthwise_bn(x, 3, stride, activation="relu6", name=f"{name}_depthwise",
                             explicit_padding=explicit_padding)
            x = conv_bn(x, filters, 1, activation="relu6", name=f"{name}_pointwise")
        else:
            x = conv_bn(x, filters, 3, stride, activation="relu6", name=f"{name}_conv",
                        explicit_padding=explicit_padding)
    outputs = classifier_head(x, num_classes, dropout)
    suffix = "" if separable else "_standard_conv"
    return keras.Model(inputs, outputs, name=f"mobilenet_v1_{width:g}{suffix}")
