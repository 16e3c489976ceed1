"""The tests' tiny recipes, tiny image folders and small synthetic set: one definition for every module.

conftest.py makes fixtures of them (a session-wide small synthetic set, one trained tiny run and
its exported files); test modules import the recipes from here (``from tiny import TINY``).
"""

import functools
import json
import os

import numpy as np

from mobilecls import recipes

# The tiny synthetic recipe: one epoch of ShuffleNetV2 0.5x (fit, budget and pipeline tests, and
# the session's shared run, see conftest.tiny_run).
TINY = recipes.from_dict({
    "model": {"name": "shufflenet_v2", "width": 0.5},
    "data": {"spec": "synthetic"},
    "optimizer": {"lr": 0.05},
    "schedule": {"name": "cosine"},
    "train": {"epochs": 1, "batch_size": 128, "seed": 7},
})

# The tiny folder recipe: MobileNetV1 0.25x on ``write_tiny_images`` (bad-input and kill-and-resume
# tests); ``folder_recipe`` fills in the folder.
TINY_FOLDER = {"model": {"name": "mobilenet_v1", "width": 0.25}, "data": {"val_fraction": 0.2},
               "optimizer": {"lr": 0.05}, "train": {"epochs": 2, "batch_size": 8, "seed": 3}}


def folder_recipe(images, **changes):
    """TINY_FOLDER on the image folder ``images``, with ``changes`` ({section: {key: value}}) applied."""
    values = json.loads(json.dumps(TINY_FOLDER))
    values["data"]["spec"] = f"folder:{images}"
    for section, keys in changes.items():
        values.setdefault(section, {}).update(keys)
    return recipes.from_dict(values)


COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


def write_tiny_images(root, per_class=10, size=32, classes=4, prefix="class_"):
    """``classes`` classes of noisy single-colour PNGs: a folder dataset that trains in a second."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(classes):
        colour = COLOURS[label % len(COLOURS)]
        os.makedirs(os.path.join(root, f"{prefix}{label}"))
        for index in range(per_class):
            image = np.clip(rng.normal(colour, 60, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(os.path.join(root, f"{prefix}{label}", f"{index}.png"))
    return str(root)


# The synthetic set the tests load through "synthetic" specs (conftest.small_synthetic_set): 1,000
# training images (900 train / 100 val after the holdout) and 200 test images instead of the
# library's 5,000 and 1,000, generated once per argument set. test_data checks the library's sizes.
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 1000, 200


def small_synthetic(original):
    """``original`` (mobilecls.data.synthetic.synthetic) with the tests' smaller defaults, cached.

    The cached arrays are read-only, so a test that changed them in place would fail, not leak.
    """

    @functools.lru_cache(maxsize=8)
    def cached(num_train, num_test, size, seed):
        dataset = original(num_train, num_test, size=size, seed=seed)
        for split in dataset.splits.values():
            split.images.flags.writeable = False
            split.labels.flags.writeable = False
        return dataset

    def synthetic(num_train=SYNTHETIC_TRAIN, num_test=SYNTHETIC_TEST, size=32, seed=0):
        return cached(num_train, num_test, size, seed)

    return synthetic
