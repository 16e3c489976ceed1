"""Would keeping ShuffleNetV1's state as g channel blocks between units train faster? A prototype.

Builds ShuffleNetV1 (CIFAR layout, width 1.0) whose stages are each one prototype layer that keeps
the stage's state as a list of g blocks of (pixels, C/g) between units: each group's products read
and write whole blocks, BatchNorm, the residual add and the ReLU work per block, and only the narrow
bottleneck is joined (stacking the g products along a last axis is the shuffle; GConv1's BatchNorm
and ReLU then run once on the joined tensor, with their channels permuted) and split again for
GConv2. Stride-2 units join and split the wide tensor once. Training only: no moving statistics,
no QAT, no export; it measures what the design could gain before anyone builds it.

Trains, in interleaved rounds, ShuffleNetV2 1.0x, and for each group count the current
ShuffleNetV1 (models/shufflenet_v1.py) and the prototype, and prints images per CPU-second of this
process (a fit can run beside it) with ratios to ShuffleNetV2 1.0x.

    python benchmarks/block_state.py [--groups 3,8] [--steps 3] [--rounds 3] [--xla]

With ``--xla`` every model is also trained compiled by XLA (``compile(jit_compile=True)``), which
could fuse the BatchNorms, adds and ReLUs that the wide tensors pass through.
"""

import argparse
import statistics
import time

from train_throughput import BATCH, timed_rate

from mobilecls._tf import keras, tf
from mobilecls.models import build_model
from mobilecls.models.layers import classifier_head, conv_bn, layers, model_input
from mobilecls.models.shufflenet_v1 import REPEATS, stage_channels, stem_channels


def fused_bn_rows(x, gamma, beta):
    """Training-mode BatchNorm of a (rows, channels) matrix with TensorFlow's fused kernel."""
    shape = tf.shape(x)
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(tf.reshape(x, (1, -1, 1, x.shape[-1])), gamma, beta, epsilon=1e-3,
                                               is_training=True)
    return tf.reshape(y, shape)


def train_bn(x, gamma, beta):
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=1e-3, is_training=True)
    return y


class BlockStateStage(layers.Layer):
    """One ShuffleNetV1 stage (a stride-2 unit, then stride-1 units) on a list of g blocks."""

    def __init__(self, out_channels, repeats, groups, first_grouped, **kwargs):
        super().__init__(**kwargs)
        self.out_channels, self.repeats, self.groups, self.first_grouped = out_channels, repeats, groups, first_grouped

    def build(self, input_shape):
        groups, in_channels, out = self.groups, int(input_shape[-1]), self.out_channels
        narrow = out // 4
        self.units = []
        for unit in range(self.repeats):
            conv1_groups = groups if unit or self.first_grouped else 1
            branch = out - in_channels if unit == 0 else out

            def weight(name, shape, initializer, unit=unit):
                return self.add_weight(f"unit_{unit}_{name}", shape, initializer=initializer)

            self.units.append({
                "conv1_groups": conv1_groups,
                "kernel1": weight("kernel1", (conv1_groups, (in_channels if unit == 0 else out) // conv1_groups,
                                              narrow // conv1_groups), "glorot_uniform"),
                "gamma1": weight("gamma1", (narrow,), "ones"), "beta1": weight("beta1", (narrow,), "zeros"),
                "depthwise": weight("depthwise", (3, 3, narrow, 1), "glorot_uniform"),
                "gamma_dw": weight("gamma_dw", (narrow,), "ones"), "beta_dw": weight("beta_dw", (narrow,), "zeros"),
                "kernel2": weight("kernel2", (groups, narrow // groups, branch // groups), "glorot_uniform"),
                "gamma2": weight("gamma2", (groups, branch // groups), "ones"),
                "beta2": weight("beta2", (groups, branch // groups), "zeros")})

    def call(self, x):
        groups = self.groups
        batch, height, width = tf.shape(x)[0], x.shape[1], x.shape[2]
        state = None
        for index, unit in enumerate(self.units):
            stride = 2 if index == 0 else 1
            if state is None:
                blocks = tf.split(tf.reshape(x, (-1, x.shape[-1])), unit["conv1_groups"], -1)
            else:
                blocks = state
            products = [tf.matmul(block, unit["kernel1"][group]) for group, block in enumerate(blocks)]
            y = tf.stack(products, -1) if len(products) > 1 else products[0]  # (pixels, m/g, g): shuffled
            y = tf.reshape(y, (batch, height, width, -1))
            y = tf.nn.relu(train_bn(y, unit["gamma1"], unit["beta1"]))
            y = tf.nn.depthwise_conv2d(y, unit["depthwise"], (1, stride, stride, 1), "SAME")
            y = train_bn(y, unit["gamma_dw"], unit["beta_dw"])
            parts = tf.split(tf.reshape(y, (-1, y.shape[-1])), groups, -1)
            branch = [fused_bn_rows(tf.matmul(part, unit["kernel2"][group]), unit["gamma2"][group],
                                    unit["beta2"][group]) for group, part in enumerate(parts)]
            if index == 0:
                pooled = tf.nn.avg_pool2d(x, 3, 2, "SAME")
                height, width = pooled.shape[1], pooled.shape[2]
                wide = tf.concat([tf.reshape(pooled, (-1, pooled.shape[-1]))] + [tf.nn.relu(b) for b in branch], -1)
                state = tf.split(wide, groups, -1)
            else:
                state = [tf.nn.relu(block + b) for block, b in zip(state, branch, strict=True)]
        return tf.reshape(tf.concat(state, -1), (batch, height, width, self.out_channels))


def block_state_model(groups, num_classes=10):
    x = inputs = model_input(32)
    x = conv_bn(x, stem_channels(1.0, groups), 3, stride=1, name="stem")
    for stage, (out_channels, repeats) in enumerate(zip(stage_channels(1.0, groups), REPEATS, strict=True), start=2):
        x = BlockStateStage(out_channels, repeats, groups, first_grouped=stage != 2, name=f"stage_{stage}")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, 0.0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="3,8")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--xla", action="store_true", help="also each model compiled by XLA")
    args = parser.parse_args()
    makers = {"shufflenet_v2 1.0x": lambda: build_model("shufflenet_v2", width=1.0, input_size=32, num_classes=10)}
    for groups in map(int, args.groups.split(",")):
        makers[f"shufflenet_v1 g={groups}"] = lambda groups=groups: build_model(
            "shufflenet_v1", groups=groups, input_size=32, num_classes=10)
        makers[f"block-state prototype g={groups}"] = lambda groups=groups: block_state_model(groups)
    variants = {f"{name}, XLA" if xla else name: (make, xla)
                for name, make in makers.items() for xla in ((False, True) if args.xla else (False,))}
    images = tf.random.uniform((BATCH, 32, 32, 3), 0, 255)
    labels = tf.one_hot(tf.random.uniform((BATCH,), 0, 10, tf.int32), 10)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    models = {}
    for name, (make, xla) in variants.items():
        models[name] = make()
        models[name].compile(keras.optimizers.SGD(0.05, momentum=0.9),
                             keras.losses.CategoricalCrossentropy(from_logits=True), jit_compile=xla)
        models[name].fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # tracing, allocation (XLA: compiling)
    rates = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            rates[name].append(timed_rate(model, dataset, args.steps, BATCH, time.process_time))
    first = statistics.median(rates["shufflenet_v2 1.0x"])
    print(f"{'model (32x32, batch 128, float32)':<32} {'images/CPU-s':>12} {'ratio':>6}  (rounds)")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:<32} {median:>12.1f} {median / first:>6.3f}  ({' '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
