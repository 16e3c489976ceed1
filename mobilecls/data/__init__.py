"""Datasets: the built-in synthetic one, image folders and TensorFlow Datasets, as uint8 arrays.

    from mobilecls.data import load
    dataset = load("cifar10")            # or "synthetic", "folder:PATH", "tfds:imagenette"
    dataset.splits["train"].images       # uint8 (N, H, W, 3); .labels int64 (N,)

Importing this package imports neither TensorFlow nor the sources: ``load`` does, when called.
"""

from mobilecls.data.dataset import Dataset
from mobilecls.data.load import load, parse_spec

__all__ = ["Dataset", "load", "parse_spec"]
