"""How GroupedPointwiseConvBN should compute its groups in training, side by side in one run.

Trains a stack of ShuffleNetV1 stride-1 units (GConv1 -> shuffle -> depthwise -> GConv2, add,
ReLU; random data, SGD) whose grouped 1x1 convolutions compute their groups one of these ways:

  - slices: split the input, one matrix product per group, concatenate (what the layer does),
  - einsum: one ``tf.einsum("pgc,gcd->pgd")`` over all groups,
  - sliceconv: split, one 1x1 ``tf.nn.conv2d`` per group, concatenate,
  - dense: a plain 1x1 convolution of g times the MACs, no shuffle (a reference, not the function),

and prints the median time per step of interleaved rounds with ratios to the first variant.
``--cpu-time`` times this process's CPU seconds instead of wall time (for a busy machine).

    python benchmarks/grouped_pointwise.py [--groups 3] [--size 16] [--batch 64] [--units 2] \
        [--steps 2] [--rounds 3] [--cpu-time]
"""

import argparse
import statistics
import time

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


VARIANTS = {"slices": GroupedPointwiseConvBN, "einsum": _Einsum, "sliceconv": _SliceConv, "dense": None}


def build(variant, groups, size, units):
    channels = STAGE_CHANNELS[groups][0]
    x = inputs = keras.Input((size, size, channels))
    layer = VARIANTS[variant]
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
