"""bench_host times .tflite files with the LiteRT interpreter; BenchResult files round-trip."""

import os

import numpy as np
import pytest

from mobilecls.bench import BenchResult, bench_host
from mobilecls.bench import host as host_module
from mobilecls.bench.result import read_csv, read_json, write_csv, write_json


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    """A tiny MobileNetV2 as fp32 and as full-int8 .tflite files."""
    from mobilecls.export.convert import to_tflite
    from mobilecls.models import build_model

    folder = tmp_path_factory.mktemp("bench")
    model = build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=10)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    paths = []
    for name, content in (("fp32.tflite", to_tflite(model, "fp32")),
                          ("int8.tflite", to_tflite(model, "int8", calibration=[images], io="int8"))):
        path = folder / name
        path.write_bytes(content)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def results(tflite_files):
    return bench_host(tflite_files, threads=(1, 2), runs=10, warmup=2)


def test_one_result_per_model_and_thread_count_thread_counts_outermost(results, tflite_files):
    assert [(r.model, r.threads) for r in results] == [
        (tflite_files[0], 1), (tflite_files[1], 1), (tflite_files[0], 2), (tflite_files[1], 2)]
    assert all(r.device == "host" and r.runs == 10 for r in results)


def test_statistics_are_ordered_and_positive(results):
    for r in results:
        assert 0 < r.min_ms <= r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
        assert r.min_ms <= r.mean_ms <= r.max_ms and r.std_ms >= 0
        assert r.init_ms > 0 and r.first_ms > 0 and r.warmup_ms > 0
        assert r.peak_memory_mb is not None and r.peak_memory_mb >= 0
        assert r.op_profile == ()  # the Python API has no per-op timing
        assert r.extra["interleaved"] is True and r.extra["warmup_runs"] == 2


def test_sizes_are_the_files_and_gzip_is_smaller(results):
    for r in results:
        assert r.size_bytes == os.path.getsize(r.model)
        assert 0 < r.gzip_bytes < r.size_bytes
    fp32, int8 = results[:2]
    assert int8.size_bytes < fp32.size_bytes


def test_sequential_mode_and_single_arguments(tflite_files):
    (result,) = bench_host(tflite_files[1], threads=1, runs=3, warmup=0, interleave=False)
    assert result.runs == 3 and result.threads == 1 and result.warmup_ms is None
    assert result.extra["interleaved"] is False


def test_round_robin_interleaves_and_honours_min_seconds(monkeypatch):
    calls = []
    invokes = [lambda: calls.append("a"), lambda: calls.append("b")]
    samples = host_module._time_round_robin(invokes, runs=3, min_seconds=0.0)
    assert calls == ["a", "b"] * 3 and [len(s) for s in samples] == [3, 3]
    clock = iter(np.arange(0, 100, 0.25))  # every invoke takes 0.25 s on this clock
    monkeypatch.setattr(host_module.time, "perf_counter", lambda: float(next(clock)))
    samples = host_module._time_round_robin(invokes, runs=1, min_seconds=1.0)
    assert [len(s) for s in samples] == [4, 4]
    assert samples[0] == pytest.approx([250.0] * 4)


def test_json_and_csv_round_trip_atomically(results, tmp_path):
    json_path, csv_path = tmp_path / "bench.json", tmp_path / "bench.csv"
    for _ in range(2):  # the second write replaces the first
        write_json(json_path, results)
        write_csv(csv_path, results)
    assert read_json(json_path) == results
    assert read_csv(csv_path) == results
    assert sorted(os.listdir(tmp_path)) == ["bench.csv", "bench.json"]  # no temporary files left


def test_csv_keeps_unknown_values_op_profile_and_extra(tmp_path):
    device = BenchResult(model="m.tflite", device="R58M12ABCDE", threads=4, runs=50, init_ms=25.1, first_ms=3.4,
                         warmup_ms=None, mean_ms=2.71, std_ms=0.17, min_ms=2.55, max_ms=3.4, p50_ms=None,
                         p90_ms=None, p99_ms=None, size_bytes=None, gzip_bytes=None, peak_memory_mb=None,
                         op_profile=[["CONV_2D", 1.234], ("ADD", 0.2)], extra={"soc": "SM8550", "cores": [4, 3, 1]})
    write_csv(tmp_path / "device.csv", [device])
    write_json(tmp_path / "device.json", [device])
    assert read_csv(tmp_path / "device.csv") == [device] == read_json(tmp_path / "device.json")
    assert device.op_profile == (("CONV_2D", 1.234), ("ADD", 0.2))
    assert "R58M12ABCDE" in device.summary_line() and "p90 -" in device.summary_line()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(results, tmp_path, monkeypatch):
    path = tmp_path / "bench.json"
    path.write_text("old", encoding="utf-8")

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, results)
    assert os.listdir(tmp_path) == ["bench.json"] and path.read_text(encoding="utf-8") == "old"


def test_from_samples_and_from_dict():
    result = BenchResult.from_samples("a.tflite", "host", 1, [3.0, 1.0, 2.0, 4.0], 10.0, 5.0, None, 100, 80)
    assert (result.runs, result.mean_ms, result.min_ms, result.max_ms) == (4, 2.5, 1.0, 4.0)
    assert result.std_ms == pytest.approx(np.std([1, 2, 3, 4]))
    assert result.p50_ms == pytest.approx(2.5) and result.p99_ms == pytest.approx(3.97)
    assert "a.tflite on host, 1 thread: mean 2.500 ms" in result.summary_line()
    with pytest.raises(ValueError, match="at least one time"):
        BenchResult.from_samples("a.tflite", "host", 1, [], 10.0, 5.0, None, 100, 80)
    with pytest.raises(ValueError, match="unknown BenchResult fields: colour"):
        BenchResult.from_dict({**result.to_dict(), "colour": "red"})
    values = result.to_dict()
    del values["mean_ms"]
    with pytest.raises(ValueError, match="fields missing: mean_ms"):
        BenchResult.from_dict(values)


def test_errors_name_the_argument(tflite_files, tmp_path):
    missing = str(tmp_path / "missing.tflite")
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        bench_host([tflite_files[0], missing])
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_bytes(b"these are not the flatbuffers you are looking for")
    with pytest.raises(ValueError, match="notes.tflite is not a TFLite file"):
        bench_host([not_a_model])
    with pytest.raises(ValueError, match="threads must be integers >= 1, got \\(0,\\)"):
        bench_host(tflite_files, threads=(0,))
    with pytest.raises(ValueError, match="runs must be an integer >= 1, got 0"):
        bench_host(tflite_files, runs=0)
    with pytest.raises(ValueError, match="paths must name at least one"):
        bench_host([])
