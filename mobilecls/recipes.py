"""Training recipes: frozen dataclasses <-> YAML, with overrides and validation.

A recipe file is YAML with the sections below; every key is optional except ``model.name``.
``--set section.key=value`` overrides one value (parsed as YAML, so ``0.1``, ``true``, ``null``
work). An unknown section or key is an error that lists the valid ones.
"""

import dataclasses
import os
import typing

import yaml


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """Which model to build; unset keywords keep the builder's defaults."""

    name: str = "shufflenet_v2"
    width: float = 1.0
    input_size: int | None = None  # None: the data's image size
    dropout: float = 0.0
    separable: bool | None = None  # mobilenet_v1 ablation
    shuffle: bool | None = None    # shufflenet ablation
    groups: int | None = None      # shufflenet_v1
    explicit_padding: bool | None = None  # mobilenet_v1/v2: XNNPACK sparse-inference compatible padding
    cifar_output_stride: int | None = None  # mobilenet_v1, CIFAR layout: 8 or 16
    zero_init_residual: bool | None = None  # shufflenet_v1: residual branches start at 0 (an initialization)

    def builder_kwargs(self, input_size, num_classes):
        """Keywords for ``build_model``: the set ones plus input size and classes."""
        optional = {key: getattr(self, key) for key in ("separable", "shuffle", "groups", "explicit_padding",
                                                        "cifar_output_stride", "zero_init_residual")}
        return {"width": self.width, "dropout": self.dropout, "input_size": self.input_size or input_size,
                "num_classes": num_classes, **{k: v for k, v in optional.items() if v is not None}}


@dataclasses.dataclass(frozen=True)
class DataSection:
    """Where the images come from (see ``mobilecls.data.load``)."""

    spec: str = "synthetic"
    data_dir: str | None = None
    val_fraction: float = 0.1
    holdout_seed: int = 0  # which images are held out (the dataset's draw, not train.seed's)
    image_size: int | None = None  # resize variable-size sources (imagenette, imagenet2012)
    skip_bad: bool = False


