"""Latency of .tflite files on this machine, through the LiteRT Python interpreter (XNNPACK on)."""

import numbers
import os
import platform
import time

import numpy as np

from mobilecls.bench.result import BenchResult
from mobilecls.files import gzip_size, read_tflite


def bench_host(paths, threads=(1,), runs=50, warmup=5, min_seconds=0.0, interleave=True):
    """Benchmark each .tflite file in ``paths`` with each thread count in ``threads``.

    Per thread count, every model gets its own LiteRT interpreter (XNNPACK, the default
    delegate). Construction + ``allocate_tensors`` (where XNNPACK packs the weights) is
    ``init_ms``; the first invoke (cold caches, one-off buffers) is ``first_ms``; then come
    ``warmup`` invokes whose mean is ``warmup_ms`` and which the statistics leave out. The
    timed invokes run round-robin across the models when ``interleave`` (so drift of the
    machine - clocks, heat, other load - hits all models alike), each model in one block
    otherwise. Inputs are zeros of each input's shape and dtype.

    ``peak_memory_mb`` is approximate: the rise of the process's peak RSS over interpreter
    creation + first invoke (Linux: the peak mark is reset through /proc/self/clear_refs; elsewhere
    the RSS difference via psutil). Python and allocator caching blur it by a few MB.
    ``op_profile`` stays empty: LiteRT's Python API exposes no per-op timing (use
    ``benchmark_model --enable_op_profiling`` for that). Times include the few microseconds of
    Python call overhead per invoke.

    Args:
        paths: .tflite file paths (or one path).
        threads: interpreter thread counts (or one count), each >= 1.
        runs: timed invokes per model, at least.
        warmup: untimed invokes per model before the timed ones.
        min_seconds: each model also runs until its timed invokes add up to this.
        interleave: round-robin the timed invokes across the models.

    Returns:
        One BenchResult per (thread count, model), thread counts outermost, device "host".

    Raises:
        FileNotFoundError: a path is not a file.
        ValueError: a file is not a TFLite model, or an argument is out of range.
    """
    paths = [os.fspath(path) for path in ([paths] if isinstance(paths, str | os.PathLike) else paths)]
    threads = (threads,) if isinstance(threads, numbers.Integral) else tuple(threads)
    _check_arguments(paths, threads, runs, warmup, min_seconds)
    contents = [read_tflite(path) for path in paths]
    extra = _host_info(interleave, warmup, min_seconds)
    results = []
    for count in threads:
        sessions = [_Session(path, content, int(count)) for path, content in zip(paths, contents, strict=True)]
        if interleave:
            warmups = [session.warm_up(warmup) for session in sessions]
            samples = _time_round_robin([session.invoke for session in sessions], runs, min_seconds)
        else:
            warmups, samples = [], []
            for session in sessions:
                warmups.append(session.warm_up(warmup))
                samples.extend(_time_round_robin([session.invoke], runs, min_seconds))
        for path, content, session, warm, times in zip(paths, contents, sessions, warmups, samples, strict=True):
            results.append(BenchResult.from_samples(
                path, "host", count, times, session.init_ms, session.first_ms, warm, len(content),
                gzip_size(content), session.peak_memory_mb, extra=extra))
        del sessions  # free this thread count's interpreters before the next one's are made
    return results


def _check_arguments(paths, threads, runs, warmup, min_seconds):
    if not paths:
        raise ValueError("paths must name at least one .tflite file, got none")
    if not threads or any(not isinstance(count, numbers.Integral) or count < 1 for count in threads):
        raise ValueError(f"threads must be integers >= 1, got {threads!r}")
    if not isinstance(runs, numbers.Integral) or runs < 1:
        raise ValueError(f"runs must be an integer >= 1, got {runs!r}")
    if not isinstance(warmup, numbers.Integral) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not min_seconds >= 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds!r}")



def _host_info(interleave, warmup, min_seconds):
    from importlib import metadata

    try:
        runtime = f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    except metadata.PackageNotFoundError:
        runtime = "unknown"
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "runtime": runtime, "interleaved": bool(interleave), "warmup_runs": int(warmup),
            "min_seconds": float(min_seconds)}


class _Session:
    """One interpreter of one model, with its start-up costs measured."""

    def __init__(self, path, content, threads):
        from mobilecls._tf import Interpreter  # imported before any measurement: TF's import is slow and large

        memory = _MemoryProbe()
        started = time.perf_counter()
        try:
            self.interpreter = Interpreter(model_content=content, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{path}: the LiteRT interpreter cannot load it: {error}") from None
        self.init_ms = (time.perf_counter() - started) * 1e3
        for source in self.interpreter.get_input_details():
            self.interpreter.set_tensor(source["index"], np.zeros(source["shape"], source["dtype"]))
        started = time.perf_counter()
        self.interpreter.invoke()
        self.first_ms = (time.perf_counter() - started) * 1e3
        self.peak_memory_mb = memory.increase_mb()
        self.invoke = self.interpreter.invoke

    def warm_up(self, count):
        """Run ``count`` warm-up invokes (kept out of the statistics); their mean in ms, None for none."""
        times = []
        for _ in range(count):
            started = time.perf_counter()
            self.invoke()
            times.append((time.perf_counter() - started) * 1e3)
        return float(np.mean(times)) if times else None


def _time_round_robin(invokes, runs, min_seconds):
    """Times (ms) of each of ``invokes``, called in turn, until each has ``runs`` of them adding
    up to ``min_seconds`` or more.

    Every model stays in the rotation until all are done, so all get the same number of samples
    and the interleaving holds to the end.
    """
    samples = [[] for _ in invokes]
    totals = [0.0] * len(invokes)
    while len(samples[0]) < runs or min(totals) < min_seconds:
        for index, invoke in enumerate(invokes):
            started = time.perf_counter()
            invoke()
            elapsed = time.perf_counter() - started
            samples[index].append(elapsed * 1e3)
            totals[index] += elapsed
    return samples


class _MemoryProbe:
    """The rise of peak RSS from its creation to ``increase_mb()``."""

    def __init__(self):
        self.start_kb = _rss_kb()
        self.peak_reset = _reset_peak_rss()

    def increase_mb(self):
        end_kb = _status_kb("VmHWM") if self.peak_reset else None
        if end_kb is None:
            end_kb = _rss_kb()
        return max(end_kb - self.start_kb, 0) / 1024


def _reset_peak_rss():
    # Writing 5 to clear_refs sets the peak (VmHWM) back to the current RSS (Linux >= 4.0), so the
    # next VmHWM is the peak of what follows, not of the process's past (TF's import, other models).
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_kb(field):
    """A kB field of /proc/self/status (VmRSS, VmHWM), or None where there is none."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_kb():
    kb = _status_kb("VmRSS")
    if kb is None:
        import psutil

        kb = psutil.Process().memory_info().rss // 1024
    return kb
