import importlib
import os

import numpy as np
import pytest
from tiny import TINY, small_synthetic, write_tiny_images

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

synthetic_module = importlib.import_module("mobilecls.data.synthetic")  # numpy only, no TensorFlow

LIBRARY_SYNTHETIC = synthetic_module.synthetic  # the library's own sizes (5,000 + 1,000 images)

# `make test` hands out test files to its workers in collection order (pytest-xdist, --dist
# loadfile), so a long file collected last runs alone at the end. These start first, longest first
# by their seconds in an idle `make test` on 2026-12-03 before this ordering (100, 93, 87, 83, 77,
# 74, 64, 62, 57, 54, 50; test_tflite_int8 and the prune files have since got faster).
LONGEST_FILES = ("test_tflite_int8", "test_prune", "test_shufflenet_v1", "test_resume_faults", "test_fit",
                 "test_bad_input", "test_prune_policies", "test_prune_distill", "test_clients", "test_quantize",
                 "test_models")


def pytest_collection_modifyitems(items):
    """The longest files first, every file's tests in their own order (a stable sort)."""
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def small_synthetic_set():
    """Every "synthetic" spec of the tests loads tiny.SYNTHETIC_TRAIN + SYNTHETIC_TEST images, generated once.

    Tests that call ``synthetic(...)`` with explicit sizes, or use ``library_synthetic``, get the
    library's own set; subprocesses (test_distribute) do too.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthetic_module, "synthetic", small_synthetic(LIBRARY_SYNTHETIC))
        yield


@pytest.fixture
def library_synthetic(monkeypatch):
    """The library's synthetic set at its own default sizes, for a test of those defaults."""
    monkeypatch.setattr(synthetic_module, "synthetic", LIBRARY_SYNTHETIC)


@pytest.fixture
def pixels():
    """A deterministic batch maker of RGB pixels in 0..255."""

    def make(count, size, seed=0):
        return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")

    return make


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory):
    """``write_tiny_images`` once per session."""
    return write_tiny_images(tmp_path_factory.mktemp("tiny") / "images")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The session's one trained run of tiny.TINY (test_fit, test_bad_input): best.keras, classes.json,
    metrics.json, ... Tests must not change its folder (copy it first)."""
    from mobilecls.training.train import fit

    return fit(TINY, str(tmp_path_factory.mktemp("runs") / "tiny"), quiet=True)


@pytest.fixture(scope="session")
def tiny_fp32(tiny_run, tmp_path_factory):
    """The tiny run's best.keras as `mobilecls quantize --fp32` writes it (outside the run folder)."""
    from mobilecls.export.quantize import quantize

    out = str(tmp_path_factory.mktemp("exports") / "best_fp32.tflite")
    quantize(tiny_run.model_path, "fp32", out)
    return out


@pytest.fixture(scope="session")
def float_model(tmp_path_factory):
    """An untrained MobileNetV1 0.25x (few layers: wrapping and tracing are what the prune and QAT
    tests spend their time on) for the synthetic data, saved as FOLDER/best.keras with its
    classes.json. Tests must not change its folder."""
    import json

    from mobilecls.data import load
    from mobilecls.models import build_model

    folder = tmp_path_factory.mktemp("float")
    build_model("mobilenet_v1", width=0.25, input_size=32, num_classes=10).save(folder / "best.keras")
    (folder / "classes.json").write_text(json.dumps(list(load("synthetic").class_names)))
    return folder / "best.keras"
