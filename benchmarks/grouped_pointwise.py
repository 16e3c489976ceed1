"""How GroupedPointwiseConvBN should compute its groups in training, side by side in one run.

Trains a stack of ShuffleNetV1 stride-1 units (GConv1 -> shuffle -> depthwise -> GConv2, add,
ReLU; random data, SGD) whose grouped 1x1 convolutions compute their groups one of these ways:

  - slices: split the input, one matrix product per group, concatenate (what the layer does),
  - einsum: one ``tf.einsum("pgc,gcd->pgd")`` over all groups,
  - sliceconv: split, one 1x1 ``tf.nn.conv2d`` per group, concatenate,
  - dense: a plain 1x1 convolution of g times the MACs, no shuffle (a reference, not the function),
  - groupmajor, blocklist: prototypes of a state kept in g channel blocks across the units
    (block_state.py), as one (g, pixels, C/g) tensor with unfused BatchNorms, or as a list of g
    blocks with fused ones (training only, a measure of the design, not the function's weights),

and prints the median time per step of interleaved rounds with ratios to the first variant.
``--cpu-time`` times this process's CPU seconds instead of wall time (for a busy machine).

    python benchmarks/grouped_pointwise.py [--groups 3] [--size 16] [--batch 64] [--units 2] \
        [--steps 2] [--rounds 3] [--cpu-time]
"""

import argparse
import statistics
import time

from block_state import fused_bn_rows, train_bn

from mobilecls._tf import keras, tf
from mobilecls.models.layers import GroupedPointwiseConvBN, channel_shuffle, conv_bn, depthwise_bn, layers
from mobilecls.models.shufflenet_v1 import STAGE_CHANNELS


