"""The study's Tables I and II and Fig. 3, from the runs' eval and bench JSON files.

A study file (YAML or JSON) names, for each of the study's four models, the runs trained for it
(one per seed) and each run's files:

    members:
      mobilenet_v1:                    # one of MEMBERS
        build: {width: 0.25, input_size: 32, num_classes: 10, separable: true}
        runs:
          - seed: 0
            float: ../runs/mnv1_s0/eval/fp32.json      # mobilecls eval --json of the fp32 file
            int8: ../runs/mnv1_s0/eval/int8_qat.json   # ... of the int8 file
            bench: ../runs/mnv1_s0/bench.json          # mobilecls bench --json (times the int8 file)
            metrics: ../runs/mnv1_s0/metrics.json      # optional: fit wall time

Paths are relative to the study file. A member may be missing (its rows say "not run"). Within
an ablation pair the build keywords must be the same but for the switch. A study in progress
can name runs not made yet: ``partial=True`` (``mobilecls study --partial``) leaves out every run
whose files do not exist yet, and the report lists them.
"""

import io
import json
import math
import os

import yaml

from mobilecls.files import write_atomically

MEMBERS = ("mobilenet_v1", "mobilenet_v1_standard_conv", "shufflenet_v1", "shufflenet_v1_noshuffle")
_MODEL = {"mobilenet_v1": "mobilenet_v1", "mobilenet_v1_standard_conv": "mobilenet_v1",
          "shufflenet_v1": "shufflenet_v1", "shufflenet_v1_noshuffle": "shufflenet_v1"}
# The switch of each member and the value it must have.
_SWITCH = {"mobilenet_v1": ("separable", True), "mobilenet_v1_standard_conv": ("separable", False),
           "shufflenet_v1": ("shuffle", True), "shufflenet_v1_noshuffle": ("shuffle", False)}
_DEFAULTS = {"separable": True, "shuffle": True}
# The study's figures (%, CIFAR-10 test split); None where it reports none.
STUDY = {"mobilenet_v1": {"accuracy": 88.5, "recall": 87.8, "f1": 88.1},
         "mobilenet_v1_standard_conv": {"accuracy": 82.3, "recall": None, "f1": None},
         "shufflenet_v1": {"accuracy": 89.2, "recall": 88.6, "f1": 88.9},
         "shufflenet_v1_noshuffle": {"accuracy": 85.1, "recall": None, "f1": None}}
TABLES = (("Table I: MobileNetV1, depthwise separable vs standard convolutions", "mobilenet_v1",
           "mobilenet_v1_standard_conv", "separable", "standard conv"),
          ("Table II: ShuffleNetV1 (g = 3), with vs without channel shuffle", "shufflenet_v1",
           "shufflenet_v1_noshuffle", "shuffle", "no shuffle"))
_MEMBER_KEYS = ("build", "runs")
_RUN_KEYS = ("seed", "float", "int8", "bench", "metrics")
_RUN_FILES = ("float", "int8", "bench", "metrics")
_BUILD_KEYS = ("width", "input_size", "num_classes", "separable", "groups", "shuffle")
METRICS = ("accuracy", "recall", "f1")

NOTES = """Notes
- Our figures are on the val split held out of the training split ({samples}, stratified; read
  from {data}), not the official CIFAR-10 test split the study used (not available here; the
  shipped files scored about 1 point less on it than on val). Mean ± sample standard deviation over the seeds
  (n = number of seeds); a delta is "beyond seed spread" when it exceeds twice the larger of the
  two members' standard deviations.
- Recall and F1 are macro averages. On a balanced split (CIFAR-10's test split has 1,000 images
  per class) macro recall equals accuracy, so the study's recall and F1 (e.g. 88.6 / 88.9 against
  89.2 accuracy for ShuffleNet) cannot be macro averages over that split; our recall equals our
  accuracy for the same reason (the val split is stratified).
- The study's ImageNet figures (top-1 / top-5) cannot be reproduced here: there is no ImageNet
  data and no GPU. The recipes for whoever has both are in `recipes/imagenet/`
  (`mobilenet_v1.yaml`, `shufflenet_v1_g3.yaml`), following each original paper.
- int8 size and p50 latency are those of the int8 file (host LiteRT + XNNPACK, 1 thread, batch 1).
"""


def _check_keys(values, allowed, where):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r}")
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(allowed)}")


