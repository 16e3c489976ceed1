"""`prune` and `qat` as commands: load, wrap, fine-tune, write an output folder atomically."""

import os

from mobilecls.files import staging_folder, write_json
from mobilecls.optimize.finetune import check_distill, check_teacher, fine_tune


def _output_folder(out):
    if os.path.exists(out) and os.listdir(out):
        raise ValueError(f"output folder {out} already exists and is not empty; choose another --out")


def _load(model_path, data, data_dir, val_fraction, holdout_seed, check_model=None):
    """The model and the dataset, checked against each other; ``check_model(model)`` runs before the data loads."""
    from mobilecls.data import load
    from mobilecls.models.io import class_names_beside, load_keras_model

    model = load_keras_model(model_path)
    if check_model is not None:
        check_model(model)
    dataset = load(data, data_dir=data_dir, val_fraction=val_fraction, seed=holdout_seed)
    names = class_names_beside(model_path)
    if names is not None and list(names) != list(dataset.class_names):
        raise ValueError(f"{model_path} was trained on classes {', '.join(names)}; {data} has "
                         f"{', '.join(dataset.class_names)}")
    if tuple(dataset.splits["train"].images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"{data} images are {dataset.splits['train'].images.shape[1:]}; {model_path} expects "
                         f"{model.input_shape[1:]}")
    if model.output_shape[-1] != len(dataset.class_names):
        raise ValueError(f"{model_path} has {model.output_shape[-1]} outputs; {data} has "
                         f"{len(dataset.class_names)} classes")
    return model, dataset


def model_filename(model):
    """model.keras, or model.h5 for a QAT model: tf_keras 2.21 cannot reload tfmot's QuantizeLayer
    from .keras ("expected 5 variables, but received 3"), while .h5 round-trips."""
    from mobilecls.export.convert import is_qat_model

    return "model.h5" if is_qat_model(model) else "model.keras"


def _write_outputs(folder, model, report, dataset):
    model.save(os.path.join(folder, model_filename(model)))
    write_json(os.path.join(folder, "classes.json"), list(dataset.class_names))
    write_json(os.path.join(folder, "report.json"), report)


