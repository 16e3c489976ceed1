"""ShuffleNetV1 (Zhang et al., 2018): pointwise group convolutions and channel shuffle.

CIFAR layout (input < 96): stride-1 stem and no max-pool, so 32x32 ends at 4x4.
As in the paper, the first pointwise convolution of stage 2 is not grouped (its input has only
24 channels), and no shuffle follows an ungrouped convolution.

How the unit is laid out (and why). TensorFlow's CPU kernel for ``Conv2D(groups>1)`` is slow:
built with it, ShuffleNetV1 g=3 trains at 39 images/s here, this layout at 124 (ShuffleNetV2
1.0x: 247, side by side in one run of ``benchmarks/train_throughput.py --side-by-side``, see
docs/benchmarks.md). So, as in mobilecls' ShuffleNetV2, a stage's state is
kept as g separate blocks, block a holding the channels [a*C/g, (a+1)*C/g) that group a of the
next grouped convolution reads, and no grouped convolution, split or transpose is built:

- GConv2 and the residual addition run block by block: group k is a plain 1x1 convolution of
  C/g filters whose output is added to block k.
- GConv1 group a is cut by output channels into g convolutions (each with its BatchNorm and
  ReLU), one per "bundle" (a, k): the
  channels that eq. (7)'s shuffle sends from group a to group k of GConv2 (input channel
  a*n + b lands at b*g + a, which falls in group k for one contiguous range of b). GConv2's
  group k reads the bundles (a, k) of every a, concatenated. Within that group the channels
  are in another order than after eq. (7), which only permutes the group's BatchNorm,
  depthwise and GConv2 input weights: the same function (tested against the textbook graph
  with permuted weights), the same weights and MACs. ``shuffle=False`` concatenates the
  bundles (k, j) instead: group k reads group k, the same ops and weights, no mixing.
- A stride-2 unit's output, [pooled input, branch], is cut into the next stage's blocks. The
  branch's GConv2 is cut by output channels where a block boundary falls inside a group (only
  after the stem: later stages double their channels, so their boundaries fall between groups).

``grouped_conv=True`` builds the textbook graph instead: ``Conv2D(groups=g)`` and a
Reshape -> Permute -> Reshape shuffle (``layers.channel_shuffle``). It is the reference the
block layout is tested against, and slow to train on a CPU.
"""

import math

