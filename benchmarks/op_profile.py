"""Where a training step's CPU time goes: TensorFlow's profiler, summed by op type and by layer kind.

Trains each listed model for a few warm steps (forward + backward + SGD update, float32, random
in-memory data, batch 128), records ``--steps`` more with ``tf.profiler``, and prints:
  - the wall time per step and the process's CPU time per step (their ratio: how many cores were busy),
  - the op time per step (summed over the executor threads, so it can exceed the wall time),
  - the op types and the layer kinds (a unit's layer name without its stage_S_unit_U_ prefix;
    "grad" marks the backward pass) with the largest share of the op time.

    python benchmarks/op_profile.py shufflenet_v2:1.0 shufflenet_v1:1.0:groups=8 [--steps 5] [--top 12]

A model is NAME:WIDTH[:KEY=VALUE...] as in train_throughput.py (kernel=split too). Run it on an idle machine: the
shares are robust to load, the wall times are not. ``--threads 1`` runs everything on one thread: each op's
time is then its work alone, and the wall times of the two runs show what the second core buys.
"""

import argparse
import collections
import glob
import os
import re
import tempfile
import time

import numpy as np
from train_throughput import parse_spec, products, use_threads

from mobilecls._tf import keras, tf
from mobilecls.models import build_model

UNIT_PREFIX = re.compile(r"stage_\d+_unit_\d+_")


def training_step(model, batch, size):
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    labels = tf.one_hot(np.arange(batch) % 10, 10)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss(labels, model(images, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return value

    return step


def op_events(logdir):
    """(op name, op type, milliseconds) of every op the executor threads ran."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {key: value.name for key, value in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                full = names.get(event.metadata_id, "")
                if ":" in full and "::" not in full:  # "name:Type"; "Class::method" are the executor's own
                    name, op_type = full.rsplit(":", 1)
                    yield name, op_type, event.duration_ps / 1e9


def profile(spec, steps, batch, size):
    name, keywords = parse_spec(spec)
    with products(keywords)():  # the graph is traced on the first step
        step = training_step(build_model(name, input_size=size, num_classes=10, **keywords), batch, size)
        for _ in range(3):
            step().numpy()
    logdir = tempfile.mkdtemp(prefix="op_profile_")
    tf.profiler.experimental.start(logdir)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step().numpy()
    wall = (time.perf_counter() - started) / steps * 1000
    cpu = (time.process_time() - cpu_started) / steps * 1000
    tf.profiler.experimental.stop()
    by_type, by_kind = collections.Counter(), collections.Counter()
    for op_name, op_type, ms in op_events(logdir):
        by_type[op_type] += ms / steps
        layer = next((part for part in op_name.split("/") if UNIT_PREFIX.match(part)), None)
        kind = UNIT_PREFIX.sub("", layer) if layer else "(not in a unit)"
        by_kind[("grad " if op_name.startswith("gradient_tape") else "") + kind] += ms / steps
    return wall, cpu, by_type, by_kind


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="NAME:WIDTH[:KEY=VALUE...]")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0,
                        help="intra- and inter-op threads (0: TensorFlow's default, one per core)")
    args = parser.parse_args()
    use_threads(args.threads)
    for spec in args.models:
        wall, cpu, by_type, by_kind = profile(spec, args.steps, args.batch, args.input_size)
        total = sum(by_type.values())
        print(f"\n{spec}: {wall:.0f} ms per step (wall), {cpu:.0f} ms of process CPU time "
              f"({cpu / wall:.2f} cores busy), {total:.0f} ms of op time ({args.batch * 1000 / wall:.0f} images/s)")
        for title, counter in (("op type", by_type), ("layer kind", by_kind)):
            print(f"  {title:<44} {'ms':>8} {'share':>7}")
            for key, ms in counter.most_common(args.top):
                print(f"  {key:<44} {ms:8.1f} {ms / total:7.1%}")


if __name__ == "__main__":
    main()
