"""Training throughput side by side in one run (CPU, 32x32, batch 128, random in-memory data).

Prints images/s of:
  - the mobilecls input pipeline alone (uint8 in memory, batched crop + flip, prefetch),
  - training shufflenet_v2 and mobilenet_v2 fed by that pipeline (float32, and mixed_bfloat16),
  - the same training fed by a plain baseline: per-image tf.data map (cast, pad, random crop,
    flip) + model.fit, as in the TensorFlow tutorials,
and the ratios. Each training figure is the median of timed epochs after a warm-up epoch.

    python benchmarks/train_throughput.py [--steps 30] [--models shufflenet_v2:0.5,mobilenet_v2:1.0]
"""

import argparse
import statistics
import time

import numpy as np

from mobilecls._tf import keras, tf
from mobilecls.data.pipeline import training_batches
from mobilecls.models import build_model
from mobilecls.recipes import AugmentSection

BATCH = 128


def data(count=BATCH * 40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, count)


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


def training_rate(name, width, dataset, steps, policy, rounds=3):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(name, width=width, input_size=32, num_classes=10)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                      keras.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)  # warm-up: tracing, allocation
        rates = []
        for _ in range(rounds):
            start = time.perf_counter()
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            rates.append(steps * BATCH / (time.perf_counter() - start))
        return statistics.median(rates)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--models", default="shufflenet_v2:0.5,shufflenet_v2:1.0,mobilenet_v2:1.0")
    args = parser.parse_args()
    images, labels = data()
    ours = training_batches(images, labels, BATCH, AugmentSection(crop_padding=4, flip=True), 10)
    plain = baseline_batches(images, labels)
    ours_rate, plain_rate = pipeline_rate(ours, args.steps * 3), pipeline_rate(plain, args.steps * 3)
    print(f"pipeline only: mobilecls {ours_rate:,.0f} images/s, per-image baseline {plain_rate:,.0f} images/s, "
          f"ratio {ours_rate / plain_rate:.2f}")
    print(f"\n{'model':<22} {'mobilecls f32':>14} {'baseline f32':>13} {'ratio':>6} {'mobilecls bf16':>15}")
    for spec in args.models.split(","):
        name, width = spec.split(":")
        rate = training_rate(name, float(width), ours, args.steps, "float32")
        base = training_rate(name, float(width), plain, args.steps, "float32")
        bf16 = training_rate(name, float(width), ours, args.steps, "mixed_bfloat16")
        print(f"{name + ' ' + width + 'x':<22} {rate:>14,.0f} {base:>13,.0f} {rate / base:>6.2f} {bf16:>15,.0f}")


if __name__ == "__main__":
    main()
