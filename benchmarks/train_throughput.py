"""Training throughput side by side in one run (CPU, 32x32, batch 128, random in-memory data).

Prints images/s of:
  - the mobilecls input pipeline alone (uint8 in memory, batched crop + flip, prefetch),
  - training shufflenet_v2 and mobilenet_v2 fed by that pipeline (float32, and mixed_bfloat16),
  - the same training fed by a plain baseline: per-image tf.data map (cast, pad, random crop,
    flip) + model.fit, as in the TensorFlow tutorials,
and the ratios. Each training figure is the median of timed epochs after a warm-up epoch.

With ``--side-by-side``, it instead trains the listed models (float32, mobilecls pipeline) in
interleaved rounds, so that drift of the machine hits all of them, and prints each one's
images/s and its ratio to the first model, median and best round (this VM at times runs whole rounds
at a quota's fixed rate, ~100, ~150 or ~200 images/s whatever the model: then the best rounds compare).
A model is NAME:WIDTH[:KEY=VALUE...], the keys being
build keywords (e.g. shufflenet_v1:1.0:groups=8, shufflenet_v1:1.0:grouped_conv=true),
kernel=split: train the grouped 1x1 convolutions with TensorFlow's split/matmul/concat ops instead
of the compiled op (mobilecls.models.grouped_kernel), the layer's fallback, or batch=N: this model's
batch size instead of --batch-size (each round then trains every model on the same number of images:
--steps batches of --batch-size; e.g. mobilenet_v1:0.75:batch=64,mobilenet_v1:0.75:batch=128). With
``--cpu-time`` as well, the rates are images per CPU-second of this process (on a machine that
other jobs keep busy, wall time mostly measures the wait for a core).

    python benchmarks/train_throughput.py [--steps 30] [--models shufflenet_v2:0.5,mobilenet_v2:1.0]
    python benchmarks/train_throughput.py --side-by-side --steps 10 --rounds 5 \
        --models shufflenet_v2:1.0,shufflenet_v1:1.0:groups=3,shufflenet_v1:1.0:groups=8
    python benchmarks/train_throughput.py --side-by-side --steps 8 --rounds 5 \
        --models mobilenet_v1:0.75:batch=128,mobilenet_v1:0.75:batch=64,mobilenet_v1:0.75:batch=32
"""

import argparse
import contextlib
import statistics
import time

import numpy as np
import yaml

from mobilecls._tf import keras, tf
from mobilecls.data.pipeline import training_batches
from mobilecls.models import build_model, grouped_kernel
from mobilecls.recipes import AugmentSection

BATCH = 128


def data(count=BATCH * 40, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8), rng.integers(0, 10, count)


def baseline_batches(images, labels):
    """The common per-image pipeline: map one image at a time, then batch."""

    def one(image, label):
        image = tf.cast(image, tf.float32)
        image = tf.image.pad_to_bounding_box(image, 4, 4, 40, 40)
        image = tf.image.random_crop(image, [32, 32, 3])
        image = tf.image.random_flip_left_right(image)
        return image, tf.one_hot(label, 10)

    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32))).shuffle(len(images)).repeat()
    return dataset.map(one, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH).prefetch(tf.data.AUTOTUNE)


def pipeline_rate(dataset, steps):
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * BATCH / (time.perf_counter() - start)


def parse_spec(spec):
    """NAME:WIDTH[:KEY=VALUE...] -> (name, build keywords)."""
    name, width, *options = spec.split(":")
    keywords = {"width": float(width)}
    for option in options:
        key, _, value = option.partition("=")
        keywords[key] = yaml.safe_load(value)
    return name, keywords


def products(keywords):
    """Pops ``kernel`` (op or split) from a spec's keywords: the context its training runs in."""
    kernel = keywords.pop("kernel", "op")
    if kernel not in ("op", "split"):
        raise SystemExit(f"kernel must be op or split, got {kernel!r}")
    return grouped_kernel.split_products if kernel == "split" else contextlib.nullcontext


