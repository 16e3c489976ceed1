"""The grouped 1x1 op against TensorFlow's split + MatMul + concat, op by op, on a model's shapes.

For every grouped 1x1 convolution shape of ShuffleNetV1 (``--groups``, width 1.0, ``--input-size``,
``--batch``), times the forward product, the input gradient and the kernel gradient both ways
(mobilecls' compiled op, and the split / MatMul / concat ops the layer falls back to), interleaved,
in CPU milliseconds of one thread (``--threads 1``: the arithmetic each way costs, robust to other
load on the machine), and prints each shape's times and the total of a training step (each shape
weighted by how many layers have it) with the ratio.

    python benchmarks/grouped_kernel_ops.py [--groups 8] [--input-size 32] [--batch 128] [--runs 5]
"""

import argparse
import collections
import time

import numpy as np

from mobilecls._tf import tf
from mobilecls.models import build_model, grouped_kernel
from mobilecls.models.layers import GroupedPointwiseConvBN


def layer_shapes(groups, input_size, batch):
    """(pixels, Cin, Cout) -> how many of the model's grouped layers have it."""
    model = build_model("shufflenet_v1", width=1.0, groups=groups, input_size=input_size, num_classes=10)
    counts = collections.Counter()
    for layer in model.layers:
        if isinstance(layer, GroupedPointwiseConvBN):
            height, width, channels = layer.input_shape[1:]
            counts[(batch * height * width, channels, layer.filters)] += 1
    return counts


def split_ops(x, kernel, dy, groups):
    """The three products as the layer's fallback computes them (TensorFlow's gradients of it)."""
    outputs = kernel.shape[1] // groups

    def block(g):
        return kernel[:, g * outputs:(g + 1) * outputs]

    forward = tf.function(lambda: grouped_kernel.split_matmul(x, kernel, groups))
    grad_input = tf.function(lambda: tf.concat([tf.matmul(part, block(g), transpose_b=True)
                                                for g, part in enumerate(tf.split(dy, groups, -1))], -1))
    grad_kernel = tf.function(lambda: tf.concat([tf.matmul(a, b, transpose_a=True) for a, b in
                                                 zip(tf.split(x, groups, -1), tf.split(dy, groups, -1), strict=True)],
                                                -1))
    return forward, grad_input, grad_kernel


def op_ops(x, kernel, dy, groups):
    library = grouped_kernel.library()
    return (tf.function(lambda: library.mobilecls_grouped_matmul(x, kernel, groups=groups)),
            tf.function(lambda: library.mobilecls_grouped_matmul_grad_input(dy, kernel, groups=groups)),
            tf.function(lambda: library.mobilecls_grouped_matmul_grad_kernel(x, dy, groups=groups)))


def cpu_ms(function, runs):
    function()
    times = []
    for _ in range(runs):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return float(np.median(times)) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if grouped_kernel.library() is None:
        raise SystemExit("the op library is not available (see the warning above)")
    rng = np.random.default_rng(0)
    totals = collections.Counter()
    print(f"ShuffleNetV1 g={args.groups}, {args.input_size}x{args.input_size}, batch {args.batch}: CPU ms "
          f"({args.threads} thread(s)), op / split for the forward product, input gradient, kernel gradient")
    for (pixels, cin, cout), count in sorted(layer_shapes(args.groups, args.input_size, args.batch).items()):
        x = tf.constant(rng.standard_normal((pixels, cin)), tf.float32)
        kernel = tf.constant(rng.standard_normal((cin // args.groups, cout)), tf.float32)
        dy = tf.constant(rng.standard_normal((pixels, cout)), tf.float32)
        ours, split = op_ops(x, kernel, dy, args.groups), split_ops(x, kernel, dy, args.groups)
        cells = []
        for mine, theirs in zip(ours, split, strict=True):
            a, b = cpu_ms(mine, args.runs), cpu_ms(theirs, args.runs)
            totals["op"] += count * a
            totals["split"] += count * b
            cells.append(f"{a:6.1f} /{b:6.1f}")
        print(f"  {pixels:>6} px {cin:>5} -> {cout:<5} x{count}:  " + "   ".join(cells))
    print(f"per training step: op {totals['op']:.0f} ms, split {totals['split']:.0f} ms, "
          f"ratio {totals['op'] / totals['split']:.2f}")


if __name__ == "__main__":
    main()
