"""Distillation targets computed once, before the first epoch (``train.teacher_runs: once``).

A teacher that runs on every augmented batch (``train.teacher_runs: every_batch``) adds its forward
pass to every training step: measured with a MobileNetV1 0.75 teacher, epochs took 1.42x as long,
so a time budget bought 20 epochs instead of 32. Run once, the teachers cost one pass over the
training images (two with the mirror images) and nothing per epoch, so they can be .tflite files
(the zoo ships those) and several of them (an ensemble is a better teacher than any one member).

Each training image's target is the mean class distribution of every teacher on the image and,
when the recipe flips, on its mirror image (the augmented crops of an image share it). A
temperature T > 1 flattens each distribution (softmax(log p / T)): teachers trained with label
smoothing give about 0.9 to the true class of their own training images, little else to learn from.
"""

import numpy as np


def _class_distribution(teacher, images, temperature):
    """softmax(log p / temperature) of ``teacher`` on ``images``, from its logits or its softmax."""
    scores = teacher.predict(images).astype(np.float64)
    if teacher.probabilities:  # a .tflite file's softmax output (int8 files: dequantized, may not sum to 1)
        with np.errstate(divide="ignore"):
            scores = np.log(np.clip(scores, 0.0, None))  # a 0 stays 0 at any temperature
    scores = scores / temperature  # log p and the logits differ by a constant per image
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _open_teacher(path, image_shape, class_names):
    from mobilecls.evaluation.evaluate import open_model

    teacher = open_model(path)
    if tuple(teacher.input_shape[1:]) != tuple(image_shape):
        raise ValueError(f"teacher {path} takes {tuple(teacher.input_shape[1:])} images; the training images "
                         f"are {tuple(image_shape)}")
    if teacher.class_names is not None and list(teacher.class_names) != list(class_names):
        raise ValueError(f"teacher {path} has the classes {teacher.class_names}; the data has {list(class_names)} "
                         "(same names in the same order needed)")
    return teacher


def teacher_targets(paths, images, class_names, mirror=True, temperature=1.0):
    """The mean class distribution (N, C) float32 of the teachers at ``paths`` on ``images``.

    Args:
        paths: .tflite or .keras files (a Keras model gives logits, as mobilecls models do).
        images: uint8 training images (N, H, W, 3).
        class_names: the data's classes; a teacher that names its classes must name the same.
        mirror: also run each image mirrored left-right and average the two.
        temperature: > 0; each teacher's distribution becomes softmax(log p / temperature).

    Raises:
        FileNotFoundError: a teacher file does not exist.
        ValueError: not a model file, other input size, classes or class count; bad temperature.
    """
    if not temperature > 0:
        raise ValueError(f"teacher temperature must be > 0, got {temperature!r}")
    total = np.zeros((len(images), len(class_names)), np.float64)
    views = (images, images[:, :, ::-1]) if mirror else (images,)
    for path in paths:
        teacher = _open_teacher(path, images.shape[1:], class_names)
        for view in views:
            distribution = _class_distribution(teacher, np.ascontiguousarray(view), temperature)
            if distribution.shape[1] != len(class_names):
                raise ValueError(f"teacher {path} gives {distribution.shape[1]} class scores; the data has "
                                 f"{len(class_names)} classes")
            total += distribution
    return (total / (len(paths) * len(views))).astype(np.float32)