def prune_run(model_path, data, out, sparsity=0.5, schedule="polynomial", structured=None, epochs=5, lr=0.01,
              batch_size=128, data_dir=None, quiet=True, policy="all", bench_runs=100, distill=0.0,
              teacher_path=None, val_fraction=0.1, holdout_seed=0):
    """Prune a .keras model, fine-tune it, strip the wrappers and write ``out``.

    ``out`` gets model.keras (pruned, float), classes.json and report.json (val accuracy before
    and after, per-layer and overall sparsity, float32 .tflite size and gzip size before/after).
    With ``policy="xnnpack"`` it also gets model_sparse_fp32.tflite (weights in TFLite's sparse
    format, for XNNPACK sparse inference) and the report says whether inference got faster:
    the pruned model as a dense and as a sparse fp32 file, benchmarked side by side.
    With ``distill`` > 0 the fine-tuning targets mix in the class probabilities of a teacher:
    the model at ``teacher_path`` (e.g. the dense model when ``model_path`` is already pruned),
    or else the input model itself.

    Returns:
        The report dict.
    """
    from mobilecls.export.convert import to_tflite
    from mobilecls.files import gzip_size
    from mobilecls.models.io import load_keras_model
    from mobilecls.optimize import prune

    # every argument first, then the models, then the data: a mistake costs no loading or training
    check_distill(distill)
    prune.check_arguments(sparsity, schedule, structured, policy)
    if teacher_path and not distill:
        raise ValueError(f"teacher {teacher_path} is only used with a distillation weight above 0 (--distill)")
    _output_folder(out)
    teacher = load_keras_model(teacher_path) if teacher_path else None

    def check_model(model):
        if policy == "xnnpack":
            prune.xnnpack_policy(model)  # raises, naming why the model does not qualify
        if teacher is not None:
            check_teacher(teacher, teacher_path, model, model_path)

    model, dataset = _load(model_path, data, data_dir, val_fraction, holdout_seed, check_model)
    teacher = model if teacher is None else teacher
    before = fine_tune(model, dataset, 0, lr, batch_size)
    steps = max(1, len(dataset.splits["train"].images) // batch_size)
    wrapped = prune.prune(model, sparsity, schedule, structured, begin_step=0,
                          end_step=max(1, int(0.7 * epochs * steps)), policy=policy)
    after = fine_tune(wrapped, dataset, epochs, lr, batch_size, callbacks=[prune.update_step_callback()], quiet=quiet,
                      teacher=teacher, distill=distill)
    pruned = prune.strip(wrapped)
    dense_tflite, sparse_tflite = to_tflite(model, "fp32"), to_tflite(pruned, "fp32")
    report = {"source": model_path, "sparsity_target": sparsity, "schedule": schedule, "structured": structured,
              "epochs": epochs, "lr": lr, "distill": distill,
              "teacher": (teacher_path or model_path) if distill else None,
              "val_accuracy_before": before, "val_accuracy_after": after,
              "sparsity": prune.overall_sparsity(pruned), "layers": prune.layer_sparsity(pruned),
              "tflite_fp32_bytes": {"before": len(dense_tflite), "after": len(sparse_tflite)},
              "tflite_fp32_gzip_bytes": {"before": gzip_size(dense_tflite),
                                         "after": gzip_size(sparse_tflite)}, "policy": policy,
              "xnnpack_sparse_qualifies": prune.xnnpack_qualification(model) is None}
    with staging_folder(out) as staging:  # out appears complete or not at all
        if policy == "xnnpack":
            report["xnnpack_sparse"] = sparse_inference_speedup(pruned, staging, bench_runs)
        _write_outputs(staging, pruned, report, dataset)
    return report


def sparse_inference_speedup(model, folder, runs=100):
    """Benchmark ``model`` as a dense and as a sparse fp32 .tflite side by side (1 thread, XNNPACK).

    Writes model_sparse_fp32.tflite into ``folder`` (the dense file is only measured).

    Returns:
        A dict: p50 ms of each, the speedup (dense / sparse), the share of zeros in the 1x1
        convolutions (XNNPACK goes sparse only from 2/3) and how many DENSIFY ops the file holds.
    """
    import tempfile

    from mobilecls.bench.host import bench_host
    from mobilecls.export.convert import inspect_tflite, to_tflite
    from mobilecls.files import write_atomically
    from mobilecls.optimize.prune import pointwise_sparsity

    sparse_path = os.path.join(folder, "model_sparse_fp32.tflite")
    sparse = to_tflite(model, "fp32", sparse=True)
    write_atomically(sparse_path, sparse)
    with tempfile.TemporaryDirectory() as scratch:
        dense_path = os.path.join(scratch, "model_dense_fp32.tflite")
        write_atomically(dense_path, to_tflite(model, "fp32"))
        dense_result, sparse_result = bench_host([dense_path, sparse_path], threads=1, runs=runs)
    return {"dense_p50_ms": dense_result.p50_ms, "sparse_p50_ms": sparse_result.p50_ms,
            "speedup": dense_result.p50_ms / sparse_result.p50_ms, "runs": runs,
            "pointwise_sparsity": pointwise_sparsity(model),
            "densify_ops": inspect_tflite(sparse).ops.count("DENSIFY")}


def qat_run(model_path, data, out, epochs=1, lr=1e-4, batch_size=128, data_dir=None, quiet=True, val_fraction=0.1,
            calibration_steps=256, range_quantile=1.0, holdout_seed=0):
    """Quantization-aware fine-tuning of a .keras model into ``out`` (model.h5 is the QAT model).

    A pruned model (>= 30 % zero weights) uses tfmot's sparsity-preserving scheme. The activation
    ranges start from the float model's on ``calibration_steps`` training images, as int8 PTQ's
    (``optimize.qat.calibrated_ranges``; with ``range_quantile`` < 1 clipped to that quantile of
    the per-image extremes and kept so through training, ``KeepRanges``); BatchNorm statistics
    stay frozen while it trains.

    Returns:
        The report dict (val accuracy of the float model and of the QAT model, sparsity kept).
    """
    from mobilecls.export.quantize import calibration_images
    from mobilecls.optimize.prune import overall_sparsity
    from mobilecls.optimize.qat import PRUNED_THRESHOLD, KeepRanges, frozen_batchnorm, qat

    _output_folder(out)
    model, dataset = _load(model_path, data, data_dir, val_fraction, holdout_seed)
    before = fine_tune(model, dataset, 0, lr, batch_size)
    sparsity = overall_sparsity(model)
    quantized = qat(model, calibration=calibration_images(dataset, calibration_steps), range_quantile=range_quantile)
    callbacks = [KeepRanges(quantized)] if range_quantile < 1 else []
    with frozen_batchnorm(quantized):
        after = fine_tune(quantized, dataset, epochs, lr, batch_size, callbacks=callbacks, quiet=quiet)
    report = {"source": model_path, "epochs": epochs, "val_accuracy_float": before, "val_accuracy_qat": after,
              **({"range_quantile": range_quantile} if range_quantile < 1 else {}),
              "sparsity_preserving": sparsity >= PRUNED_THRESHOLD, "sparsity_before": sparsity}
    with staging_folder(out) as staging:
        _write_outputs(staging, quantized, report, dataset)
    return report