@dataclasses.dataclass(frozen=True)
class OptimizerSection:
    """SGD (momentum, nesterov), RMSprop (momentum) or AdamW; weight decay skips BatchNorm
    parameters and biases, and depthwise filters too with ``depthwise_weight_decay: false`` (the
    MobileNet paper: "very little or no weight decay" on them, they have so few parameters).
    ``ema_decay`` (e.g. 0.999): keep an exponential moving average of the trainable weights,
    updated every step; validation, best.keras and every export use it."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5
    depthwise_weight_decay: bool = True
    ema_decay: float | None = None


@dataclasses.dataclass(frozen=True)
class ScheduleSection:
    """Learning-rate schedule: constant, step (x factor every N epochs), linear (to
    final_lr_fraction), cosine or onecycle."""

    name: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 10
    step_factor: float = 0.1
    final_lr_fraction: float = 0.0


@dataclasses.dataclass(frozen=True)
class AugmentSection:
    """Batched augmentation: random crop with padding, horizontal flip, cutout. ``flip: alternate``
    mirrors a random half of the images in the first epoch and, from then on, exactly the images the
    epoch before did not mirror (each image alternates)."""

    crop_padding: int = 4
    flip: bool | str = True
    cutout: int = 0
    # [low, high]: re-encode training images as JPEG at a quality drawn from low..high (after crop and
    # flip, before cutout), each with jpeg_probability; null: never (data.pipeline.jpeg_reencode).
    jpeg_quality: list[int] | None = None
    jpeg_probability: float = 1.0


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """The training loop."""

    epochs: int = 10
    batch_size: int = 128
    label_smoothing: float = 0.0
    mixed_precision: str | None = None  # None or "mixed_bfloat16"
    seed: int = 0
    time_budget_minutes: float | None = None  # set: fit plans as many epochs as fit (replaces epochs)
    # Progressive resizing: the first low_resolution_fraction of the epochs (rounded) train on the
    # augmented images resized to low_resolution x low_resolution pixels, the rest at full size;
    # validation and every saved model stay at full size. None: every epoch at full size.
    low_resolution: int | None = None
    low_resolution_fraction: float = 0.5
    # Knowledge distillation: the targets are (1 - distill) * labels + distill * the teacher's class
    # distribution. teacher_runs every_batch: one .keras model of the same classes, run on each
    # augmented batch. once: one or more .tflite or .keras files (a list), run before the first epoch
    # on each training image and its mirror image, averaged (training.teacher_targets); each
    # teacher's distribution is flattened by teacher_temperature (softmax(log p / T)).
    teacher: str | list[str] | None = None
    distill: float = 0.0
    teacher_runs: str = "every_batch"
    teacher_temperature: float = 1.0


@dataclasses.dataclass(frozen=True)
class OptimizeSection:
    """What `mobilecls pipeline` does after fit: optional pruning, then QAT fine-tuning."""

    prune_sparsity: float | None = None  # e.g. 0.5; None skips pruning
    prune_epochs: int = 2
    prune_lr: float = 0.01
    qat_epochs: int = 1
    qat_lr: float = 1e-4  # measured: 1 epoch at 1e-4 kept CIFAR-10 accuracy, 2 at 1e-3 lost 0.7 points
    calibration_steps: int = 256
    # < 1: int8 activation ranges span this quantile of the per-image extremes over the calibration
    # images (PTQ, and QAT's start, kept through QAT) instead of their min / max; 0.95 keeps a few
    # images with rare large activations from starving the others (export.calibration_ranges).
    range_quantile: float = 1.0
    # True: also export fp32_mirror and int8_qat_mirror, files that average the logits over the image and
    # its mirror image (export.mirror_average, with its measured cost), evaluated and benched beside the others.
    mirror_average: bool = False
    # True (with mirror_average): also export fp32_mirror_shift and int8_qat_mirror_shift, six views in one
    # pass (the image and its mirror, each also shifted one pixel up-left and down-right).
    shift_average: bool = False


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A whole training recipe."""

    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    optimizer: OptimizerSection = OptimizerSection()
    schedule: ScheduleSection = ScheduleSection()
    augment: AugmentSection = AugmentSection()
    train: TrainSection = TrainSection()
    optimize: OptimizeSection = OptimizeSection()

    def to_dict(self):
        """Plain nested dict (for YAML)."""
        return dataclasses.asdict(self)


_CHOICES = {
    ("optimizer", "name"): ("sgd", "rmsprop", "adamw"),
    ("schedule", "name"): ("constant", "step", "linear", "cosine", "onecycle"),
    ("train", "mixed_precision"): (None, "mixed_bfloat16"),
    ("train", "teacher_runs"): ("every_batch", "once"),
    ("augment", "flip"): (True, False, "alternate"),
}


def _coerce(value, annotation, where):
    """Check ``value`` against a field's type (ints are accepted for floats)."""
    hints = typing.get_args(annotation) or (annotation,)
    if value is None and type(None) in hints:
        return None
    for hint in hints:
        if hint is bool and isinstance(value, bool):
            return value
        if hint is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if hint is str and isinstance(value, str):
            return value
        if typing.get_origin(hint) is list and isinstance(value, list) and value and all(
                isinstance(item, typing.get_args(hint)[0]) and not isinstance(item, bool) for item in value):
            return list(value)
    expected = " or ".join("null" if h is type(None)
                           else f"a list of {typing.get_args(h)[0].__name__}" if typing.get_origin(h) is list
                           else h.__name__ for h in hints)
    raise ValueError(f"recipe key {where}: expected {expected}, got {value!r}")


