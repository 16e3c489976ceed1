"""Read the text printed by the TFLite / LiteRT ``benchmark_model`` tools.

Two formats exist. The classic TFLite tool (Interpreter based) logs microseconds: an
``Inference timings in us:`` line, a ``count=... avg=... std=...`` line after the warm-up and
another after the timed runs, memory lines and, with ``--enable_op_profiling``, profile tables.
The newer LiteRT CompiledModel tool prints a ``BENCHMARK RESULTS`` block in milliseconds.
Both become the same dict of milliseconds.
"""

import re

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# The tool prefixes log lines with "INFO: " (all of them in newer builds, some in older ones).
_LINE_START = r"^[ \t]*(?:INFO:[ \t]*)?"

KEYS = ("init_ms", "first_ms", "warmup_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p5_ms", "p95_ms",
        "count", "peak_memory_mb", "op_profile")


def parse_benchmark_output(text):
    """The timings, memory and op profile in a ``benchmark_model`` log, classic or CompiledModel.

    Args:
        text: the tool's stdout/stderr (str, or bytes decoded as UTF-8).

    Returns:
        A dict with the keys of ``KEYS``: times in milliseconds (None when the log does not
        give them), ``count`` the number of timed runs, ``peak_memory_mb`` (classic tool: the
        periodic-monitoring peak when it was asked for, else the overall footprint delta from the
        tool's start) and ``op_profile``, a list of (node type, avg ms) from the last "Summary by
        node type" table (the timed runs' one; empty without op profiling).

    Raises:
        ValueError: neither format's timing line is in ``text`` (the message quotes its last lines).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    values = _classic_timings(text) or _compiled_model_timings(text)
    if values is None:
        tail = [line.strip() for line in text.splitlines() if line.strip()][-3:]
        raise ValueError("no timing line in benchmark_model output; last lines: "
                         + (" | ".join(tail) if tail else "(empty output)"))
    result = dict.fromkeys(KEYS)
    result.update(values)
    result["peak_memory_mb"] = _peak_memory_mb(text)
    result["op_profile"] = _op_profile(text)
    return result


# Labels of the classic summary line, current ("Init: .., First inference: .., Warmup (avg): ..,
# Inference (avg): ..") and old ("Average inference timings in us: Warmup: .., Init: .., no stats: ..").
_CLASSIC_LABELS = {"init": "init_ms", "first inference": "first_ms", "warmup (avg)": "warmup_ms",
                   "warmup": "warmup_ms", "inference (avg)": "mean_ms", "inference": "mean_ms",
                   "no stats": "mean_ms"}


def _classic_timings(text):
    lines = re.findall(r"inference timings in us:(.*)$", text, re.IGNORECASE | re.MULTILINE)
    if not lines:
        return None
    values = {}
    for label, number in re.findall(rf"([A-Za-z][A-Za-z ()]*?)\s*:\s*({_NUMBER})", lines[-1]):
        key = _CLASSIC_LABELS.get(label.strip().lower())
        if key:
            values[key] = float(number) / 1e3
    if "mean_ms" not in values:
        return None
    runs = _run_stats(text)
    if runs:
        # The last count= line is the timed runs' one (the first is the warm-up's).
        timed = runs[-1]
        values.update({key: timed[name] / 1e3 for name, key in _STAT_NAMES.items() if name in timed})
        if "count" in timed:
            values["count"] = int(timed["count"])
        if "first_ms" not in values and len(runs) > 1 and "first" in runs[0]:
            values["first_ms"] = runs[0]["first"] / 1e3  # old logs: the warm-up's first run
    return values


_STAT_NAMES = {"std": "std_ms", "min": "min_ms", "max": "max_ms", "median": "p50_ms", "p5": "p5_ms",
               "p95": "p95_ms"}


def _run_stats(text):
    """The key=value numbers of each ``count=... first=... avg=... std=...`` line, in order.

    Anchored at the start of the line: the op profiler's "Timings (microseconds): count=..."
    lines sum op times and must not be taken for the timed runs.
    """
    lines = re.findall(rf"{_LINE_START}(count=\d.*)$", text, re.MULTILINE)
    return [{key: float(number) for key, number in re.findall(rf"(\w+)=({_NUMBER})", line)} for line in lines]


_COMPILED_LABELS = {"init_ms": r"Model initialization", "first_ms": r"Warmup \(first\)",
                    "warmup_ms": r"Warmup \(avg\)", "mean_ms": r"Inference \(avg\)", "min_ms": r"Inference \(min\)",
                    "max_ms": r"Inference \(max\)", "std_ms": r"Inference \(std\)",
                    "p50_ms": r"Inference \((?:p50|median)\)", "p5_ms": r"Inference \(p5\)",
                    "p95_ms": r"Inference \(p95\)"}
_MS_PER_UNIT = {"": 1.0, "ms": 1.0, "us": 1e-3, "s": 1e3}


def _compiled_model_timings(text):
    values = {}
    for key, label in _COMPILED_LABELS.items():
        found = _compiled_line(text, label)
        if found:
            values[key], rest = found
            runs = re.search(r"\(\s*(\d+)\s+runs?\s*\)", rest)
            if key == "mean_ms" and runs:
                values["count"] = int(runs.group(1))
    return values if "mean_ms" in values else None


def _compiled_line(text, label):
    """(value in ms, rest of the line) of the last ``label: value [unit] ...`` line, or None."""
    pattern = rf"{_LINE_START}{label}[ \t]*:[ \t]*({_NUMBER})[ \t]*(ms|us|s)?\b(.*)$"
    matches = re.findall(pattern, text, re.MULTILINE | re.IGNORECASE)
    if not matches:
        return None
    number, unit, rest = matches[-1]
    return float(number) * _MS_PER_UNIT[unit.lower()], rest


_MB_PER_UNIT = {"": 1.0, "kb": 1 / 1024, "mb": 1.0, "gb": 1024.0}


def _peak_memory_mb(text):
    periodic = re.findall(rf"peak memory footprint \(MB\) via periodic monitoring:\s*({_NUMBER})", text,
                          re.IGNORECASE)
    if periodic:
        return float(periodic[-1])
    # "Memory footprint delta from the start of the tool" (current), "Peak memory footprint" (older).
    delta = re.findall(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
                       rf"\s*init=({_NUMBER})\s+overall=({_NUMBER})", text)
    if delta:
        return float(delta[-1][1])
    compiled = re.findall(rf"{_LINE_START}Peak memory[ \t]*:[ \t]*({_NUMBER})[ \t]*(KB|MB|GB)?", text,
                          re.MULTILINE | re.IGNORECASE)
    if compiled:
        number, unit = compiled[-1]
        return float(number) * _MB_PER_UNIT[unit.lower()]
    return None


_NODE_ROW = re.compile(rf"{_LINE_START}(\S.*?)\s+(\d+)\s+({_NUMBER})\s+{_NUMBER}%")


def _op_profile(text):
    """(node type, avg ms) rows of the last "Summary by node type" table.

    The last table is the timed runs' one; an earlier one profiles initialization.
    """
    tables = re.split(r"=+ Summary by node type =+", text)
    if len(tables) < 2:
        return []
    profile = []
    for line in tables[-1].splitlines():
        row = _NODE_ROW.match(line)
        if row:
            profile.append((row.group(1), float(row.group(3))))
        elif profile:
            break  # the blank line that ends the table
    return profile
