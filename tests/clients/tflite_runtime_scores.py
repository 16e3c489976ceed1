"""Run a .tflite classifier in the standalone tflite-runtime (2.14); run by tests/test_clients.py.

Usage: python tflite_runtime_scores.py MODEL.tflite IMAGES.npy  ->  JSON on stdout: the runtime's
version and the dequantized scores per image. tflite-runtime 2.14 needs numpy<2, hence its own venv.
"""

import json
import sys

import numpy as np
import tflite_runtime
from tflite_runtime.interpreter import Interpreter


def main(model_path, images_path):
    interpreter = Interpreter(model_path=model_path)
    interpreter.allocate_tensors()
    (source,), (sink,) = interpreter.get_input_details(), interpreter.get_output_details()
    scores = []
    for pixels in np.load(images_path).astype(np.float32):
        if source["dtype"] != np.float32:  # the file's own quantization, e.g. int8: pixel - 128
            scale, zero = source["quantization"]
            info = np.iinfo(source["dtype"])
            pixels = np.clip(np.round(pixels / scale + zero), info.min, info.max)
        interpreter.set_tensor(source["index"], pixels[None].astype(source["dtype"]))
        interpreter.invoke()
        out = interpreter.get_tensor(sink["index"])[0].astype(np.float32)
        if sink["dtype"] != np.float32:
            scale, zero = sink["quantization"]
            out = (out - zero) * scale
        scores.append(out.tolist())
    print(json.dumps({"version": tflite_runtime.__version__, "scores": scores}))


if __name__ == "__main__":
    main(*sys.argv[1:])
