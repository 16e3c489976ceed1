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
