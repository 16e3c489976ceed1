"""`report`: eval and bench results -> a Markdown table in the study's terms and a Pareto plot."""

import json
import os

FAMILY_COLOURS = {"mobilenet": "tab:blue", "shufflenet": "tab:orange"}


def _family(name):
    return next((family for family in FAMILY_COLOURS if family in name.lower()), "other")


def load_results(paths):
    """Split result files into eval metrics (dicts with 'accuracy') and bench rows (lists).

    Raises:
        FileNotFoundError / ValueError: a missing file, or JSON that is neither kind.
    """
    evals, benches = {}, []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"result file not found: {path}")
        with open(path, encoding="utf-8") as handle:
            try:
                values = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not JSON ({error.msg} at line {error.lineno})") from None
        if isinstance(values, dict) and "accuracy" in values and "model" in values:
            _check_numbers(path, values, ("accuracy", "recall", "f1", "top5", "size_bytes"))
            evals[os.path.basename(values["model"])] = values
        elif isinstance(values, list) and all(isinstance(row, dict) and "p50_ms" in row for row in values):
            for row in values:
                _check_numbers(path, row, ("p50_ms", "size_bytes", "gzip_bytes"))
            benches.extend(values)
        else:
            raise ValueError(f"{path} is neither a `mobilecls eval --json` nor a `mobilecls bench --json` file")
    return evals, benches


def _check_numbers(path, values, keys):
    """The table formats these as numbers: refuse a file where one is anything else."""
    for key in keys:
        value = values.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{path}: {key} must be a number, got {value!r}")


def build_rows(evals, benches):
    """One row per model: accuracy terms, sizes, and p50 latency per (device, threads)."""
    names = sorted(set(evals) | {os.path.basename(row["model"]) for row in benches})
    columns = sorted({(row["device"], int(row["threads"])) for row in benches})
    rows = []
    for name in names:
        metrics = evals.get(name, {})
        timings = {(row["device"], int(row["threads"])): row for row in benches
                   if os.path.basename(row["model"]) == name}
        any_timing = next(iter(timings.values()), {})
        rows.append({"model": name, "family": _family(name), "accuracy": metrics.get("accuracy"),
                     "recall": metrics.get("recall"), "f1": metrics.get("f1"), "top5": metrics.get("top5"),
                     "size_bytes": metrics.get("size_bytes", any_timing.get("size_bytes")),
                     "gzip_bytes": any_timing.get("gzip_bytes"),
                     "p50_ms": {column: timings[column]["p50_ms"] for column in timings}})
    return rows, columns


def _cell(value, spec):
    return "–" if value is None else format(value, spec)


def markdown_table(rows, columns):
    """The table: accuracy, recall, F1, top-5, size, gzip size, p50 latency per device/threads."""
    latency = [f"p50 ms {device} ×{threads}" for device, threads in columns]
    header = ["model", "accuracy", "recall", "F1", "top-5", "size MB", "gzip MB", *latency]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        size = None if row["size_bytes"] is None else row["size_bytes"] / 1e6
        gzip = None if row["gzip_bytes"] is None else row["gzip_bytes"] / 1e6
        cells = [row["model"], _cell(row["accuracy"], ".4f"), _cell(row["recall"], ".4f"), _cell(row["f1"], ".4f"),
                 _cell(row["top5"], ".4f"), _cell(size, ".2f"), _cell(gzip, ".2f"),
                 *(_cell(row["p50_ms"].get(column), ".3f") for column in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pareto_plot(rows, columns, path):
    """Accuracy against p50 latency (first device/thread column), marker area by file size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = columns[0] if columns else None
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for row in rows:
        if column is None or row["accuracy"] is None or column not in row["p50_ms"]:
            continue
        area = 30 + 400 * (row["size_bytes"] or 0) / max(r["size_bytes"] or 1 for r in rows)
        axis.scatter(row["p50_ms"][column], row["accuracy"], s=area, alpha=0.6,
                     color=FAMILY_COLOURS.get(row["family"], "tab:gray"), label=row["family"])
        axis.annotate(row["model"], (row["p50_ms"][column], row["accuracy"]), fontsize=7)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        axis.legend(unique.values(), unique.keys())
    device, threads = column or ("?", 0)
    axis.set_xlabel(f"p50 latency (ms), {device}, {threads} thread(s)")
    axis.set_ylabel("accuracy")
    axis.grid(alpha=0.3)
    temporary = f"{path}.tmp.png"
    figure.savefig(temporary, dpi=120, bbox_inches="tight")
    plt.close(figure)
    os.replace(temporary, path)


def report(paths, out_dir):
    """Write ``table.md`` and ``pareto.png`` into ``out_dir``; returns the table text."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"-o/--out {out_dir} is a file; give a folder for table.md and pareto.png")
    evals, benches = load_results(paths)
    rows, columns = build_rows(evals, benches)
    table = markdown_table(rows, columns)
    os.makedirs(out_dir, exist_ok=True)  # only now: a bad input file leaves no empty folder
    temporary = os.path.join(out_dir, "table.md.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(table)
    os.replace(temporary, os.path.join(out_dir, "table.md"))
    pareto_plot(rows, columns, os.path.join(out_dir, "pareto.png"))
    return table
