"""`fit --strategy`: mirrored over two logical CPU devices, and two multiworker processes on loopback."""

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

FIT = [sys.executable, "-m", "mobilecls.cli", "fit", "--model", "shufflenet_v2", "--set", "model.width=0.5",
       "--set", "schedule.name=constant", "--set", "optimizer.lr=0.02", "--epochs", "1", "--quiet"]


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(**extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def test_mirrored_strategy_trains_on_two_logical_cpu_devices(tmp_path):
    out = tmp_path / "mirrored"
    done = subprocess.run([*FIT, "--strategy", "mirrored", "--out", str(out)], capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["replicas"]) == ("mirrored", 2)
    assert (out / "best.keras").is_file() and metrics["val"]["samples"] == 500


def test_two_multiworker_processes_each_produce_a_model(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    out = tmp_path / "multi"
    workers = [subprocess.Popen([*FIT, "--strategy", "multiworker", "--out", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                                               "task": {"type": "worker", "index": index}})))
               for index in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=900)
        assert worker.returncode == 0, stderr[-2000:]
    for folder in (out, tmp_path / "multi.worker_1"):
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (metrics["strategy"], metrics["replicas"]) == ("multiworker", 2)
        assert (folder / "best.keras").is_file()
