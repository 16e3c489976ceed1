"""`report`: eval and bench results -> a Markdown table in the study's terms and a Pareto plot."""

import json
import os

from mobilecls.files import replacing, write_atomically

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


def pareto_front(points):
    """Indices of the points no other point beats: none is as fast and at least as accurate,
    with one of the two strictly better. ``points`` are (latency, accuracy); sorted by latency."""
    front = []
    for index in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        if not front or points[index][1] > points[front[-1]][1]:
            front.append(index)
    return front


def point_labels(points, closeness=0.02):
    """[(point, "1, 2"), ...]: the 1-based numbers of the files at each (latency, accuracy)
    point, files closer than ``closeness`` of each axis' span sharing one label (fp32 and fp16 of
    one model sit at the same point), so that no two labels are printed over each other."""
    spans = [max(values) - min(values) or 1.0 for values in zip(*points, strict=True)] if points else [1.0, 1.0]
    groups = []
    for number, point in enumerate(points, start=1):
        group = next((g for g in groups if all(abs(a - b) <= closeness * span
                                               for a, b, span in zip(g[0], point, spans, strict=True))), None)
        if group is None:
            groups.append((point, [str(number)]))
        else:
            group[1].append(str(number))
    return [(point, ", ".join(numbers)) for point, numbers in groups]


def pareto_plot(rows, columns, path):
    """Accuracy against p50 latency (first device/thread column), marker area by file size.

    Each file is a numbered marker, its name in the numbered list beside the axes (files at the
    same point, such as fp32 and fp16, share one label "1, 2"); the Pareto front is a line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = columns[0] if columns else None
    shown = [row for row in rows if column is not None and row["accuracy"] is not None and column in row["p50_ms"]]
    points = [(row["p50_ms"][column], row["accuracy"]) for row in shown]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    largest = max((row["size_bytes"] or 0 for row in shown), default=0) or 1
    for row, point in zip(shown, points, strict=True):
        axis.scatter(*point, s=30 + 300 * (row["size_bytes"] or 0) / largest, alpha=0.6,
                     color=FAMILY_COLOURS.get(row["family"], "tab:gray"), label=row["family"])
    for (x, y), label in point_labels(points):
        axis.annotate(label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    front = pareto_front(points)
    if len(front) > 1:
        axis.step([points[i][0] for i in front], [points[i][1] for i in front], where="post",
                  color="black", linewidth=1, alpha=0.7, label="Pareto front")
    handles, names = axis.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    if unique:
        axis.legend(unique.values(), unique.keys(), loc="lower right", fontsize=8)
    axis.margins(0.12)  # room for the numbers next to the outermost markers
    listing = "\n".join(f"{number}  {row['model']}" for number, row in enumerate(shown, start=1))
    figure.text(0.70, 0.5, listing, fontsize=7, va="center", family="monospace")
    figure.subplots_adjust(right=0.68)
    device, threads = column or ("?", 0)
    axis.set_xlabel(f"p50 latency (ms), {device}, {threads} thread(s)")
    axis.set_ylabel("accuracy")
    axis.grid(alpha=0.3)
    with replacing(path) as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)


def report(paths, out_dir):
    """Write ``table.md`` and ``pareto.png`` into ``out_dir``; returns the table text."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"-o/--out {out_dir} is a file; give a folder for table.md and pareto.png")
    evals, benches = load_results(paths)
    rows, columns = build_rows(evals, benches)
    table = markdown_table(rows, columns)
    os.makedirs(out_dir, exist_ok=True)  # only now: a bad input file leaves no empty folder
    write_atomically(os.path.join(out_dir, "table.md"), table)
    pareto_plot(rows, columns, os.path.join(out_dir, "pareto.png"))
    return table
