"""The LiteRT interpreter side: a .tflite file's input quantization, a batch-1 classifier and
sharded prediction over many images (what evaluation, comparison, quantization debugging and
packaging all run .tflite files with). TensorFlow is not imported until a file is loaded.
"""

import concurrent.futures
import os

import numpy as np


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