def _read_json(path, what):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON ({error.msg} at line {error.lineno})") from None


def load_study(path, partial=False):
    """Read and validate a study file; returns {member: {"build": {...}, "runs": [run, ...], "left_out": [seed, ...]}}.

    Each run holds the loaded ``float`` and ``int8`` eval dicts, its ``bench`` rows and optional
    ``metrics``. With ``partial``, a run any of whose files does not exist is left out (its seed
    goes to ``left_out``) instead of refused; a member with no run left has ``runs == []``.

    Raises:
        FileNotFoundError: the study file or a file it names is missing (the message names it).
        ValueError: unknown keys, a member whose build does not match its model or switch, a pair
            whose builds differ in more than the switch, or files of the wrong kind.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"study file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        try:
            values = yaml.safe_load(handle)  # JSON is YAML
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    _check_keys(values, ("members",), path)
    _check_keys(values.get("members"), MEMBERS, f"{path}: members")
    base = os.path.dirname(os.path.abspath(path))
    study = {}
    for member, spec in values["members"].items():
        where = f"{path}: members.{member}"
        _check_keys(spec, _MEMBER_KEYS, where)
        build = dict(spec.get("build") or {})
        _check_keys(build, _BUILD_KEYS, f"{where}.build")
        switch, expected = _SWITCH[member]
        if build.get(switch, _DEFAULTS[switch]) is not expected:
            raise ValueError(f"{where}.build.{switch} must be {str(expected).lower()} for {member}, "
                             f"got {build.get(switch)!r}")
        build[switch] = expected
        runs = spec.get("runs")
        if not isinstance(runs, list) or not runs:
            raise ValueError(f"{where}.runs: expected a list of runs (one per seed), got {runs!r}")
        loaded, left_out = [], []
        for i, run in enumerate(runs):
            _check_run(run, f"{where}.runs[{i}]")
            if partial and not all(os.path.isfile(os.path.join(base, run[key])) for key in _RUN_FILES if key in run):
                left_out.append(run["seed"])
            else:
                loaded.append(_load_run(run, base, f"{where}.runs[{i}]"))
        study[member] = {"build": build, "runs": loaded, "left_out": left_out}
    for _, first, second, *_ in TABLES:
        if study.get(first, {}).get("runs") and study.get(second, {}).get("runs"):
            switch = _SWITCH[first][0]
            a, b = ({k: v for k, v in study[m]["build"].items() if k != switch} for m in (first, second))
            if a != b:
                raise ValueError(f"{path}: {first} and {second} must be built alike but for {switch}: "
                                 f"{a} against {b}")
    return study


def _check_run(run, where):
    _check_keys(run, _RUN_KEYS, where)
    for key in ("seed", "float", "int8", "bench"):
        if key not in run:
            raise ValueError(f"{where}: missing key {key!r}")


def _load_run(run, base, where):
    loaded = {"seed": run["seed"]}
    for key in ("float", "int8"):
        values = _read_json(os.path.join(base, run[key]), f"{where}.{key}")
        if not (isinstance(values, dict) and all(k in values for k in ("accuracy", "recall", "f1", "model"))):
            raise ValueError(f"{where}.{key}: {run[key]} is not a `mobilecls eval --json` file")
        loaded[key] = values
    rows = _read_json(os.path.join(base, run["bench"]), f"{where}.bench")
    if not (isinstance(rows, list) and all(isinstance(r, dict) and "p50_ms" in r for r in rows)):
        raise ValueError(f"{where}.bench: {run['bench']} is not a `mobilecls bench --json` file")
    int8_name = os.path.basename(loaded["int8"]["model"])
    timed = [r for r in rows if os.path.basename(r["model"]) == int8_name and int(r["threads"]) == 1]
    timed.sort(key=lambda row: row.get("device") != "host")  # this host's LiteRT first, then phones
    if not timed:
        raise ValueError(f"{where}.bench: {run['bench']} has no 1-thread row for {int8_name}")
    size = loaded["int8"].get("size_bytes")
    if size is not None and timed[0].get("size_bytes") not in (None, size):
        raise ValueError(f"{where}.bench: {run['bench']} timed a {int8_name} of {timed[0]['size_bytes']} bytes, "
                         f"the int8 eval measured one of {size} bytes")
    loaded["int8_p50_ms"] = timed[0]["p50_ms"]
    loaded["int8_size_bytes"] = size if size is not None else timed[0].get("size_bytes")
    loaded["metrics"] = _read_json(os.path.join(base, run["metrics"]), f"{where}.metrics") if "metrics" in run else None
    return loaded


def mean_spread(values):
    """(mean, sample standard deviation or None for one value, n)."""
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, None, 1
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)), n


def summarize(study, profile=None):
    """Per member: mean/spread of each metric (in %), int8 metrics, size, latency, params, MACs.

    Args:
        study: ``load_study``'s result.
        profile: ``f(model, build) -> {"params", "macs"}``; default builds the model
            (``mobilecls.models.profile.summarize``).
    """
    if profile is None:
        from mobilecls.models.profile import summarize as profile_model

        def profile(model, build):
            return profile_model(model, **build)

    rows = {}
    for member, spec in study.items():
        runs = spec["runs"]
        if not runs:
            continue  # every run left out (partial): "not run"
        row = {"seeds": [run["seed"] for run in runs], "build": spec["build"]}
        for kind in ("float", "int8"):
            for metric in METRICS:
                row[f"{kind}_{metric}"] = mean_spread([100 * run[kind][metric] for run in runs])
        row["int8_size_bytes"] = mean_spread([run["int8_size_bytes"] for run in runs])
        row["int8_p50_ms"] = mean_spread([run["int8_p50_ms"] for run in runs])
        walls = [run["metrics"]["wall_time_s"] for run in runs if run["metrics"]]
        row["wall_time_min"] = [round(w / 60, 1) for w in walls]
        split = runs[0]["float"]
        row["split"] = {"split": split.get("split"), "samples": split.get("samples"), "data": split.get("data")}
        cost = profile(_MODEL[member], spec["build"])
        row["params"], row["macs"] = cost["params"], cost["macs"]
        rows[member] = row
    return rows


def _fmt(stat, spec=".2f"):
    mean, spread, n = stat
    return f"{mean:{spec}}" if spread is None else f"{mean:{spec}} ± {spread:{spec}} (n={n})"


def _signed(value):
    return f"{value:+.2f}".replace("-", "−")


def delta(rows, base, ablation, key):
    """Measured ablation − base of ``key`` (means), and whether it exceeds twice the larger spread."""
    (a, sa, _), (b, sb, _) = rows[base][key], rows[ablation][key]
    spread = max(s for s in (sa, sb, 0.0) if s is not None)
    return b - a, spread > 0 and abs(b - a) > 2 * spread


def render_table(rows, title, base, ablation, base_label, ablation_label):
    """One study table in Markdown: both members, our numbers beside the study's, the deltas."""
    header = ("| model | accuracy % | macro recall % | macro F1 % | int8 accuracy % | params | MACs | int8 size | "
              "int8 p50 ms | fit min | study accuracy | study recall | study F1 |")
    lines = [f"### {title}", "", header, "|" + "---|" * 13]
    for member, label in ((base, base_label), (ablation, ablation_label)):
        study = STUDY[member]
        theirs = " | ".join("–" if study[m] is None else f"{study[m]:.1f}" for m in METRICS)
        if member not in rows:
            lines.append(f"| {label} | not run |  |  |  |  |  |  |  |  | {theirs} |")
            continue
        row = rows[member]
        size_mb = (row["int8_size_bytes"][0] / 1e6, None, 1)
        lines.append(f"| {label} | {_fmt(row['float_accuracy'])} | {_fmt(row['float_recall'])} | "
                     f"{_fmt(row['float_f1'])} | {_fmt(row['int8_accuracy'])} | {row['params'] / 1e6:.2f} M | "
                     f"{row['macs'] / 1e6:.1f} M | {_fmt(size_mb)} MB | {_fmt(row['int8_p50_ms'], '.3f')} | "
                     f"{', '.join(f'{w:g}' for w in row['wall_time_min']) or '–'} | {theirs} |")
    if base in rows and ablation in rows:
        cells = []
        for metric in METRICS:
            value, beyond = delta(rows, base, ablation, f"float_{metric}")
            cells.append(f"{_signed(value)}{' (beyond seed spread)' if beyond else ''}")
        int8_value, _ = delta(rows, base, ablation, "int8_accuracy")
        ratio_p = rows[ablation]["params"] / rows[base]["params"]
        ratio_m = rows[ablation]["macs"] / rows[base]["macs"]
        ratio_t = rows[ablation]["int8_p50_ms"][0] / rows[base]["int8_p50_ms"][0]
        ratio_s = rows[ablation]["int8_size_bytes"][0] / rows[base]["int8_size_bytes"][0]
        theirs = STUDY[ablation]["accuracy"] - STUDY[base]["accuracy"]
        ours = delta(rows, base, ablation, "float_accuracy")[0]
        agree = "same sign as the study" if ours * theirs > 0 else "opposite sign to the study"
        lines.append(f"| Δ {ablation_label} − {base_label} | {' | '.join(cells)} | {_signed(int8_value)} | "
                     f"{ratio_p:.2f}x | {ratio_m:.2f}x | {ratio_s:.2f}x | {ratio_t:.2f}x |  | "
                     f"{_signed(theirs)} |  |  |")
        lines += ["", f"Measured Δ accuracy {_signed(ours)} points against the study's {_signed(theirs)}: {agree}."]
    return "\n".join(lines) + "\n"


