"""`eval`: the same metrics as fit, for a .keras model or a .tflite file (fast on all cores)."""

import dataclasses
import os
import time

import numpy as np

from mobilecls.evaluation.metrics import classification_metrics
from mobilecls.files import gzip_size
from mobilecls.runtime import TFLiteClassifier, predict_tflite


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """A .tflite or Keras model file, read and loaded once: what eval and compare need of it."""

    path: str
    content: bytes  # the file as read: its size and gzip size
    class_names: list | None
    input_shape: tuple  # (1, H, W, C)
    keras_model: object = None  # the loaded Keras model; None for a .tflite file
    probabilities: bool = False  # the scores are a softmax (mobilecls files by default), not logits

    def predict(self, images):
        """Scores (N, C) for pixel images (N, H, W, 3)."""
        if self.keras_model is None:
            return predict_tflite(self.content, images)
        return self.keras_model.predict(images.astype(np.float32), batch_size=256, verbose=0)

    def layer_outputs(self, images):
        """{layer name: outputs} on ``images`` (see ``mobilecls.evaluation.divergence``)."""
        from mobilecls.evaluation.divergence import keras_layer_outputs, tflite_layer_outputs

        if self.keras_model is None:
            return tflite_layer_outputs(self.content, images)
        return keras_layer_outputs(self.keras_model, images)


def open_model(path):
    """Read a .tflite or .keras/.h5 file once into a ``ModelFile``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a TFLite file or not a loadable Keras model.
    """
    if path.endswith(".tflite"):
        from mobilecls.export.metadata import read_metadata
        from mobilecls.files import read_tflite

        content = read_tflite(path)
        try:
            metadata = read_metadata(content) or {}
            input_shape = TFLiteClassifier(content).input_shape
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        return ModelFile(path, content, metadata.get("class_names"), input_shape,
                         probabilities=bool(metadata.get("probabilities")))
    from mobilecls.models.io import class_names_beside, load_keras_model

    model = load_keras_model(path)
    with open(path, "rb") as handle:
        content = handle.read()
    return ModelFile(path, content, class_names_beside(path), (1, *model.input_shape[1:]), model)


def evaluate(model_path, data, split="val", data_dir=None, dataset=None, val_fraction=0.1, holdout_seed=0):
    """Accuracy, top-5, macro precision / recall / F1, confusion and images/s of a model.

    Raises:
        ValueError: the split does not exist, the images do not fit the model, or the model's
            class names differ from the data's.
    """
    model = open_model(model_path)
    if dataset is None:
        from mobilecls.data import load

        dataset = load(data, data_dir=data_dir, val_fraction=val_fraction, seed=holdout_seed)
    if split not in dataset.splits:
        raise ValueError(f"split {split!r} not in {data}; it has: {', '.join(sorted(dataset.splits))}")
    part = dataset.splits[split]
    _check_fits(model, part.images, data)
    names = model.class_names
    if names is not None and list(names) != list(dataset.class_names):
        raise ValueError(f"{model_path} was trained on classes {', '.join(names)}; {data} has "
                         f"{', '.join(dataset.class_names)}")
    started = time.perf_counter()
    scores = model.predict(part.images)
    seconds = time.perf_counter() - started
    metrics = classification_metrics(part.labels, scores, dataset.class_names)
    metrics.update({"model": os.path.basename(model_path), "data": data, "split": split,
                    "images_per_sec": len(part.images) / seconds, "size_bytes": len(model.content),
                    "gzip_bytes": gzip_size(model.content)})
    return metrics


def _check_fits(model, images, data):
    if tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"{data} images are {'x'.join(map(str, images.shape[1:]))}; "
                         f"{model.path} expects {'x'.join(map(str, model.input_shape[1:]))}")


def compare(first_path, second_path, data, split="val", data_dir=None, dataset=None, probes=8, val_fraction=0.1,
            holdout_seed=0):
    """Top-1 agreement and output differences of two models on the same images, and the first
    layer whose outputs diverge (compared on the ``probes`` images where the outputs differ most).

    Typical use: a QAT Keras model against its int8 .tflite, or a float file against its fp16 one.
    Scores are compared as the models give them (quantized outputs dequantized), except that
    logits are turned into probabilities when the other model gives probabilities (a Keras model
    against its .tflite file, which ends in a softmax).
    """
    if dataset is None:
        from mobilecls.data import load

        dataset = load(data, data_dir=data_dir, val_fraction=val_fraction, seed=holdout_seed)
    if split not in dataset.splits:
        raise ValueError(f"split {split!r} not in {data}; it has: {', '.join(sorted(dataset.splits))}")
    images = dataset.splits[split].images
    labels = dataset.splits[split].labels
    models = [open_model(path) for path in (first_path, second_path)]
    for model in models:
        _check_fits(model, images, data)
    scores = [np.asarray(model.predict(images), np.float32) for model in models]
    if models[0].probabilities != models[1].probabilities:
        scores = [s if model.probabilities else _softmax(s) for model, s in zip(models, scores, strict=True)]
    first, second = scores
    if first.shape != second.shape:
        raise ValueError(f"{first_path} gives {first.shape[1]} scores per image, {second_path} {second.shape[1]}")
    difference = np.abs(first - second)
    worst = int(difference.max(axis=1).argmax())
    result = {"samples": int(len(images)), "top1_agreement": float(np.mean(first.argmax(1) == second.argmax(1))),
              "max_abs_difference": float(difference.max()), "mean_abs_difference": float(difference.mean()),
              "worst_image_index": worst, "accuracy": [float(np.mean(s.argmax(1) == labels)) for s in scores],
              "models": [first_path, second_path], "data": data, "split": split}
    result["divergence"] = _divergence(*models, images, first, second, probes)
    return result


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _divergence(first_model, second_model, images, first, second, probes):
    """Layer-by-layer comparison on the ``probes`` images where the outputs differ most
    (those with a different top-1 first)."""
    from mobilecls.evaluation.divergence import first_divergence

    disagree = first.argmax(1) != second.argmax(1)
    order = np.lexsort((-np.abs(first - second).max(axis=1), ~disagree))[:probes]
    probe = images[np.sort(order)]
    divergence = first_divergence(first_model.layer_outputs(probe), second_model.layer_outputs(probe))
    divergence["images"] = [int(index) for index in np.sort(order)]
    return divergence
