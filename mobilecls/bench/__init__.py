"""Latency benchmarks of .tflite files: on this machine (``bench_host``) or parsed from the
TFLite / LiteRT ``benchmark_model`` tool's output (``parse_benchmark_output``), both reported as
``BenchResult`` records that write to JSON and CSV.
"""

from mobilecls.bench.host import bench_host
from mobilecls.bench.parse import parse_benchmark_output
from mobilecls.bench.result import BenchResult

__all__ = ["BenchResult", "bench_host", "parse_benchmark_output"]