def _as_yaml(value):
    """A scalar as a recipe file spells it: true, false, null, text."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _section(cls, values, name):
    if not isinstance(values, dict):
        raise ValueError(f"recipe section {name}: expected a mapping, got {values!r}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown recipe key {name}.{unknown[0]}; valid keys in {name}: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _coerce(value, hints[key], f"{name}.{key}")
        choices = _CHOICES.get((name, key))
        if choices and kwargs[key] not in choices:
            raise ValueError(f"recipe key {name}.{key}: expected one of {', '.join(map(_as_yaml, choices))}, "
                             f"got {kwargs[key]!r}")
    return cls(**kwargs)


def from_dict(values):
    """Build a validated Recipe from a nested dict.

    Raises:
        ValueError: unknown section or key (listing the valid ones), or a value of the wrong type.
    """
    values = values or {}
    if not isinstance(values, dict):
        raise ValueError(f"a recipe must be a mapping of sections, got {type(values).__name__}")
    sections = {field.name: field.type for field in dataclasses.fields(Recipe)}
    unknown = sorted(set(values) - set(sections))
    if unknown:
        raise ValueError(f"unknown recipe section {unknown[0]!r}; valid sections: {', '.join(sections)}")
    hints = typing.get_type_hints(Recipe)
    recipe = Recipe(**{name: _section(hints[name], section or {}, name) for name, section in values.items()})
    _check_ranges(recipe)
    return recipe


def _check_ranges(recipe):
    from mobilecls.models.registry import list_models  # no TensorFlow import

    checks = [
        (recipe.model.name in list_models(),
         f"recipe key model.name: expected one of {', '.join(list_models())}, got {recipe.model.name!r}"),
        (recipe.train.epochs >= 1, "train.epochs must be >= 1"),
        (recipe.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (recipe.train.time_budget_minutes is None or recipe.train.time_budget_minutes > 0,
         "train.time_budget_minutes must be > 0 (or null for a fixed train.epochs)"),
        (recipe.train.low_resolution is None or recipe.train.low_resolution >= 8,
         f"train.low_resolution must be >= 8 pixels (or null), got {recipe.train.low_resolution!r}"),
        (0 < recipe.train.low_resolution_fraction < 1,
         f"train.low_resolution_fraction must be in (0, 1), got {recipe.train.low_resolution_fraction!r}"),
        (0 <= recipe.train.distill <= 1, f"train.distill must be in [0, 1], got {recipe.train.distill!r}"),
        (bool(recipe.train.teacher) == (recipe.train.distill > 0),
         "train.teacher and train.distill go together: a teacher model file and a weight above 0"),
        (recipe.train.teacher_temperature > 0,
         f"train.teacher_temperature must be > 0, got {recipe.train.teacher_temperature!r}"),
        *_teacher_checks(recipe.train),
        (_is_quality_range(recipe.augment.jpeg_quality),
         f"augment.jpeg_quality must be [low, high] with 1 <= low <= high <= 100 (or null), "
         f"got {recipe.augment.jpeg_quality!r}"),
        (0 <= recipe.augment.jpeg_probability <= 1,
         f"augment.jpeg_probability must be in [0, 1], got {recipe.augment.jpeg_probability!r}"),
        (recipe.augment.jpeg_quality or recipe.augment.jpeg_probability == AugmentSection.jpeg_probability,
         "augment.jpeg_probability applies with augment.jpeg_quality: set both"),
        (recipe.optimizer.lr > 0, "optimizer.lr must be > 0"),
        (recipe.optimizer.ema_decay is None or 0 < recipe.optimizer.ema_decay < 1,
         "optimizer.ema_decay must be in (0, 1) (or null: no moving average)"),
        (recipe.model.width > 0, f"model.width must be > 0, got {recipe.model.width:g}"),
        (recipe.data.image_size is None or recipe.data.image_size >= 1, "data.image_size must be >= 1 (or null)"),
        (recipe.optimize.calibration_steps >= 1, "optimize.calibration_steps must be >= 1"),
        (isinstance(recipe.optimize.range_quantile, (int, float)) and 0.5 <= recipe.optimize.range_quantile <= 1,
         f"optimize.range_quantile must be in [0.5, 1] (1 = min / max), got {recipe.optimize.range_quantile!r}"),
        (recipe.optimize.mirror_average or not recipe.optimize.shift_average,
         "optimize.shift_average adds shifted views to optimize.mirror_average's two: set both"),
        (0 < recipe.data.val_fraction < 1, "data.val_fraction must be in (0, 1)"),
        (recipe.data.holdout_seed >= 0, f"data.holdout_seed must be >= 0, got {recipe.data.holdout_seed}"),
        (0 <= recipe.train.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
        (recipe.schedule.warmup_epochs < recipe.train.epochs or recipe.schedule.warmup_epochs == 0
         or recipe.train.time_budget_minutes,  # fit checks the planned epochs
         "schedule.warmup_epochs must be shorter than train.epochs"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _is_quality_range(qualities):
    """None, or [low, high] JPEG qualities with 1 <= low <= high <= 100."""
    return qualities is None or (len(qualities) == 2 and 1 <= qualities[0] <= qualities[1] <= 100)


def teacher_files(train):
    """``train.teacher`` as a list of paths (empty without a teacher)."""
    if not train.teacher:
        return []
    return [train.teacher] if isinstance(train.teacher, str) else list(train.teacher)


def _teacher_checks(train):
    """(ok, message) pairs: what a teacher that runs on every batch can be."""
    files = teacher_files(train)
    if train.teacher_runs == "once":
        return []
    tflite = [path for path in files if path.endswith(".tflite")]
    return [(len(files) <= 1, f"train.teacher: {len(files)} teachers run only with train.teacher_runs: once"),
            (not tflite, f"train.teacher: a .tflite teacher ({', '.join(tflite)}) runs only with "
                         "train.teacher_runs: once (its class distributions computed before the first epoch)"),
            (train.teacher_temperature == 1,
             "train.teacher_temperature applies with train.teacher_runs: once")]


def load(path):
    """Read and validate a recipe YAML file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not YAML, or not a valid recipe (the message names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"recipe file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        try:
            values = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    try:
        recipe = from_dict(values)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if "name" not in ((values or {}).get("model") or {}):  # the defaults are no choice of model
        raise ValueError(f"{path}: model.name is required, e.g. model: {{name: shufflenet_v2}}")
    return recipe


def override(recipe, assignments):
    """A new recipe with ``["section.key=value", ...]`` applied (values parsed as YAML)."""
    values = recipe.to_dict()
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"override {assignment!r}: expected section.key=value, e.g. optimizer.lr=0.05")
        if section not in values:
            raise ValueError(f"unknown recipe section {section!r}; valid sections: {', '.join(values)}")
        values[section][field] = yaml.safe_load(raw) if raw.strip() else None
    return from_dict(values)


