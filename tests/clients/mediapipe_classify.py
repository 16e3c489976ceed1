"""Classify images with MediaPipe Tasks' ImageClassifier; run by tests/test_clients.py in its own venv.

Usage: python mediapipe_classify.py MODEL.tflite IMAGES.npy  ->  JSON on stdout: per image, every
category (index, name, score) in MediaPipe's order (best first). MediaPipe cannot share
mobilecls' environment (mediapipe 1.2 needs absl-py~=2.3, tensorflow-model-optimization ~=1.2).
"""

import json
import sys

import numpy as np
from mediapipe.tasks.python.core.base_options import BaseOptions
from mediapipe.tasks.python.vision import image_classifier
from mediapipe.tasks.python.vision.core.image import Image, ImageFormat


def main(model_path, images_path):
    images = np.load(images_path)
    options = image_classifier.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model_path),
                                                      max_results=-1)
    results = []
    with image_classifier.ImageClassifier.create_from_options(options) as classifier:
        for pixels in images:
            result = classifier.classify(Image(image_format=ImageFormat.SRGB, data=np.ascontiguousarray(pixels)))
            (head,) = result.classifications
            results.append([[c.index, c.category_name, float(c.score)] for c in head.categories])
    print(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
