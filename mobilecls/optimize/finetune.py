"""Short fine-tuning runs shared by pruning and QAT (SGD, cosine to zero, crop + flip)."""

import math

from mobilecls._tf import keras, tf
from mobilecls.data.pipeline import evaluation_batches, training_batches
from mobilecls.recipes import AugmentSection


def fine_tune(model, dataset, epochs, lr, batch_size=128, callbacks=(), quiet=True, seed=0, teacher=None,
              distill=0.0):
    """Train ``model`` in place on ``dataset``'s train split; returns the val accuracy after.

    Args:
        model: a (pruning- or quantization-wrapped) tf_keras model taking pixels 0..255.
        dataset: a ``mobilecls.data.Dataset``.
        epochs: fine-tuning epochs (0 only evaluates).
        lr: starting learning rate, decayed to zero with a cosine.
        batch_size: images per step.
        callbacks: extra Keras callbacks (e.g. tfmot's UpdatePruningStep).
        quiet: no progress output.
        seed: shuffling and augmentation seed.
        teacher: a model whose class probabilities on the same augmented batch are mixed into
            the targets (knowledge distillation, e.g. the dense model a pruned one came from).
        distill: weight of the teacher's probabilities in the targets, 0..1 (0: labels only).
    """
    check_distill(distill)
    train, val = dataset.splits["train"], dataset.splits["val"]
    num_classes = len(dataset.class_names)
    steps = max(1, len(train.images) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(1, epochs * steps))
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    if epochs:
        batches = training_batches(train.images, train.labels, min(batch_size, len(train.images)),
                                   AugmentSection(crop_padding=4, flip=True), num_classes, seed=seed)
        if teacher is not None and distill:
            batches = distilled(batches, teacher, distill)
        model.fit(batches, epochs=epochs, steps_per_epoch=steps, callbacks=list(callbacks),
                  verbose=0 if quiet else 2)
    scores = model.predict(evaluation_batches(val.images, 256), verbose=0)
    accuracy = float((scores.argmax(axis=1) == val.labels).mean())
    return accuracy if math.isfinite(accuracy) else 0.0


def check_distill(weight):
    """Raises ValueError unless the distillation weight is in 0..1."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distill must be in 0..1, got {weight}")


def check_teacher(teacher, teacher_path, model, model_name):
    """Raises ValueError unless ``teacher`` takes ``model``'s input and gives its classes."""
    if teacher.input_shape[1:] != model.input_shape[1:] or teacher.output_shape[1:] != model.output_shape[1:]:
        raise ValueError(f"teacher {teacher_path} maps {teacher.input_shape[1:]} to {teacher.output_shape[1:]}; "
                         f"{model_name} maps {model.input_shape[1:]} to {model.output_shape[1:]}")


def distilled(batches, teacher, weight):
    """``batches`` of (pixels, targets) with targets (1 - weight) * targets + weight * the
    teacher's softmax on those pixels (the teacher runs in inference mode in the input pipeline)."""

    def mix(pixels, targets):
        probabilities = tf.nn.softmax(tf.cast(teacher(pixels, training=False), tf.float32))
        return pixels, (1.0 - weight) * targets + weight * probabilities

    return batches.map(mix, num_parallel_calls=1).prefetch(tf.data.AUTOTUNE)