def replace(recipe, **sections):
    """A new recipe with keys replaced, e.g. ``replace(r, train={"epochs": 3})``."""
    values = recipe.to_dict()
    for section, changes in sections.items():
        if section not in values:
            raise ValueError(f"unknown recipe section {section!r}; valid sections: {', '.join(values)}")
        values[section].update(changes)
    return from_dict(values)


# The typed shortcuts of `mobilecls fit` and the recipe key each one sets.
FLAGS = {"model": ("model", "name"), "data": ("data", "spec"), "data_dir": ("data", "data_dir"),
         "epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"), "seed": ("train", "seed"),
         "time_budget": ("train", "time_budget_minutes")}


def resolve(path=None, assignments=(), **flags):
    """The recipe at ``path`` (default: ``Recipe()``), then ``override``'s assignments, then ``flags``.

    Flags (the keys of ``FLAGS``, e.g. ``model="shufflenet_v2", epochs=3``) are typed values
    already, so they replace their keys directly (no YAML parsing of paths); None means not given.

    Raises:
        ValueError: an unknown flag, or what ``load`` / ``override`` refuse.
    """
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise ValueError(f"unknown recipe flag(s) {', '.join(unknown)}; valid flags: {', '.join(FLAGS)}")
    recipe = override(load(path) if path else Recipe(), assignments)
    changes = {}
    for name, value in flags.items():
        if value is not None:
            section, key = FLAGS[name]
            changes.setdefault(section, {})[key] = value
    return replace(recipe, **changes)


def save(recipe, path):
    """Write ``recipe`` as YAML atomically (a temporary file renamed into place)."""
    from mobilecls.files import write_atomically

    write_atomically(path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))
