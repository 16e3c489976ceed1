"""Test-time mirror averaging inside the exported file: a classifier that scores the image and its
left-right mirror image in one pass at batch 2 and returns their mean logits; with ``shift``, six views
in one pass at batch 6: the image and its mirror image, each as it is and shifted one pixel up-left and
one pixel down-right (borders reflected).

Measured on the study's models (docs/results.md, "Test-time mirror and shift averaging"): +0.64 to
+1.16 val points for 1.5-1.9x the latency at 1 thread; the six views +0.96 to +1.56 for 3.8-5.6x. The
batch form (concatenate the views on the batch axis, one pass, mean over the batch) keeps the whole
network in one XNNPACK partition and the weights once in the file; calling the model twice and
averaging split an int8 graph in two.
"""

from mobilecls._tf import keras, tf


class MirrorPair(keras.layers.Layer):
    """(1, H, W, C) -> (2, H, W, C): the image, then its left-right mirror image."""

    def call(self, images):
        return tf.concat([images, tf.reverse(images, axis=[2])], axis=0)


class MirrorShiftViews(keras.layers.Layer):
    """(1, H, W, C) -> (6, H, W, C): the image and its mirror image, each as it is, shifted one pixel
    up-left and one pixel down-right (the border pixel row and column reflected).

    The ops XNNPACK does not take (MIRROR_PAD, REVERSE_V2) come first, on the input alone, so the
    crops, the network and the mean stay in one partition.
    """

    def call(self, images):
        padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        pair = tf.concat([padded, tf.reverse(padded, axis=[2])], axis=0)
        size = [2, *images.shape[1:]]  # static, so that the file keeps a static batch
        return tf.concat([tf.slice(pair, [0, offset, offset, 0], size) for offset in (1, 0, 2)], axis=0)


class BatchMean(keras.layers.Layer):
    """(N, K) -> (1, K): the mean over the batch."""

    def call(self, scores):
        return tf.reduce_mean(scores, axis=0, keepdims=True)


def mirror_averaged(model, shift=False):
    """A new model: ``model``'s logits averaged over the image and its mirror image (with ``shift``,
    over those two each as it is and shifted one pixel up-left and down-right: six views).

    The input has a static batch of 1 (the exported files' batch); ``model`` itself is shared, not
    copied or changed. Float and QAT models alike.

    Raises:
        ValueError: ``model`` does not take images (N, H, W, C).
    """
    shape = tuple(model.input_shape)
    if len(shape) != 4:
        raise ValueError(f"mirror averaging needs a model taking images (N, H, W, C); {model.name} takes {shape}")
    pixels = keras.Input(batch_shape=(1, *shape[1:]), name="pixels")
    views = MirrorShiftViews(name="mirror_shift_views") if shift else MirrorPair(name="mirror_pair")
    logits = BatchMean(name="mirror_mean")(model(views(pixels), training=False))
    return keras.Model(pixels, logits, name=f"{model.name}_mirror{'_shift' if shift else ''}_averaged")
