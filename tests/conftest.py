import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def pixels():
    """A deterministic batch maker of RGB pixels in 0..255."""

    def make(count, size, seed=0):
        return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")

    return make


def write_tiny_images(root, per_class=10, size=32):
    """Four classes of noisy single-colour PNGs: a folder dataset that trains in a second."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]):
        os.makedirs(os.path.join(root, f"class_{label}"))
        for index in range(per_class):
            image = np.clip(rng.normal(colour, 60, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(os.path.join(root, f"class_{label}", f"{index}.png"))
    return str(root)


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory):
    """``write_tiny_images`` once per session."""
    return write_tiny_images(tmp_path_factory.mktemp("tiny") / "images")