def render(rows, left_out=None):
    """The whole study report in Markdown: Tables I and II, the Fig. 3 reference and the notes.

    ``left_out``: {member: [seed, ...]} of the runs a partial study left out (listed under the tables).
    """
    parts = ["# The study on CIFAR-10, reproduced by mobilecls", ""]
    parts += [render_table(rows, *table) for table in TABLES]
    if left_out:
        runs = "; ".join(f"{member} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
                         for member, seeds in left_out.items())
        parts.append(f"Left out, their files not made yet (`--partial`): {runs}.\n")
    parts.append("Fig. 3: `fig3.png` (accuracy, macro recall, macro F1 of MobileNetV1 and ShuffleNetV1, "
                 "float and int8, beside the study's bars).\n")
    split = next((row["split"] for row in rows.values()), {"samples": None, "data": None})
    samples = f"{split['samples']:,} images" if split["samples"] else "no run yet"
    parts.append(NOTES.format(samples=samples, data=split["data"] or "–"))
    return "\n".join(parts)


def figure_png(rows):
    """Fig. 3 as PNG bytes: grouped bars of accuracy / recall / F1, ours (float, int8) and the study's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = []  # (label, values, errors, colour): one colour per family, the study's bars hatched
    for member, label, colour in (("mobilenet_v1", "MobileNetV1", "tab:blue"),
                                  ("shufflenet_v1", "ShuffleNetV1", "tab:orange")):
        if member in rows:
            for kind, alpha in (("float", 0.95), ("int8", 0.55)):
                stats = [rows[member][f"{kind}_{m}"] for m in METRICS]
                bars.append((f"{label} {kind} (ours)", [s[0] for s in stats], [s[1] or 0 for s in stats],
                             colour, alpha))
        bars.append((f"{label} (study)", [STUDY[member][m] for m in METRICS], [0, 0, 0], colour, 0.25))
    figure, axis = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(bars)
    for position, (label, values, errors, colour, alpha) in enumerate(bars):
        xs = [i + (position - (len(bars) - 1) / 2) * width for i in range(len(METRICS))]
        axis.bar(xs, values, width, yerr=errors, capsize=2, label=label, color=colour, alpha=alpha,
                 hatch="//" if "study" in label else None, edgecolor="black", linewidth=0.5)
    axis.set_xticks(range(len(METRICS)), ["accuracy", "macro recall", "macro F1"])
    lowest = min(v for _, values, *_ in bars for v in values)
    axis.set_ylim(max(0, lowest - 5), 100)
    axis.set_ylabel("%")
    axis.set_title("Fig. 3: MobileNetV1 vs ShuffleNetV1 on CIFAR-10 (ours: val split; study: test split)")
    axis.legend(fontsize=7, ncol=2)
    axis.grid(axis="y", alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def study_report(path, out_dir, profile=None, partial=False):
    """Write ``study.md``, ``study.json`` and ``fig3.png`` into ``out_dir``; returns the Markdown.

    ``partial``: leave out the runs whose files do not exist yet (see ``load_study``).
    """
    study = load_study(path, partial=partial)
    rows = summarize(study, profile=profile)
    text = render(rows, {member: spec["left_out"] for member, spec in study.items() if spec["left_out"]})
    write_atomically(os.path.join(out_dir, "study.md"), text)
    write_atomically(os.path.join(out_dir, "study.json"), json.dumps(rows, indent=2) + "\n")
    write_atomically(os.path.join(out_dir, "fig3.png"), figure_png(rows))
    return text
