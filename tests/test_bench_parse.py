"""parse_benchmark_output reads both benchmark_model formats (classic TFLite and LiteRT CompiledModel)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobilecls.bench import parse_benchmark_output
from mobilecls.bench.parse import KEYS

CLASSIC_LOG = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [50]
INFO: Num threads: [1]
INFO: Graph: [/data/local/tmp/mobilenet_v2_int8.tflite]
INFO: Enable op profiling: [1]
INFO: Report the peak memory footprint: [1]
INFO: #threads used for CPU inference: [1]
INFO: Loaded model /data/local/tmp/mobilenet_v2_int8.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 3.57776
INFO: Initialized session in 26.73ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=176 first=3401 curr=2795 min=2548 max=3401 avg=2858.33 std=167

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=2801 curr=2650 min=2512 max=3105 avg=2711.94 std=121 p5=2530 median=2690 p95=2990

INFO: Inference timings in us: Init: 26730, First inference: 3401, Warmup (avg): 2858.33, Inference (avg): 2711.94
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the \
actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.75 overall=11.2
INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.3
INFO: Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t ModifyGraphWithDelegate\t   21.403\t   21.403\t 96.245%\t 96.245%\t  3456.000\t        1\tModifyGraphWithDelegate/0
\t         AllocateTensors\t    0.834\t    0.417\t  3.755%\t100.000%\t     0.000\t        2\tAllocateTensors/0

============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t ModifyGraphWithDelegate\t        1\t    21.403\t    96.245%\t    96.245%\t  3456.000\t        1
\t         AllocateTensors\t        1\t     0.834\t     3.755%\t   100.000%\t     0.000\t        2

Timings (microseconds): count=1 curr=22237
Memory (bytes): count=0
2 nodes observed

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t                 CONV_2D\t    0.101\t    0.098\t  4.812%\t  4.812%\t     0.000\t        1\t[conv1]:0

============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t                 CONV_2D\t       34\t     1.234\t    60.1%\t    60.1%\t     0.000\t       34
\t       DEPTHWISE_CONV_2D\t       17\t     0.500\t    24.3%\t    84.4%\t     0.000\t       17
\t                     ADD\t       10\t     0.200\t     9.7%\t    94.1%\t     0.000\t       10
\t         FULLY_CONNECTED\t        1\t     0.100\t     4.9%\t    99.0%\t     0.000\t        1
\t                    MEAN\t        1\t     0.021\t     1.0%\t   100.0%\t     0.000\t        1

Timings (microseconds): count=50 first=2005 curr=2001 min=1990 max=2120 avg=2055 std=30
Memory (bytes): count=0
63 nodes observed
"""

COMPILED_LOG = """\
INFO: [litert_benchmark] Loading model: /data/local/tmp/mobilenet_v2_int8.tflite
INFO: [litert_benchmark] Accelerator: CPU
INFO: [litert_benchmark] Num threads: 4
INFO: [litert_benchmark] Warmup runs: 10, benchmark runs: 50

========== BENCHMARK RESULTS ==========
Model initialization: 25.12 ms
Warmup (first): 3.40 ms
Warmup (avg): 2.86 ms (10 runs)
Inference (avg): 2.71 ms (50 runs)
Inference (min): 2.55 ms
Inference (max): 3.40 ms
Inference (std): 0.17
Peak memory: 12.30 MB
======================================
"""


def test_classic_log_takes_the_summary_line_and_the_timed_runs_count_line():
    result = parse_benchmark_output(CLASSIC_LOG)
    assert set(result) == set(KEYS)
    assert result["init_ms"] == pytest.approx(26.73)
    assert result["first_ms"] == pytest.approx(3.401)
    assert result["warmup_ms"] == pytest.approx(2.85833)
    assert result["mean_ms"] == pytest.approx(2.71194)
    # The timed runs' count= line (not the warm-up's, not the profiler's "Timings (microseconds)").
    assert result["count"] == 50
    assert result["std_ms"] == pytest.approx(0.121)
    assert (result["min_ms"], result["max_ms"]) == (pytest.approx(2.512), pytest.approx(3.105))
    assert (result["p5_ms"], result["p50_ms"], result["p95_ms"]) == (
        pytest.approx(2.53), pytest.approx(2.69), pytest.approx(2.99))
    assert result["peak_memory_mb"] == pytest.approx(12.3)  # periodic monitoring wins over the delta


def test_classic_op_profile_is_the_timed_runs_summary_by_node_type():
    profile = parse_benchmark_output(CLASSIC_LOG)["op_profile"]
    assert profile == [("CONV_2D", 1.234), ("DEPTHWISE_CONV_2D", 0.5), ("ADD", 0.2), ("FULLY_CONNECTED", 0.1),
                       ("MEAN", 0.021)]


