"""benchmarks/jpeg_shift.py: one more JPEG generation, and the copy of a data folder one generation further."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
from jpeg_shift import jpeg_generation, write_generation  # noqa: E402


def smooth_image(seed=0):
    """A 32x32 image with structure a JPEG keeps, so a re-encode changes it a little, not a lot."""
    rows, cols = np.mgrid[0:32, 0:32]
    phase = np.random.default_rng(seed).uniform(0, 6, 3)
    return np.stack([127 + 100 * np.sin(rows / 5 + p) * np.cos(cols / 7 - p) for p in phase], -1).astype(np.uint8)


def test_a_generation_on_a_shifted_grid_changes_more_than_on_the_own_grid():
    once = jpeg_generation(smooth_image(), 75, 2, 0)  # the "file": one generation
    again = jpeg_generation(once, 75, 2, 0)
    shifted = jpeg_generation(once, 75, 2, 4)
    assert again.shape == shifted.shape == (32, 32, 3) and shifted.dtype == np.uint8
    own = np.abs(again.astype(int) - once).mean()
    off = np.abs(shifted.astype(int) - once).mean()
    assert own < off and off > 0.5


def test_write_generation_copies_every_image_one_generation_further(tmp_path):
    source = tmp_path / "src"
    for label, seed in (("cat", 0), ("dog", 1)):
        os.makedirs(source / "train" / label)
        Image.fromarray(smooth_image(seed)).save(source / "train" / label / f"{label}0.jpg", quality=75)
    write_generation(str(source), str(tmp_path / "gen2"))
    written = sorted(os.path.relpath(os.path.join(d, n), tmp_path / "gen2")
                     for d, _, names in os.walk(tmp_path / "gen2") for n in names)
    assert written == ["train/cat/cat0.png", "train/dog/dog0.png"]
    assert not os.path.exists(tmp_path / "gen2.partial")
    original = np.asarray(Image.open(source / "train" / "cat" / "cat0.jpg").convert("RGB")).astype(int)
    assert 0 < np.abs(np.asarray(Image.open(tmp_path / "gen2" / "train" / "cat" / "cat0.png")) - original).mean() < 10


def test_write_generation_refuses_an_existing_destination_and_a_source_without_train(tmp_path):
    os.makedirs(tmp_path / "kept")
    (tmp_path / "kept" / "note").write_text("mine")
    with pytest.raises(SystemExit, match="exists; expected a new folder"):
        write_generation(str(tmp_path), str(tmp_path / "kept"))
    assert (tmp_path / "kept" / "note").read_text() == "mine"
    with pytest.raises(SystemExit, match="has no train/ folder"):
        write_generation(str(tmp_path / "kept"), str(tmp_path / "new"))
    assert not os.path.exists(tmp_path / "new")


def test_a_shift_outside_the_block_is_a_one_line_usage_error():
    import subprocess

    script = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "jpeg_shift.py")
    result = subprocess.run([sys.executable, script, "--shift", "8"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "argument --shift: invalid choice: 8 (choose from 1, 2, 3, 4, 5, 6, 7)")