class _Einsum(GroupedPointwiseConvBN):
    def _group_products(self, inputs):
        groups, channels = self.groups, inputs.shape[-1]
        kernel = tf.transpose(tf.reshape(self.kernel, (channels // groups, groups, self.filters // groups)),
                              (1, 0, 2))
        result = tf.einsum("pgc,gcd->pgd", tf.reshape(inputs, (-1, groups, channels // groups)), kernel)
        return tf.reshape(result, tf.concat([tf.shape(inputs)[:-1], [self.filters]], 0))


class _SliceConv(GroupedPointwiseConvBN):
    def _group_products(self, inputs):
        outputs = self.filters // self.groups
        return tf.concat([tf.nn.conv2d(part, self.kernel[..., group * outputs:(group + 1) * outputs], 1, "VALID")
                          for group, part in enumerate(tf.split(inputs, self.groups, axis=-1))], -1)


def _batch_norm(x, gamma, beta, axes):
    mean, variance = tf.nn.moments(x, axes, keepdims=True)
    return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-3)


class _GroupMajorUnits(layers.Layer):
    """A prototype of the block-state unit: a stack of stride-1 units whose state is kept group
    major, (g, pixels, C/g), so that each group's products read and write whole blocks; only
    the narrow bottleneck is transposed (which is the shuffle) and back. Training only."""

    def __init__(self, groups, units, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.units = groups, units

    def build(self, input_shape):
        channels, groups = int(input_shape[-1]), self.groups
        wide, narrow = channels // groups, channels // 4 // groups
        self.params = []
        for unit in range(self.units):
            def weight(name, shape, init, unit=unit):
                return self.add_weight(f"u{unit}_{name}", shape, initializer=init)
            self.params.append({
                "k1": weight("k1", (groups, wide, narrow), "glorot_uniform"),
                "g1": weight("g1", (groups, 1, narrow), "ones"), "b1": weight("b1", (groups, 1, narrow), "zeros"),
                "dw": weight("dw", (3, 3, channels // 4, 1), "glorot_uniform"),
                "gd": weight("gd", (channels // 4,), "ones"), "bd": weight("bd", (channels // 4,), "zeros"),
                "k2": weight("k2", (groups, narrow, wide), "glorot_uniform"),
                "g2": weight("g2", (groups, 1, wide), "ones"), "b2": weight("b2", (groups, 1, wide), "zeros")})

    def call(self, inputs):
        groups = self.groups
        batch, height, width, channels = tf.unstack(tf.shape(inputs))
        pixels = batch * height * width
        state = tf.transpose(tf.reshape(inputs, (pixels, groups, -1)), (1, 0, 2))
        for p in self.params:
            y = tf.nn.relu(_batch_norm(tf.matmul(state, p["k1"]), p["g1"], p["b1"], [1]))
            # (g, P, m/g) -> (P, m/g, g): channel k of group j lands at k * g + j, the shuffle
            y = tf.reshape(tf.transpose(y, (1, 2, 0)), (batch, height, width, -1))
            y = tf.nn.depthwise_conv2d(y, p["dw"], (1, 1, 1, 1), "SAME")
            y = train_bn(y, p["gd"], p["bd"])
            y = tf.transpose(tf.reshape(y, (pixels, groups, -1)), (1, 0, 2))
            y = _batch_norm(tf.matmul(y, p["k2"]), p["g2"], p["b2"], [1])
            state = tf.nn.relu(state + y)
        return tf.reshape(tf.transpose(state, (1, 0, 2)), tf.shape(inputs))


class _BlockListUnits(_GroupMajorUnits):
    """The state as a list of g blocks (pixels, C/g): per-block products and fused BatchNorms."""

    def call(self, inputs):
        groups = self.groups
        batch, height, width, channels = tf.unstack(tf.shape(inputs))
        state = tf.split(tf.reshape(inputs, (batch * height * width, -1)), groups, axis=-1)
        for p in self.params:
            y = [tf.nn.relu(fused_bn_rows(tf.matmul(block, p["k1"][j]), p["g1"][j, 0], p["b1"][j, 0]))
                 for j, block in enumerate(state)]
            y = tf.reshape(tf.stack(y, axis=-1), (batch, height, width, -1))  # the shuffle
            y = tf.nn.depthwise_conv2d(y, p["dw"], (1, 1, 1, 1), "SAME")
            y = train_bn(y, p["gd"], p["bd"])
            y = tf.split(tf.reshape(y, (batch * height * width, -1)), groups, axis=-1)
            state = [tf.nn.relu(block + fused_bn_rows(tf.matmul(part, p["k2"][j]), p["g2"][j, 0], p["b2"][j, 0]))
                     for j, (block, part) in enumerate(zip(state, y, strict=True))]
        return tf.reshape(tf.concat(state, -1), tf.shape(inputs))


VARIANTS = {"slices": GroupedPointwiseConvBN, "einsum": _Einsum, "sliceconv": _SliceConv, "dense": None,
            "groupmajor": _GroupMajorUnits, "blocklist": _BlockListUnits}


def build(variant, groups, size, units):
    channels = STAGE_CHANNELS[groups][0]
    x = inputs = keras.Input((size, size, channels))
    layer = VARIANTS[variant]
    if layer in (_GroupMajorUnits, _BlockListUnits):
        x = layer(groups, units, name="units")(x)
        units = 0
    for unit in range(units):
        name = f"unit_{unit}"
        if layer is None:
            y = conv_bn(x, channels // 4, 1, name=f"{name}_gconv1")
        else:
            y = layer(channels // 4, groups, activation="relu", name=f"{name}_gconv1")(x)
            y = channel_shuffle(y, groups, name=f"{name}_shuffle") if groups > 1 else y
        y = depthwise_bn(y, 3, activation=None, name=f"{name}_depthwise")
        y = (conv_bn(y, channels, 1, activation=None, name=f"{name}_gconv2") if layer is None
             else layer(channels, groups, name=f"{name}_gconv2")(y))
        x = layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([x, y]))
    outputs = layers.Dense(10)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.CategoricalCrossentropy(from_logits=True))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=3, choices=sorted(STAGE_CHANNELS))
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--units", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    channels = STAGE_CHANNELS[args.groups][0]
    images = tf.random.uniform((args.batch, args.size, args.size, channels))
    labels = tf.one_hot(tf.random.uniform((args.batch,), 0, 10, tf.int32), 10)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    models = {}
    for variant in args.variants.split(","):
        models[variant] = build(variant, args.groups, args.size, args.units)
        models[variant].fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # tracing, allocation
    times = {variant: [] for variant in models}
    for _ in range(args.rounds):
        for variant, model in models.items():
            start = clock()
            model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
            times[variant].append((clock() - start) / args.steps * 1e3)
    first = statistics.median(next(iter(times.values())))
    unit = "CPU ms" if args.cpu_time else "ms"
    print(f"g={args.groups}, {args.units} units at {args.size}x{args.size}x{channels}, batch {args.batch}: "
          f"{unit} per training step")
    for variant, values in times.items():
        median = statistics.median(values)
        print(f"{variant:<10} {median:8.1f} {median / first:6.2f}  ({' '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