def test_classic_log_without_info_prefixes_percentiles_or_op_profiling():
    log = "\n".join(line.removeprefix("INFO: ") for line in CLASSIC_LOG.splitlines()
                    if "Profiling Info" not in line)
    log = log.replace(" p5=2530 median=2690 p95=2990", "").split("============================== Run Order")[0]
    result = parse_benchmark_output(log)
    assert result["mean_ms"] == pytest.approx(2.71194) and result["std_ms"] == pytest.approx(0.121)
    assert result["p50_ms"] is None and result["p5_ms"] is None and result["p95_ms"] is None
    assert result["op_profile"] == []


def test_classic_numbers_in_scientific_notation():
    log = ("INFO: count=3 first=1.5e+06 curr=1.2e+06 min=1.1e+06 max=1.5e+06 avg=1.3e+06 std=180000\n"
           "INFO: count=20 first=1.24e+06 curr=1.2e+06 min=1.19027e+06 max=1.31e+06 avg=1.24027e+06 std=3.5e4\n"
           "INFO: Inference timings in us: Init: 2.6730e+04, First inference: 1.5e+06, Warmup (avg): 1.3e+06, "
           "Inference (avg): 1.24027e+06\n")
    result = parse_benchmark_output(log)
    assert result["init_ms"] == pytest.approx(26.73)
    assert result["mean_ms"] == pytest.approx(1240.27)
    assert result["min_ms"] == pytest.approx(1190.27)
    assert result["std_ms"] == pytest.approx(35.0)
    assert result["count"] == 20


def test_memory_falls_back_to_the_delta_line_and_to_the_older_peak_line():
    without_periodic = "\n".join(line for line in CLASSIC_LOG.splitlines() if "periodic" not in line)
    assert parse_benchmark_output(without_periodic)["peak_memory_mb"] == pytest.approx(11.2)
    older = ("Inference timings in us: Init: 3000, First inference: 900, Warmup (avg): 800, Inference (avg): 700\n"
             "Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE\n"
             "Peak memory footprint (MB): init=3.1 overall=10.5\n")
    result = parse_benchmark_output(older)
    assert result["peak_memory_mb"] == pytest.approx(10.5)
    assert result["count"] is None and result["std_ms"] is None  # no count= line in this log
    no_memory = "Inference timings in us: Init: 3000, First inference: 900, Warmup (avg): 800, Inference (avg): 700"
    assert parse_benchmark_output(no_memory)["peak_memory_mb"] is None


def test_periodic_monitoring_line_alone():
    log = ("INFO: Inference timings in us: Init: 1, First inference: 2, Warmup (avg): 3, Inference (avg): 4\n"
           "INFO: Overall peak memory footprint (MB) via periodic monitoring: 1.5e+01\n")
    assert parse_benchmark_output(log)["peak_memory_mb"] == pytest.approx(15.0)


def test_old_average_inference_timings_line():
    log = ("Initialized session in 0.896ms\n"
           "count=215 first=12231 curr=2106 min=2065 max=12231 avg=2331.42 std=746\n\n"
           "count=459 first=2143 curr=2101 min=2056 max=2656 avg=2177.1 std=124\n\n"
           "Average inference timings in us: Warmup: 2331.42, Init: 896, no stats: 2177.1\n")
    result = parse_benchmark_output(log)
    assert result["mean_ms"] == pytest.approx(2.1771)
    assert result["warmup_ms"] == pytest.approx(2.33142)
    assert result["init_ms"] == pytest.approx(0.896)
    assert result["first_ms"] == pytest.approx(12.231)  # the warm-up's first run
    assert result["count"] == 459 and result["max_ms"] == pytest.approx(2.656)


def test_compiled_model_log():
    result = parse_benchmark_output(COMPILED_LOG)
    assert set(result) == set(KEYS)
    assert result["init_ms"] == pytest.approx(25.12)
    assert result["first_ms"] == pytest.approx(3.40)
    assert result["warmup_ms"] == pytest.approx(2.86)
    assert result["mean_ms"] == pytest.approx(2.71)
    assert result["count"] == 50
    assert (result["min_ms"], result["max_ms"], result["std_ms"]) == (
        pytest.approx(2.55), pytest.approx(3.40), pytest.approx(0.17))
    assert result["peak_memory_mb"] == pytest.approx(12.3)
    assert result["p50_ms"] is None and result["op_profile"] == []


