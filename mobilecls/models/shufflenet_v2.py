"""ShuffleNetV2 (Ma et al., 2018): channel split and channel shuffle.

CIFAR layout (input < 96): stride-1 stem and no max-pool, so 32x32 ends at 4x4.

How the unit is laid out (and why). The paper concatenates the two branches, shuffles with
g=2 (eq. 7) and splits the result in halves for the next unit. On a phone each of those three
steps is a full copy of the feature map, and the shuffle's transpose alone cost a third of the
inference here. The authors' own code fuses shuffle and split; mobilecls goes one step further
and never materialises the concatenation inside a stage: a stage's state is four C/4-channel
blocks, identity (i1, i2) and new (n1, n2), and each unit's last 1x1 convolution is two
convolutions of C/4 filters (the same weights and MACs as one of C/2, which BatchNorm and ReLU
treat per channel anyway). Applying eq. (7) with g=2 to the blocks [i1, i2, n1, n2] gives
[i1, n1, i2, n2]; its halves are the next unit's main input (i1, n1), one concatenation of
two blocks, and its identity (i2, n2), which is never copied. So every unit still mixes both
branches' channels. With ``shuffle=False`` the main input is (n1, n2) and the identity stays
(i1, i2) through the stage: the same ops and weights, no mixing (the study's ablation).
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

# Output channels of stages 2-4 and of conv5, the paper's Table 5.
STAGE_CHANNELS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
                  1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048)}
REPEATS = (4, 8, 4)


def _halves(x, channels, name):
    """1x1 conv to ``channels`` as two C/2 blocks (two convolutions: no split op needed)."""
    return [conv_bn(x, channels // 2, 1, name=f"{name}_{part}") for part in ("a", "b")]


def _downsample_unit(x, out_channels, name):
    half = out_channels // 2
    proj = depthwise_bn(x, 3, 2, activation=None, name=f"{name}_proj_depthwise")
    identity = _halves(proj, half, f"{name}_proj_conv")
    main = conv_bn(x, half, 1, name=f"{name}_main_conv1")
    main = depthwise_bn(main, 3, 2, activation=None, name=f"{name}_main_depthwise")
    return identity, _halves(main, half, f"{name}_main_conv2")


def _unit(identity, new, shuffle, name):
    if shuffle:  # eq. (7), g=2, on the blocks [i1, i2, n1, n2] -> main (i1, n1), identity (i2, n2)
        main_blocks, identity = [identity[0], new[0]], [identity[1], new[1]]
    else:
        main_blocks = new
    half = sum(block.shape[-1] for block in main_blocks)
    main = layers.Concatenate(name=f"{name}_main_input")(main_blocks)
    main = conv_bn(main, half, 1, name=f"{name}_main_conv1")
    main = depthwise_bn(main, 3, 1, activation=None, name=f"{name}_main_depthwise")
    return identity, _halves(main, half, f"{name}_main_conv2")


def stage_channels(width):
    """Stage 2-4 and conv5 channels: the paper's table for 0.5/1/1.5/2x, else scaled 1x."""
    base = STAGE_CHANNELS.get(width)
    if base is None:
        base = tuple(c * width for c in STAGE_CHANNELS[1.0][:3]) + (1024 if width <= 1.5 else 2048,)
    # Channels are multiples of 8 (each unit's state is four blocks of C/4 channels).
    return tuple(make_divisible(c) for c in base)


def shufflenet_v2(width=1.0, input_size=224, num_classes=1000, dropout=0.0, shuffle=True):
    """Build ShuffleNetV2.

    Args:
        width: width multiplier; 0.5, 1.0, 1.5 and 2.0 use the paper's channel table.
        input_size: square input side; < 96 selects the CIFAR layout.
        num_classes: number of output logits.
        dropout: dropout rate before the classifier.
        shuffle: False removes the mixing of the two branches (the study's ablation).
    """
    check_common("shufflenet_v2", width, input_size, num_classes, dropout)
    cifar = is_cifar_layout(input_size)
    *channels, last = stage_channels(width)
    x = inputs = model_input(input_size)
    x = conv_bn(x, 24, 3, stride=1 if cifar else 2, name="stem")
    if not cifar:
        x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, (out_channels, repeats) in enumerate(zip(channels, REPEATS, strict=True), start=2):
        name = f"stage_{stage}"
        identity, new = _downsample_unit(x, out_channels, f"{name}_unit_1")
        for unit in range(2, repeats + 1):
            identity, new = _unit(identity, new, shuffle, f"{name}_unit_{unit}")
        x = layers.Concatenate(name=f"{name}_output")(identity + new)
    x = conv_bn(x, last, 1, name="conv5")
    outputs = classifier_head(x, num_classes, dropout)
    suffix = "" if shuffle else "_noshuffle"
    return keras.Model(inputs, outputs, name=f"shufflenet_v2_{width:g}{suffix}")
