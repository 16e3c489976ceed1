"""The training input pipeline: uint8 images kept in memory, augmented a whole batch at a time.

Per-image ``tf.data`` maps cost a Python-free but per-element kernel launch for every image;
here one batch of 128 images is cropped and flipped with a handful of vectorised ops.
"""

import numpy as np

from mobilecls._tf import tf


def random_crop_with_padding(images, padding, seed):
    """Pad each image by ``padding`` (zeros) and crop it back at a random offset (per image)."""
    if padding <= 0:
        return images
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    offsets = tf.random.stateless_uniform([batch, 2], seed, 0, 2 * padding + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None]     # (B, H)
    cols = offsets[:, 1:] + tf.range(width)[None]      # (B, W)
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def random_flip(images, seed):
    """Mirror each image left-right with probability 1/2."""
    return mirror_where(images, tf.random.stateless_uniform([tf.shape(images)[0]], seed) < 0.5)


def mirror_where(images, flips):
    """Mirror left-right the images whose entry in the (B,) boolean ``flips`` is true."""
    return tf.where(flips[:, None, None, None], tf.reverse(images, axis=[2]), images)


def alternating_flips(first_flips, indices, epoch):
    """Which images of a batch to mirror with ``augment.flip: alternate`` (Jordan, 2024, airbench):
    image i is mirrored in epoch e iff ``first_flips[i]`` (its random draw for epoch 0) differs from
    e's parity, so every image is seen mirrored and unmirrored in turn, never the same way twice in a
    row, while each epoch still mirrors a random half."""
    return tf.not_equal(tf.gather(first_flips, indices), tf.equal(epoch % 2, 1))


