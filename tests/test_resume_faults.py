"""A fit killed with SIGKILL anywhere resumes to the very run it would have been.

Each attempt is a separate Python process running a tiny fit. It is killed at the N-th file
it writes (just before the rename that would publish the file; half the time with the temporary
file cut short, which is the state of a kill while the file is being written) or at a random
moment, then `fit --resume` runs until the run finishes. The history, weights and metrics must
equal those of the same run never interrupted.
"""

import csv
import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

DRIVER = r"""
import os, signal, sys
from mobilecls import files
from mobilecls.training import train
from tiny import folder_recipe  # tests/tiny.py: the tiny folder recipe

out, data, kill_name, occurrence, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
written = []

def kill_at_nth_write(temporary, path):
    written.append(os.path.basename(path))
    if written[-1] == kill_name and written.count(kill_name) == occurrence:
        if mode == "partial" and os.path.isfile(temporary):  # as if killed while writing it
            with open(temporary, "r+b") as handle:
                handle.truncate(os.path.getsize(temporary) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

files._before_rename = kill_at_nth_write
recipe = folder_recipe(data, schedule={"name": "cosine", "warmup_epochs": 1}, train={"epochs": EPOCHS})
resume = os.path.isdir(out)
print("ready", flush=True)  # the parent's clock for a kill at a random moment starts here
train.fit(None if resume else recipe, out, resume=resume, quiet=True)
print(" ".join(written))
"""
EPOCHS = 3


@pytest.fixture(scope="module")
def images(tiny_images):
    return tiny_images


def _attempt(out, images, kill_at=("", 0), mode="complete", kill_after_s=None):
    """One process of the fit, killed as it writes the ``kill_at[1]``-th file named ``kill_at[0]``.

    Returns its exit status and the names of the files it wrote, in order.
    """
    tests = os.path.dirname(os.path.abspath(__file__))  # tiny.py
    root = os.path.dirname(tests)  # this checkout's mobilecls
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([root, tests, os.environ.get("PYTHONPATH", "")]),
                   "MOBILECLS_CACHE": "off", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-c", DRIVER.replace("EPOCHS", str(EPOCHS)), out, images, *map(str, kill_at), mode]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, text=True)
    if kill_after_s is not None:
        process.stdout.readline()  # "ready": TensorFlow is imported, the fit starts
        try:
            process.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode in (0, -signal.SIGKILL), stderr[-3000:]
    return process.returncode, [name for name in stdout.split() if name != "ready"]


def _resume_until_finished(out, images, attempts=6):
    for _ in range(attempts):
        status, _ = _attempt(out, images)
        if status == 0:
            return
    raise AssertionError(f"{out} did not finish in {attempts} resumed attempts")


def _result(out):
    """What must not depend on interruptions: the history (without timings), weights, metrics."""
    from mobilecls._tf import keras

    with open(os.path.join(out, "history.csv"), encoding="utf-8") as handle:
        history = [{key: value for key, value in row.items() if key != "images_per_sec"}
                   for row in csv.DictReader(handle)]
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    weights = {name: keras.models.load_model(os.path.join(out, name), compile=False).get_weights()
               for name in ("best.keras", "last.keras")}
    leftovers = [name for _, _, names in os.walk(out) for name in names if name.startswith(".mobilecls-")]
    leftovers += [name for name in os.listdir(os.path.dirname(out)) if name.startswith(".")]  # staging folders
    return {"history": history, "metrics": metrics, "weights": weights, "leftovers": leftovers,
            "checkpoints": sorted(os.listdir(os.path.join(out, "checkpoints"))),
            "files": sorted(os.listdir(out))}


