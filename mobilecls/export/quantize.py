"""`quantize`: a .keras model -> a checked, self-describing .tflite file, written atomically."""

import os

import numpy as np

from mobilecls.export.calibration_ranges import check_range_quantile
from mobilecls.export.convert import check_graph, inspect_tflite, is_qat_model, to_tflite
from mobilecls.files import check_output_file, write_atomically
from mobilecls.models.io import class_names_beside, load_keras_model


def calibration_images(dataset, count, seed=0):
    """``count`` training images, stratified over the classes (float32 pixels 0..255)."""
    train = dataset.splits["train"]
    rng = np.random.default_rng(seed)
    classes = np.unique(train.labels)
    per_class = max(1, count // len(classes))
    picks = np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[:per_class] for c in classes])
    return train.images[np.sort(picks)].astype(np.float32)


def _check_images_fit(model, images, source):
    expected = tuple(model.input_shape[1:])
    if tuple(images.shape[1:]) != expected:
        raise ValueError(f"calibration images from {source} are {images.shape[1]}x{images.shape[2]}x"
                         f"{images.shape[3]}; the model expects {expected[0]}x{expected[1]}x{expected[2]}")


def default_io(mode):
    """The I/O type ``quantize`` writes when none is asked: uint8 for int8 files (what MediaPipe and
    the Task Library take), float32 otherwise (int16x8 files have float32 I/O only)."""
    return "uint8" if mode == "int8" else "float32"


def default_output(model_path, mode, mirror=False, shift=False):
    """Where `mobilecls quantize` writes when no -o is given: beside the model, MODEL_<mode>.tflite
    (MODEL_<mode>_mirror.tflite with ``mirror``, MODEL_<mode>_mirror_shift.tflite with ``shift`` too)."""
    return os.path.splitext(model_path)[0] + f"_{mode}{'_mirror' if mirror else ''}{'_shift' if shift else ''}.tflite"


def report_path(out):
    """Where `quantize --report` writes its JSON: beside the .tflite file, OUT_report.json."""
    return os.path.splitext(out)[0] + "_report.json"