def cutout(images, size, seed):
    """Zero one random ``size`` x ``size`` square per image (DeVries & Taylor, 2017)."""
    if size <= 0:
        return images
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    centre = tf.random.stateless_uniform([batch, 2], seed, 0, tf.maximum(height, width), dtype=tf.int32)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = ((tf.abs(rows - centre[:, :1, None]) <= size // 2)
              & (tf.abs(cols - centre[:, 1:, None]) <= size // 2))
    return tf.where(inside[..., None], tf.zeros_like(images), images)


def jpeg_reencode(images, qualities, probability, seed):
    """Re-encode each image of a uint8 batch as a JPEG (4:2:0) with the given ``probability``, at a
    quality drawn uniformly from the inclusive ``qualities`` pair, and decode it back.

    Why: a model trained on JPEG files of one quality loses accuracy on images compressed more
    (frames an app receives as JPEG or video); one more generation at random strength, on the
    block grid of the cropped image (shifted against the file's own), shows it compression of
    varying strength. Measured (docs/results.md, "Val against test"): a MobileNetV1 trained on a
    copy of CIFAR-10 one generation lossier lost 0.88 points under one more q75 generation, with
    ``[60, 95]`` at 0.5 it lost 0.48; on less compressed images it was no better than without it.
    """
    low, high = qualities
    seeds = tf.random.experimental.stateless_split(seed, 2)
    count = tf.shape(images)[0]
    drawn = tf.random.stateless_uniform([count], seeds[0], low, high + 1, dtype=tf.int32)
    chosen = tf.random.stateless_uniform([count], seeds[1]) < probability

    def one(args):
        image, quality, change = args
        return tf.cond(change, lambda: tf.reshape(tf.image.adjust_jpeg_quality(image, quality), tf.shape(image)),
                       lambda: image)

    return tf.map_fn(one, (images, drawn, chosen), fn_output_signature=tf.TensorSpec(images.shape[1:], tf.uint8))


def augment_batch(images, augment, seed, flips=None):
    """Apply the recipe's augmentation to a uint8 batch; returns float32 pixels 0..255.

    ``flips``: the (B,) images to mirror (``alternating_flips``); None draws them at random.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    images = random_crop_with_padding(images, augment.crop_padding, seeds[0])
    if augment.flip:
        images = random_flip(images, seeds[1]) if flips is None else mirror_where(images, flips)
    if augment.jpeg_quality and augment.jpeg_probability > 0:
        # Its own seed, so recipes without it keep the exact augmentation they had.
        images = jpeg_reencode(images, augment.jpeg_quality, augment.jpeg_probability,
                               tf.random.experimental.stateless_fold_in(seed, 3))
    images = cutout(images, augment.cutout, seeds[2])
    return tf.cast(images, tf.float32)


def training_batches(images, labels, batch_size, augment, num_classes, label_smoothing=0.0, seed=0,
                     first_epoch=0, image_size=None, soft_targets=None, distill=0.0):
    """An endless, shuffled, augmented, prefetched ``tf.data.Dataset`` of (pixels, one-hot).

    Epoch ``e``'s order and augmentation are functions of ``(seed, e)`` alone, not of how many
    batches came before, so a run resumed at epoch ``e`` (``first_epoch=e``) sees exactly the
    batches the uninterrupted run saw. Every epoch is ``len(images) // batch_size`` whole
    batches (the remainder of that epoch's shuffle is dropped).

    Args:
        images: (N, H, W, 3) uint8 array, kept in memory.
        labels: (N,) integer labels.
        batch_size: images per batch.
        augment: an ``AugmentSection`` (crop_padding, flip: true, false or "alternate", cutout).
        num_classes: width of the one-hot targets.
        label_smoothing: applied to the one-hot targets.
        seed: makes shuffling and augmentation reproducible.
        first_epoch: the epoch (from 0) whose batches come first.
        image_size: resize each augmented batch to this side (bilinear, antialiased): the low
            resolution epochs of progressive resizing. None keeps the images' size.
        soft_targets: (N, num_classes) class distributions, one per image (a teacher's, computed
            once), mixed into the targets with weight ``distill``: (1 - distill) * one-hot + distill * soft.
        distill: 0..1, the weight of ``soft_targets``.
    """
    steps = len(images) // batch_size
    # Held once as tensors; each batch gathers its images by index (one vectorised copy per batch).
    pixels, targets = tf.constant(images), tf.constant(labels.astype(np.int32))
    seed = tf.constant(int(seed), tf.int64)
    soft = None if soft_targets is None else tf.constant(np.asarray(soft_targets, np.float32))
    # flip "alternate": each image's draw for epoch 0, a function of the seed alone (a resumed run agrees).
    first_flips = (tf.random.stateless_uniform([len(images)], tf.stack([seed, tf.constant(-1, tf.int64)])) < 0.5
                   if augment.flip == "alternate" else None)

    def epoch(index):
        # The order is a stateless function of (seed, epoch): no RNG state carries over from the
        # epochs before, so a resumed run needs none restored.
        keys = tf.random.stateless_uniform([len(images)], tf.stack([seed, index]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size, drop_remainder=True)

    dataset = tf.data.Dataset.range(first_epoch, _NO_END).flat_map(epoch)
    # The augmentation seed is (seed, global step), the same step numbering a resumed run continues.
    dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.counter(start=first_epoch * steps)))

    def transform(indices, step):
        flips = None if first_flips is None else alternating_flips(first_flips, indices, step // steps)
        batch = augment_batch(tf.gather(pixels, indices), augment, tf.stack([seed, step]), flips)
        if image_size:
            batch = tf.image.resize(batch, [image_size, image_size], method="bilinear", antialias=True)
        one_hot = tf.one_hot(tf.gather(targets, indices), num_classes)
        if label_smoothing:
            one_hot = one_hot * (1 - label_smoothing) + label_smoothing / num_classes
        if soft is not None:
            one_hot = (1.0 - distill) * one_hot + distill * tf.gather(soft, indices)
        return batch, one_hot

    return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


_NO_END = 2**62  # epochs: the dataset is endless in practice, fit stops it


def evaluation_batches(images, batch_size):
    """Float32 pixel batches in order (no augmentation), for prediction."""
    return (tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
            .map(lambda x: tf.cast(x, tf.float32)).prefetch(tf.data.AUTOTUNE))