from mobilecls._tf import keras
from mobilecls.models.layers import (
    AveragePooling3x3,
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


def bundle_sizes(per_group, groups):
    """``sizes[a][k]``: how many of group a's ``per_group`` channels eq. (7) sends to group k.

    Input channel a*n + b (n = per_group) lands at b*g + a, in group (b*g + a) // n; for each
    a that group grows with b, so bundle (a, k) is one contiguous range of group a's channels.
    """
    sizes = [[0] * groups for _ in range(groups)]
    for a in range(groups):
        for b in range(per_group):
            sizes[a][(b * groups + a) // per_group] += 1
    return sizes


def cut_points(start, size, block):
    """Sizes of the parts of the channel range [start, start + size) cut at multiples of ``block``."""
    parts, position, end = [], start, start + size
    while position < end:
        boundary = min(end, (position // block + 1) * block)
        parts.append(boundary - position)
        position = boundary
    return parts


def _concat(tensors, name):
    return tensors[0] if len(tensors) == 1 else layers.Concatenate(name=name)(tensors)


def _gconv1(blocks, bottleneck, groups, grouped, shuffle, name):
    """GConv1 -> BatchNorm -> ReLU, then the shuffle: the g inputs of GConv2's groups.

    Each bundle is its own convolution -> BatchNorm -> ReLU: tfmot folds a BatchNorm only into
    the convolution right before it (a BatchNorm after a concatenation is refused by QAT), and
    in the .tflite file BatchNorm and ReLU fuse into each convolution.
    """
    per_group = bottleneck // groups
    if not grouped:  # an ungrouped GConv1 (stage 2, unit 1) is followed by no shuffle
        x = _concat(blocks, f"{name}_gconv1_input")
        return [conv_bn(x, per_group, 1, name=f"{name}_gconv1_{k}") for k in range(groups)]
    sizes = bundle_sizes(per_group, groups)
    bundles = [[conv_bn(block, sizes[a][k], 1, name=f"{name}_gconv1_{a}_{k}") if sizes[a][k] else None
                for k in range(groups)] for a, block in enumerate(blocks)]
    inputs = []
    for k in range(groups):
        parts = [bundles[a][k] for a in range(groups)] if shuffle else bundles[k]
        inputs.append(_concat([part for part in parts if part is not None], f"{name}_gconv1_{k}_concat"))
    return inputs


def _blocks(pieces, block, name):
    """Concatenate consecutive pieces into blocks of ``block`` channels."""
    blocks, current, filled = [], [], 0
    for piece in pieces:
        current.append(piece)
        filled += piece.shape[-1]
        if filled > block:
            raise ValueError(f"{name}: a piece of {piece.shape[-1]} channels straddles a block of {block}")
        if filled == block:
            blocks.append(_concat(current, f"{name}_block_{len(blocks)}"))
            current, filled = [], 0
    return blocks


def _block_unit(blocks, out_channels, groups, stride, grouped, shuffle, name):
    """A unit on blocks (see the module docstring); returns the output blocks."""
    in_channels = sum(block.shape[-1] for block in blocks)
    branch_groups = _gconv1(blocks, out_channels // 4, groups, grouped, shuffle, name)
    branch_groups = [depthwise_bn(x, 3, stride, activation=None, name=f"{name}_depthwise_{k}")
                     for k, x in enumerate(branch_groups)]
    block = out_channels // groups
    if stride == 1:
        outputs = []
        for k, (x, y) in enumerate(zip(blocks, branch_groups, strict=True)):
            y = conv_bn(y, block, 1, activation=None, name=f"{name}_gconv2_{k}")
            outputs.append(layers.ReLU(name=f"{name}_relu_{k}")(layers.Add(name=f"{name}_add_{k}")([x, y])))
        return outputs
    # The paper applies ReLU after the concatenation; the pooled shortcut of a ReLU output is
    # already >= 0, so applying it to the branch alone is the same function, and it fuses into
    # the convolution instead of being a separate int8 RELU that XNNPACK does not delegate.
    pieces = [AveragePooling3x3(strides=2, name=f"{name}_shortcut_pool_{j}")(x) for j, x in enumerate(blocks)]
    position = in_channels
    branch_filters = (out_channels - in_channels) // groups
    for k, y in enumerate(branch_groups):
        parts = cut_points(position, branch_filters, block)
        position += branch_filters
        for part, filters in enumerate(parts):
            suffix = f"_{part}" if len(parts) > 1 else ""
            pieces.append(conv_bn(y, filters, 1, activation="relu", name=f"{name}_gconv2_{k}{suffix}"))
    return _blocks(pieces, block, f"{name}_output")


def _grouped_unit(x, out_channels, groups, stride, grouped, shuffle, name):
    """The textbook unit: Conv2D(groups=g) and a Reshape -> Permute -> Reshape shuffle."""
    in_channels = x.shape[-1]
    branch_channels = out_channels - in_channels if stride == 2 else out_channels
    conv1_groups = groups if grouped else 1
    y = conv_bn(x, out_channels // 4, 1, groups=conv1_groups, name=f"{name}_gconv1")
    if shuffle and conv1_groups > 1:
        y = channel_shuffle(y, groups, name=f"{name}_shuffle")
    y = depthwise_bn(y, 3, stride, activation=None, name=f"{name}_depthwise")
    if stride == 1:
        y = conv_bn(y, branch_channels, 1, groups=groups, activation=None, name=f"{name}_gconv2")
        return layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([x, y]))
    y = conv_bn(y, branch_channels, 1, groups=groups, activation="relu", name=f"{name}_gconv2")
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
                  grouped_conv=False):
    """Build ShuffleNetV1.

    Args:
        width: width multiplier (see ``stage_channels`` and ``stem_channels``).
        input_size: square input side; < 96 selects the CIFAR layout.
        num_classes: number of output logits.
        dropout: dropout rate before the classifier.
        groups: groups of the pointwise convolutions, one of 1, 2, 3, 4, 8.
        shuffle: False removes the channel shuffle, everything else identical (the ablation).
        grouped_conv: True builds the textbook graph (``Conv2D(groups=g)``, Reshape -> Permute
            -> Reshape shuffle): the same function, slow to train on a CPU.
    """
    check_common("shufflenet_v1", width, input_size, num_classes, dropout)
    if groups not in STAGE_CHANNELS:
        raise ValueError(f"shufflenet_v1: groups must be one of 1, 2, 3, 4, 8, got {groups!r}")
    cifar = is_cifar_layout(input_size)
    x = inputs = model_input(input_size)
    x = conv_bn(x, stem_channels(width, groups), 3, stride=1 if cifar else 2, name="stem")
    if not cifar:
        x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    state = x if grouped_conv else [x]
    unit = _grouped_unit if grouped_conv else _block_unit
    for stage, (out_channels, repeats) in enumerate(zip(stage_channels(width, groups), REPEATS, strict=True),
                                                    start=2):
        for index in range(repeats):
            state = unit(state, out_channels, groups, 2 if index == 0 else 1,
                         grouped=not (stage == 2 and index == 0), shuffle=shuffle,
                         name=f"stage_{stage}_unit_{index + 1}")
    x = state if grouped_conv else _concat(state, "stage_4_output")
    outputs = classifier_head(x, num_classes, dropout)
    suffix = "" if shuffle else "_noshuffle"
    return keras.Model(inputs, outputs, name=f"shufflenet_v1_g{groups}_{width:g}{suffix}")
