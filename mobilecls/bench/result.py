"""``BenchResult``: one model's latency on one device and thread count, and its JSON / CSV files."""

import csv
import dataclasses
import io
import json
import os

import numpy as np

from mobilecls.files import write_atomically


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """Latency of one .tflite file on one device with one thread count; times in milliseconds.

    Statistics the source cannot give (a percentile ``benchmark_model`` does not print, memory
    on a platform without /proc) are None. ``op_profile`` holds (op name, avg ms) pairs when the
    source profiles ops, ``extra`` anything else worth keeping (device, runtime version, ...).
    """

    model: str
    device: str              # "host" or an adb serial
    threads: int
    runs: int                # timed invokes behind the statistics
    init_ms: float | None    # interpreter construction + tensor allocation
    first_ms: float | None   # the first invoke (cold caches, one-off buffers)
    warmup_ms: float | None  # mean of the warm-up invokes
    mean_ms: float
    std_ms: float | None
    min_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    size_bytes: int | None
    gzip_bytes: int | None
    peak_memory_mb: float | None = None
    op_profile: tuple = ()
    # hash=False: a dict cannot be hashed, and the record stays usable in sets / as a key.
    extra: dict = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self):
        # Normalise what JSON / CSV turn into lists and what callers may pass as Path, so a
        # record read back compares equal to the one written.
        object.__setattr__(self, "model", os.fspath(self.model))
        object.__setattr__(self, "op_profile", tuple((str(name), float(ms)) for name, ms in self.op_profile))
        object.__setattr__(self, "extra", dict(self.extra or {}))

    @classmethod
    def from_samples(cls, model, device, threads, samples_ms, init_ms, first_ms, warmup_ms, size_bytes,
                     gzip_bytes, peak_memory_mb=None, op_profile=(), extra=None):
        """A result whose mean, std (population, as benchmark_model), min, max and percentiles
        (linear interpolation) come from the timed invokes ``samples_ms``.

        Raises:
            ValueError: ``samples_ms`` is empty or holds a non-finite time.
        """
        samples = np.asarray(samples_ms, dtype=np.float64).ravel()
        if samples.size == 0:
            raise ValueError(f"samples_ms must hold at least one time for {model}, got none")
        if not np.all(np.isfinite(samples)):
            raise ValueError(f"samples_ms must be finite for {model}, got {samples[~np.isfinite(samples)][:3]}")
        p50, p90, p99 = (float(value) for value in np.percentile(samples, [50, 90, 99]))
        return cls(model=model, device=str(device), threads=int(threads), runs=int(samples.size),
                   init_ms=_optional(float, init_ms), first_ms=_optional(float, first_ms),
                   warmup_ms=_optional(float, warmup_ms), mean_ms=float(samples.mean()),
                   std_ms=float(samples.std()), min_ms=float(samples.min()), max_ms=float(samples.max()),
                   p50_ms=p50, p90_ms=p90, p99_ms=p99, size_bytes=_optional(int, size_bytes),
                   gzip_bytes=_optional(int, gzip_bytes), peak_memory_mb=_optional(float, peak_memory_mb),
                   op_profile=op_profile, extra=extra)

    def to_dict(self):
        """The fields as a JSON-ready dict (``op_profile`` as a list of [name, ms] lists)."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values["op_profile"] = [[name, ms] for name, ms in self.op_profile]
        values["extra"] = dict(self.extra)
        return values

    @classmethod
    def from_dict(cls, values):
        """The result ``to_dict`` gave ``values`` for.

        Raises:
            ValueError: ``values`` lacks a required field or has one BenchResult does not know.
        """
        fields = dataclasses.fields(cls)
        names = [field.name for field in fields]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown BenchResult fields: {', '.join(unknown)}; expected: {', '.join(names)}")
        required = [field.name for field in fields
                    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValueError(f"BenchResult fields missing: {', '.join(missing)}")
        return cls(**values)

    def summary_line(self):
        """One human-readable line: latency statistics, start-up, size and memory."""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return (f"{os.path.basename(self.model)} on {self.device}, {threads}: "
                f"mean {_show(self.mean_ms)} ms ± {_show(self.std_ms)} (p50 {_show(self.p50_ms)}, "
                f"p90 {_show(self.p90_ms)}, p99 {_show(self.p99_ms)}, min {_show(self.min_ms)}, "
                f"max {_show(self.max_ms)}; {self.runs} runs), init {_show(self.init_ms, '.1f')} ms, "
                f"first {_show(self.first_ms)} ms, {_kilobytes(self.size_bytes)} "
                f"(gzip {_kilobytes(self.gzip_bytes)}), memory +{_show(self.peak_memory_mb, '.1f')} MB")


def _optional(kind, value):
    return None if value is None else kind(value)


def _show(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def _kilobytes(size):
    return "- KB" if size is None else f"{size / 1024:.1f} KB"


# CSV cells are text: these say how to read each column back (every other column is a float).
_TEXT_COLUMNS = {"model", "device"}
_INT_COLUMNS = {"threads", "runs", "size_bytes", "gzip_bytes"}
_JSON_COLUMNS = {"op_profile", "extra"}


def _columns():
    return [field.name for field in dataclasses.fields(BenchResult)]


def write_json(path, results):
    """Write ``results`` (BenchResults) to ``path`` as a JSON list, atomically."""
    write_atomically(path, json.dumps([result.to_dict() for result in results], indent=2) + "\n")


def read_json(path):
    """The BenchResults ``write_json`` wrote to ``path``."""
    with open(path, encoding="utf-8") as handle:
        return [BenchResult.from_dict(values) for values in json.load(handle)]


def write_csv(path, results):
    """Write ``results`` to ``path`` as CSV, one row per result, atomically.

    Unknown values are empty cells; ``op_profile`` and ``extra`` are JSON text in their cells.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(), lineterminator="\n")
    writer.writeheader()
    for result in results:
        row = result.to_dict()
        row.update({name: json.dumps(row[name], sort_keys=True) for name in _JSON_COLUMNS})
        writer.writerow({name: "" if value is None else value for name, value in row.items()})
    write_atomically(path, buffer.getvalue())


def read_csv(path):
    """The BenchResults ``write_csv`` wrote to ``path``."""
    with open(path, encoding="utf-8", newline="") as handle:
        return [BenchResult.from_dict({name: _cell(name, text) for name, text in row.items()})
                for row in csv.DictReader(handle)]


def _cell(name, text):
    if name in _TEXT_COLUMNS:
        return text
    if name in _JSON_COLUMNS:
        return json.loads(text)
    if text == "":
        return None
    return int(text) if name in _INT_COLUMNS else float(text)