def test_compiled_model_variations_extra_spaces_missing_lines_and_units():
    log = ("==========  BENCHMARK RESULTS  ==========\n"
           "INFO:   Model initialization :  25.12ms\n"
           "  Inference (avg):   2710 us   ( 50 runs)\n"
           "Inference (median): 2.5\n"
           "Peak memory: 2048 KB\n")
    result = parse_benchmark_output(log)
    assert result["init_ms"] == pytest.approx(25.12)
    assert result["mean_ms"] == pytest.approx(2.71)
    assert result["p50_ms"] == pytest.approx(2.5)
    assert result["peak_memory_mb"] == pytest.approx(2.0)
    assert result["count"] == 50
    assert result["first_ms"] is None and result["std_ms"] is None and result["max_ms"] is None


def test_bytes_are_decoded():
    assert parse_benchmark_output(COMPILED_LOG.encode())["mean_ms"] == pytest.approx(2.71)


def test_missing_timing_line_raises_with_the_tail_of_the_output():
    log = ("INFO: STARTING!\nINFO: Graph: [/data/local/tmp/missing.tflite]\n"
           "ERROR: Could not open '/data/local/tmp/missing.tflite'.\n"
           "ERROR: Failed to mmap model /data/local/tmp/missing.tflite\n"
           "ERROR: Benchmarking failed.\n\n")
    with pytest.raises(ValueError, match="no timing line in benchmark_model output; last lines: ") as caught:
        parse_benchmark_output(log)
    message = str(caught.value)
    assert "Could not open" in message and "Failed to mmap" in message and "Benchmarking failed." in message
    assert "STARTING" not in message
    with pytest.raises(ValueError, match=r"\(empty output\)"):
        parse_benchmark_output("")


# --- property tests: random numbers rendered into each format come back out ---------------------------------

TIME = st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False)
# repr, C++ ostream's default (%g, 6 digits; gives 1.24027e+06), fixed, and forced scientific notation.
STYLE = st.sampled_from(["r", "g", ".9g", "f", ".4e", "E"])


def render(value, style):
    return repr(value) if style == "r" else format(value, style)


def rendered(value, style):
    """The number a reader of the rendered text sees (formatting may round)."""
    return float(render(value, style))


@settings(max_examples=60, deadline=None)
@given(times=st.lists(TIME, min_size=11, max_size=11), runs=st.integers(1, 10**6), memory=TIME,
       style=STYLE, prefix=st.sampled_from(["", "INFO: ", "  INFO:  "]))
def test_classic_format_round_trips(times, runs, memory, style, prefix):
    init, first, warm, mean, std, low, high, p5, median, p95, warm_std = (render(t, style) for t in times)
    lines = [f"count={runs + 1} first={first} curr={warm} min={low} max={high} avg={warm} std={warm_std}",
             f"count={runs} first={first} curr={mean} min={low} max={high} avg={mean} std={std} "
             f"p5={p5} median={median} p95={p95}",
             f"Inference timings in us: Init: {init}, First inference: {first}, Warmup (avg): {warm}, "
             f"Inference (avg): {mean}",
             f"Memory footprint delta from the start of the tool (MB): init=1 overall={render(memory, style)}"]
    result = parse_benchmark_output("\n".join(prefix + line for line in lines) + "\n")
    expected = [rendered(t, style) / 1e3 for t in times]
    keys = ["init_ms", "first_ms", "warmup_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "p5_ms", "p50_ms",
            "p95_ms"]
    assert [result[key] for key in keys] == pytest.approx(expected[:10], rel=1e-12)
    assert result["count"] == runs
    assert result["peak_memory_mb"] == pytest.approx(rendered(memory, style), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(times=st.lists(TIME, min_size=7, max_size=7), runs=st.integers(1, 10**6), memory=TIME, style=STYLE,
       prefix=st.sampled_from(["", "INFO: "]), space=st.sampled_from(["", " ", "  "]))
def test_compiled_model_format_round_trips(times, runs, memory, style, prefix, space):
    init, first, warm, mean, low, high, std = (render(t, style) for t in times)
    lines = ["========== BENCHMARK RESULTS ==========",
             f"Model initialization:{space} {init} ms", f"Warmup (first): {first}{space} ms",
             f"Warmup (avg): {warm} ms (10 runs)", f"Inference (avg): {mean} ms{space} ({runs} runs)",
             f"Inference (min): {low} ms", f"Inference (max): {high}", f"Inference (std): {std}",
             f"Peak memory: {render(memory, style)} MB", "======================================"]
    result = parse_benchmark_output("\n".join(prefix + line for line in lines) + "\n")
    keys = ["init_ms", "first_ms", "warmup_ms", "mean_ms", "min_ms", "max_ms", "std_ms"]
    assert [result[key] for key in keys] == pytest.approx([rendered(t, style) for t in times], rel=1e-12)
    assert result["count"] == runs
    assert result["peak_memory_mb"] == pytest.approx(rendered(memory, style), rel=1e-12)
