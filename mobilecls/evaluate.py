"""`eval`: the same metrics as fit, for a .keras model or a .tflite file (fast on all cores)."""

import concurrent.futures
import os
import time

import numpy as np

from mobilecls.metrics import classification_metrics


def quantize_input(pixels, detail):
    """``pixels`` as the input ``detail`` (an interpreter's input details) wants them."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return pixels.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(pixels / scale + zero), info.min, info.max).astype(dtype)


class TFLiteClassifier:
    """A .tflite classifier with a static batch of 1: pixels 0..255 in, float scores out.

    Quantized inputs are quantized with the file's own scale and zero point, quantized outputs
    dequantized, so int8, uint8 and float files are used the same way.
    """

    def __init__(self, content, num_threads=1):
        from mobilecls._tf import Interpreter

        self.interpreter = Interpreter(model_content=content, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.source = self.interpreter.get_input_details()[0]
        self.sink = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.source["shape"])

    def _quantize(self, pixels):
        return quantize_input(pixels, self.source)

    def _dequantize(self, scores):
        if scores.dtype == np.float32:
            return scores
        scale, zero = self.sink["quantization"]
        return (scores.astype(np.float32) - zero) * scale

    def predict(self, images):
        """Scores (N, C) for uint8/float pixel images (N, H, W, 3), one invoke per image."""
        outputs = []
        for image in images:
            self.interpreter.set_tensor(self.source["index"], self._quantize(image[None].astype(np.float32)))
            self.interpreter.invoke()
            outputs.append(self._dequantize(self.interpreter.get_tensor(self.sink["index"]))[0])
        return np.stack(outputs) if outputs else np.zeros((0, self.sink["shape"][-1]), np.float32)


def predict_tflite(content, images, workers=None):
    """Scores for ``images`` from a .tflite file, with one interpreter per worker thread.

    Batch-1 files cannot be resized safely (their reshapes are fixed to it), so throughput
    comes from shards: the interpreter releases the GIL while it runs.
    """
    workers = workers or os.cpu_count() or 1
    shards = np.array_split(np.arange(len(images)), workers)
    classifiers = [TFLiteClassifier(content) for _ in shards]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        parts = pool.map(lambda pair: pair[0].predict(images[pair[1]]), zip(classifiers, shards, strict=True))
        return np.concatenate(list(parts))


def load_predictor(path):
    """A function images -> scores for a .tflite or .keras file, and its class names (or None)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if path.endswith(".tflite"):
        from mobilecls.convert import read_metadata

        with open(path, "rb") as handle:
            content = handle.read()
        try:
            metadata = read_metadata(content) or {}
            input_shape = TFLiteClassifier(content).input_shape
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        return (lambda images: predict_tflite(content, images)), metadata.get("class_names"), input_shape
    from mobilecls.quantize import class_names_beside, load_keras_model

    model = load_keras_model(path)
    return ((lambda images: model.predict(images.astype(np.float32), batch_size=256, verbose=0)),
            class_names_beside(path), (1, *model.input_shape[1:]))


def evaluate(model_path, data, split="val", data_dir=None, dataset=None):
    """Accuracy, top-5, macro precision / recall / F1, confusion and images/s of a model.

    Raises:
        ValueError: the split does not exist, the images do not fit the model, or the model's
            class names differ from the data's.
    """
    predict, names, input_shape = load_predictor(model_path)
    if dataset is None:
        from mobilecls.data import load

        dataset = load(data, data_dir=data_dir)
    if split not in dataset.splits:
        raise ValueError(f"split {split!r} not in {data}; it has: {', '.join(sorted(dataset.splits))}")
    part = dataset.splits[split]
    if tuple(part.images.shape[1:]) != tuple(input_shape[1:]):
        raise ValueError(f"{data} images are {'x'.join(map(str, part.images.shape[1:]))}; "
                         f"{model_path} expects {'x'.join(map(str, input_shape[1:]))}")
    if names is not None and list(names) != list(dataset.class_names):
        raise ValueError(f"{model_path} was trained on classes {', '.join(names)}; {data} has "
                         f"{', '.join(dataset.class_names)}")
    started = time.perf_counter()
    scores = predict(part.images)
    seconds = time.perf_counter() - started
    metrics = classification_metrics(part.labels, scores, dataset.class_names)
    metrics.update({"model": os.path.basename(model_path), "data": data, "split": split,
                    "images_per_sec": len(part.images) / seconds, "size_bytes": os.path.getsize(model_path),
                    "gzip_bytes": _gzip_size(model_path)})
    return metrics


def _gzip_size(path):
    from mobilecls.files import gzip_size

    with open(path, "rb") as handle:
        return gzip_size(handle.read())


def compare(first_path, second_path, data, split="val", data_dir=None, dataset=None, probes=8):
    """Top-1 agreement and output differences of two models on the same images, and the first
    layer whose outputs diverge (compared on the ``probes`` images where the outputs differ most).

    Typical use: a QAT Keras model against its int8 .tflite, or a float file against its fp16 one.
    Scores are compared as the models give them (logits; quantized outputs dequantized).
    """
    if dataset is None:
        from mobilecls.data import load

        dataset = load(data, data_dir=data_dir)
    if split not in dataset.splits:
        raise ValueError(f"split {split!r} not in {data}; it has: {', '.join(sorted(dataset.splits))}")
    images = dataset.splits[split].images
    labels = dataset.splits[split].labels
    scores = []
    for path in (first_path, second_path):
        predict, _, input_shape = load_predictor(path)
        if tuple(images.shape[1:]) != tuple(input_shape[1:]):
            raise ValueError(f"{data} images are {'x'.join(map(str, images.shape[1:]))}; "
                             f"{path} expects {'x'.join(map(str, input_shape[1:]))}")
        scores.append(np.asarray(predict(images), np.float32))
    first, second = scores
    if first.shape != second.shape:
        raise ValueError(f"{first_path} gives {first.shape[1]} scores per image, {second_path} {second.shape[1]}")
    difference = np.abs(first - second)
    worst = int(difference.max(axis=1).argmax())
    result = {"samples": int(len(images)), "top1_agreement": float(np.mean(first.argmax(1) == second.argmax(1))),
              "max_abs_difference": float(difference.max()), "mean_abs_difference": float(difference.mean()),
              "worst_image_index": worst, "accuracy": [float(np.mean(s.argmax(1) == labels)) for s in scores],
              "models": [first_path, second_path], "data": data, "split": split}
    result["divergence"] = _divergence(first_path, second_path, images, first, second, probes)
    return result


def _divergence(first_path, second_path, images, first, second, probes):
    """Layer-by-layer comparison on the ``probes`` images where the outputs differ most
    (those with a different top-1 first)."""
    from mobilecls.divergence import first_divergence, layer_outputs

    disagree = first.argmax(1) != second.argmax(1)
    order = np.lexsort((-np.abs(first - second).max(axis=1), ~disagree))[:probes]
    probe = images[np.sort(order)]
    divergence = first_divergence(layer_outputs(first_path, probe), layer_outputs(second_path, probe))
    divergence["images"] = [int(index) for index in np.sort(order)]
    return divergence