def _assert_same_run(resumed, reference):
    assert resumed["leftovers"] == []
    assert resumed["files"] == reference["files"]
    assert resumed["checkpoints"] == reference["checkpoints"] == [f"epoch_{n:03d}.weights.h5"
                                                                   for n in range(1, EPOCHS + 1)]
    assert [row["epoch"] for row in resumed["history"]] == [str(n) for n in range(EPOCHS)]
    for row, expected in zip(resumed["history"], reference["history"], strict=True):
        for key, value in expected.items():
            assert float(row[key]) == pytest.approx(float(value), rel=1e-5, abs=1e-6), key
    for name, weights in reference["weights"].items():
        for got, expected in zip(resumed["weights"][name], weights, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    for key in ("accuracy", "top5", "f1"):
        assert resumed["metrics"]["val"][key] == pytest.approx(reference["metrics"]["val"][key], abs=1e-6)
    assert resumed["metrics"]["val"]["confusion"] == reference["metrics"]["val"]["confusion"]


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """The uninterrupted run, and the names of the files it wrote in order (the kill points)."""
    # Named like the folders of the killed runs ("run"), so that its kill points name their folder too.
    out = str(tmp_path_factory.mktemp("faults") / "run")
    status, written = _attempt(out, images)
    assert status == 0
    return _result(out), written


def _kill_then_resume(out, images, reference, kill_at, mode):
    status, _ = _attempt(out, images, kill_at=kill_at, mode=mode)
    assert status == -signal.SIGKILL, f"not killed at {kill_at}"
    _resume_until_finished(out, images)
    _assert_same_run(_result(out), reference[0])


def _kill_points(written):
    """Each write of a run as (file name, its occurrence among the writes of that name)."""
    return [(name, written[:index + 1].count(name)) for index, name in enumerate(written)]


def test_the_reference_run_writes_every_file_atomically(reference):
    result, written = reference
    # staged folder (recipe, classes, history, manifest, the folder itself), then per epoch a
    # checkpoint, the resume state, maybe best.keras, history and manifest, then the final files
    assert written[:5] == ["recipe.yaml", "classes.json", "history.csv", "state.json", "run"]
    assert written.count("state.json") == 1 + EPOCHS + 1 and written[-1] == "state.json"
    assert written.count("epoch_002.npz") == 1 and "best.keras" in written
    assert {"last.keras", "metrics.json", "curves.png", "confusion.png"} <= set(written)
    assert result["leftovers"] == []
    assert len(_kill_points(written)) >= 20


# Kill points of the short run (make test), each in the next attempt of the same run: counted
# within the attempt, where a resumed attempt first rewrites history.csv and state.json.
SHORT_KILLS = [
    (("chain", 1), "complete"),          # staged folder complete, not yet renamed into place
    (("epoch_001.npz", 1), "partial"),   # epoch 1's resume state half written
    (("history.csv", 2), "complete"),    # epoch 1's best.keras written, its manifest not
    (("state.json", 3), "complete"),     # epoch 2's manifest written, not yet renamed
    (("state.json", 2), "partial"),      # the final manifest (metrics and plots written) half written
]


def test_a_run_killed_at_several_writes_in_a_row_finishes_as_if_never_killed(tmp_path, images, reference):
    out = str(tmp_path / "chain")
    for kill_at, mode in SHORT_KILLS:
        status, _ = _attempt(out, images, kill_at=kill_at, mode=mode)
        assert status == -signal.SIGKILL, f"not killed at {kill_at}"
    _resume_until_finished(out, images)
    _assert_same_run(_result(out), reference[0])


@pytest.mark.slow  # two processes for each of the run's ~25 writes
@pytest.mark.parametrize("mode", ["partial", "complete"])
def test_a_run_killed_at_any_write_resumes_to_the_same_result(tmp_path, images, reference, mode):
    for number, kill_at in enumerate(_kill_points(reference[1])):
        if number % 2 == (mode == "complete"):  # alternate modes: every write once
            _kill_then_resume(str(tmp_path / f"{number}" / "run"), images, reference, kill_at, mode)


@pytest.mark.slow  # up to eight killed processes
def test_a_run_killed_at_random_moments_resumes_to_the_same_result(tmp_path, images, reference):
    delays = random.Random(17)
    out = str(tmp_path / "random")
    kills = 0
    for _ in range(8):
        status, _ = _attempt(out, images, kill_after_s=delays.uniform(0.5, 6.0))
        kills += status == -signal.SIGKILL
        if status == 0:
            break
    _resume_until_finished(out, images)
    assert kills >= 1
    _assert_same_run(_result(out), reference[0])