def quantize(model_path, mode, out, data=None, calibration_steps=256, io=None, class_names=None,
             data_dir=None, logits=False, author=None, license=None, val_fraction=0.1, range_quantile=1.0,
             mirror=False, shift=False, holdout_seed=0):
    """Convert a .keras model to a checked .tflite file with standard TFLite Metadata.

    The file ends in a softmax (probabilities; in int8 files an int8 softmax) unless ``logits``,
    and carries the class names as the metadata's labels file (see ``mobilecls.export.packaging``).

    Args:
        model_path: a float or QAT .keras model taking RGB pixels 0..255.
        mode: fp32, fp16, dynamic, int8 or int16x8.
        out: the .tflite path to write (atomically).
        data: dataset spec for calibration (int8/int16x8 from a float model) and class names.
        calibration_steps: calibration images, stratified over the training split's classes.
        io: float32, int8 or uint8 input/output for integer modes (default ``default_io(mode)``).
        class_names: overrides the names from the data or the run folder's classes.json.
        logits: keep the logits as the output (no softmax).
        author, license: for the standard metadata.
        val_fraction: share of 'train' held out as 'val' when ``data`` has no val split; the
            fit's ``data.val_fraction``, so that calibration draws from the same training images.
        holdout_seed: the seed of that holdout, the fit's ``data.holdout_seed``.
        range_quantile: int8 / int16x8 from a float model: each activation range spans this
            quantile of the per-image extremes over the calibration images (1: their min / max,
            the converter's own; 0.95 clips the few images with rare large activations, see
            ``mobilecls.export.calibration_ranges``).
        mirror: the file scores the image and its mirror image in one pass and returns the mean
            (``mobilecls.export.mirror_average``, whose docstring has the measured cost and gain).
            An integer file of a QAT model then needs ``data`` too: the image
            pair and the mean have no trained ranges, they are calibrated.
        shift: with ``mirror``, six views in one pass: the image and its mirror image, each as it is and
            shifted one pixel up-left and down-right.

    Returns:
        (report, metadata): the ``GraphReport`` of the written file and its metadata dict.

    Raises:
        ValueError / FileNotFoundError: bad model file, missing calibration data, images of the
            wrong size, class names that do not match the model, or an int8 graph with float ops.
    """
    check_output_file(out, "-o/--out")
    if shift and not mirror:
        raise ValueError("--shift adds shifted views to --mirror's two: use it with --mirror")
    if calibration_steps < 1:
        raise ValueError(f"--calibration-steps must be >= 1, got {calibration_steps}")
    if check_range_quantile(range_quantile) < 1 and mode not in ("int8", "int16x8"):
        raise ValueError(f"--range-quantile sets calibrated activation ranges: it needs --int8 or --int16x8, "
                         f"not {mode}")

    from mobilecls.export.packaging import general_info, package

    io = io or default_io(mode)
    model = load_keras_model(model_path)
    if mirror:
        from mobilecls.export.mirror_average import mirror_averaged

        model = mirror_averaged(model, shift=shift)
    qat = is_qat_model(model)
    dataset = None
    if data is not None:
        from mobilecls.data import load

        dataset = load(data, data_dir=data_dir, val_fraction=val_fraction, seed=holdout_seed)
        trained_on = class_names_beside(model_path)
        if class_names is None and trained_on is not None and trained_on != list(dataset.class_names):
            raise ValueError(f"{model_path} was trained on classes {', '.join(trained_on)}; {data} has "
                             f"{', '.join(dataset.class_names)}")
    names = class_names or (list(dataset.class_names) if dataset else None) or class_names_beside(model_path)
    outputs = model.output_shape[-1]
    if names is None:
        raise ValueError(f"no class names for {model_path}: pass --data SPEC or put classes.json beside the model "
                         "(the file's labels need them)")
    if names is not None and len(names) != outputs:
        raise ValueError(f"{len(names)} class names ({', '.join(names[:3])}, ...) do not match the model's "
                         f"{outputs} outputs ({model_path})")
    calibration = None
    if mode in ("int8", "int16x8") and (mirror or not qat):
        if dataset is None and qat:
            raise ValueError(f"--{mode} --mirror needs calibration data for the image views and their mean: "
                             "pass --data SPEC")
        if dataset is None:
            raise ValueError(f"--{mode} from a float model needs calibration data: pass --data SPEC "
                             "(or quantize a QAT model)")
        images = calibration_images(dataset, calibration_steps)
        _check_images_fit(model, images, data)
        calibration = [images]
    # uint8 I/O is made from int8 I/O by the same edit ``mobilecls upgrade`` uses (exact: only the
    # zero point moves), so new and upgraded files are alike.
    if qat and range_quantile < 1:
        raise ValueError(f"{model_path} is a QAT model: its activation ranges were trained; --range-quantile is "
                         "for post-training calibration (qat_run takes optimize.range_quantile)")
    content = to_tflite(model, mode, calibration=calibration, io="int8" if io == "uint8" else io,
                        range_quantile=range_quantile)
    provenance = {"input_size": list(model.input_shape[1:3]), "mode": mode, "io": io, "qat": qat,
                  **({"range_quantile": range_quantile} if range_quantile < 1 else {}),
                  **({"mirror_average": True} if mirror else {}), **({"shift_average": True} if shift else {}),
                  "source": os.path.basename(model_path), "producer": "mobilecls"}
    general = general_info(model.name, mode, outputs, model.input_shape[1:3], author, license)
    content = package(content, names, general, provenance, softmax=not logits, uint8_io=io == "uint8")
    report = inspect_tflite(content)
    check_graph(report, mode)
    write_atomically(out, content)
    from mobilecls.export.metadata import read_metadata

    return report, read_metadata(content)


def ptq_report(model_path, data, calibration_steps=256, debug_steps=64, worst=5, split="val", data_dir=None,
               val_fraction=0.1, range_quantile=1.0, holdout_seed=0):
    """Where post-training int8 quantization of a float model loses accuracy (see quantize_debug).

    Raises:
        ValueError: a QAT model (it has no post-training step to debug), a missing split, or
            images that do not fit the model.
    """
    from mobilecls.data import load
    from mobilecls.export.quantize_debug import quantization_report

    model = load_keras_model(model_path)
    if is_qat_model(model):
        raise ValueError(f"{model_path} is a QAT model; --report measures post-training quantization of a float model")
    dataset = load(data, data_dir=data_dir, val_fraction=val_fraction, seed=holdout_seed)
    if split not in dataset.splits:
        raise ValueError(f"split {split!r} not in {data}; it has: {', '.join(sorted(dataset.splits))}")
    calibration = calibration_images(dataset, calibration_steps)
    _check_images_fit(model, calibration, data)
    part = dataset.splits[split]
    report = quantization_report(model, calibration, calibration_images(dataset, debug_steps, seed=1),
                                 part.images, part.labels, worst=worst, range_quantile=range_quantile)
    report.update({"model": os.path.basename(model_path), "data": data, "split": split})
    return report