def use_threads(threads):
    """Run TensorFlow's ops on ``threads`` intra- and inter-op threads (0: its default, one per core)."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def compiled_model(name, keywords, dataset, input_size=32):
    """A model ready to train, warmed up (tracing and allocation) on a few steps."""
    model = build_model(name, input_size=input_size, num_classes=10, **keywords)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)
    return model


def timed_rate(model, dataset, steps, batch=BATCH, clock=time.perf_counter):
    start = clock()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (clock() - start)


def training_rate(name, width, dataset, steps, policy, rounds=3):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = compiled_model(name, {"width": width}, dataset)
        return statistics.median(timed_rate(model, dataset, steps) for _ in range(rounds))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def side_by_side(specs, steps, rounds, input_size, batch, cpu_time=False):
    """Median images/s of each model, trained in interleaved rounds, and the ratio to the first.

    With ``cpu_time``, images per second of this process's CPU time (all threads) instead of
    wall time: the work each model costs, for a machine that other jobs keep busy (there, wall
    time mostly measures the wait for a core).
    """
    clock = time.process_time if cpu_time else time.perf_counter
    images, labels = data(count=batch * 8, size=input_size)
    per_round = steps * batch  # images each model trains on in a round, whatever its own batch size
    models, contexts, datasets, batches = {}, {}, {}, {}
    for spec in specs:
        name, keywords = parse_spec(spec)
        contexts[spec] = products(keywords)
        batches[spec] = int(keywords.pop("batch", batch))
        if per_round % batches[spec]:
            raise SystemExit(f"{spec}: batch {batches[spec]} does not divide the {per_round} images of a round")
        datasets[spec] = training_batches(images, labels, batches[spec], AugmentSection(crop_padding=4, flip=True), 10)
        with contexts[spec]():
            models[spec] = compiled_model(name, keywords, datasets[spec], input_size)
    rates = {spec: [] for spec in specs}
    for _ in range(rounds):
        for spec, model in models.items():
            with contexts[spec]():
                rates[spec].append(timed_rate(model, datasets[spec], per_round // batches[spec], batches[spec], clock))
    medians = {spec: statistics.median(values) for spec, values in rates.items()}
    first, first_best = medians[specs[0]], max(rates[specs[0]])
    batch_text = f"batch {batch}" if set(batches.values()) == {batch} else f"batch=N or {batch}"
    header = f"model (float32, {input_size}x{input_size}, {batch_text})"
    unit = "images/CPU-s" if cpu_time else "images/s"
    print(f"{header:<44} {unit:>9} {'ratio':>6} {'best':>6} {'ratio':>6}  (rates of the rounds)")
    for spec in specs:
        rounds_text = " ".join(f"{rate:.0f}" for rate in rates[spec])
        best = max(rates[spec])
        print(f"{spec:<44} {medians[spec]:>9,.0f} {medians[spec] / first:>6.3f} {best:>6,.0f} {best / first_best:>6.3f}"
              f"  ({rounds_text})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--models", default="shufflenet_v2:0.5,shufflenet_v2:1.0,mobilenet_v2:1.0")
    parser.add_argument("--side-by-side", action="store_true",
                        help="Only train the models, in interleaved rounds, with ratios to the first.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--input-size", type=int, default=32, help="--side-by-side only.")
    parser.add_argument("--batch-size", type=int, default=BATCH, help="--side-by-side only.")
    parser.add_argument("--cpu-time", action="store_true",
                        help="--side-by-side only: images per CPU-second of this process, for a busy machine.")
    args = parser.parse_args()
    if args.side_by_side:
        side_by_side(args.models.split(","), args.steps, args.rounds, args.input_size, args.batch_size,
                     args.cpu_time)
        return
    images, labels = data()
    ours = training_batches(images, labels, BATCH, AugmentSection(crop_padding=4, flip=True), 10)
    plain = baseline_batches(images, labels)
    ours_rate, plain_rate = pipeline_rate(ours, args.steps * 3), pipeline_rate(plain, args.steps * 3)
    print(f"pipeline only: mobilecls {ours_rate:,.0f} images/s, per-image baseline {plain_rate:,.0f} images/s, "
          f"ratio {ours_rate / plain_rate:.2f}")
    print(f"\n{'model':<22} {'mobilecls f32':>14} {'baseline f32':>13} {'ratio':>6} {'mobilecls bf16':>15}")
    for spec in args.models.split(","):
        name, width = spec.split(":")
        rate = training_rate(name, float(width), ours, args.steps, "float32", args.rounds)
        base = training_rate(name, float(width), plain, args.steps, "float32", args.rounds)
        bf16 = training_rate(name, float(width), ours, args.steps, "mixed_bfloat16", args.rounds)
        print(f"{name + ' ' + width + 'x':<22} {rate:>14,.0f} {base:>13,.0f} {rate / base:>6.2f} {bf16:>15,.0f}")


if __name__ == "__main__":
    main()
