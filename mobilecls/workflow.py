"""`pipeline`: fit -> prune (if asked) -> QAT -> quantize -> eval -> bench -> report, resumable.

Each stage writes into its own place in the run folder and is skipped when its output is
already there, so an interrupted pipeline continues where it stopped.
"""

import os

from mobilecls import recipes


def _done(path):
    return os.path.exists(path)


def _log(quiet, message):
    if not quiet:
        print(f"[pipeline] {message}", flush=True)


def default_folder(recipe_path):
    """Where `mobilecls pipeline` runs when no --out is given: runs/pipeline-<recipe file name>."""
    return os.path.join("runs", "pipeline-" + os.path.splitext(os.path.basename(recipe_path))[0])


def run_pipeline(recipe, out, quiet=False, bench_threads=(1, 2), bench_runs=30):
    """Run every stage of ``recipe`` into ``out``; returns the report table (Markdown).

    Layout: fit/ (the training run), prune/ and qat/ (optimisation outputs), tflite/*.tflite
    (fp32, fp16, dynamic, int8_ptq, int8_qat; fp32_mirror, int8_qat_mirror with ``optimize.mirror_average``;
    fp32_mirror_shift, int8_qat_mirror_shift with ``optimize.shift_average`` too), eval/*.json, bench.json,
    report/table.md and report/pareto.png.
    """
    from mobilecls.evaluation.evaluate import evaluate
    from mobilecls.export.quantize import quantize
    from mobilecls.files import write_json
    from mobilecls.optimize.runs import prune_run, qat_run

    if isinstance(recipe, str):
        recipe = recipes.load(recipe)
    saved = os.path.join(out, "recipe.yaml")
    if os.path.isfile(saved):
        if recipes.load(saved) != recipe:
            raise ValueError(f"{out} holds a pipeline of another recipe ({saved}); choose another --out")
    elif os.path.isfile(out) or (os.path.isdir(out) and os.listdir(out)):
        raise ValueError(f"--out {out} exists and is not a pipeline folder (no recipe.yaml); choose another --out")
    else:
        os.makedirs(out, exist_ok=True)
        recipes.save(recipe, saved)
    data, data_dir = recipe.data.spec, recipe.data.data_dir
    # every stage evaluates on the images fit held out
    holdout = {"val_fraction": recipe.data.val_fraction, "holdout_seed": recipe.data.holdout_seed}

    fit_dir = os.path.join(out, "fit")
    if not _done(os.path.join(fit_dir, "metrics.json")):
        from mobilecls.training.train import fit

        resume = os.path.isfile(os.path.join(fit_dir, "recipe.yaml"))
        _log(quiet, "fit" + (" (resuming)" if resume else ""))
        fit(recipe, fit_dir, resume=resume, quiet=quiet)
    float_model = os.path.join(fit_dir, "best.keras")

    source = float_model
    if recipe.optimize.prune_sparsity:
        prune_dir = os.path.join(out, "prune")
        if not _done(os.path.join(prune_dir, "report.json")):
            _log(quiet, f"prune to {recipe.optimize.prune_sparsity:.0%}")
            prune_run(float_model, data, prune_dir, sparsity=recipe.optimize.prune_sparsity,
                      epochs=recipe.optimize.prune_epochs, lr=recipe.optimize.prune_lr, data_dir=data_dir, quiet=quiet,
                      **holdout)
        source = os.path.join(prune_dir, "model.keras")

    qat_dir = os.path.join(out, "qat")
    if not _done(os.path.join(qat_dir, "report.json")):
        _log(quiet, "quantization-aware training")
        qat_run(source, data, qat_dir, epochs=recipe.optimize.qat_epochs, lr=recipe.optimize.qat_lr,
                data_dir=data_dir, quiet=quiet, **holdout,
                calibration_steps=recipe.optimize.calibration_steps, range_quantile=recipe.optimize.range_quantile)
    qat_model = next(os.path.join(qat_dir, name) for name in ("model.h5", "model.keras")
                     if os.path.isfile(os.path.join(qat_dir, name)))

    # (model, mode, activation range quantile, views averaged: mirror, shift): only post-training int8
    # calibrates ranges; quantize's default I/O (uint8 for int8 files)
    calibrated, one = recipe.optimize.range_quantile, (False, False)
    exports = {"fp32": (float_model, "fp32", 1.0, one), "fp16": (float_model, "fp16", 1.0, one),
               "dynamic": (float_model, "dynamic", 1.0, one), "int8_ptq": (float_model, "int8", calibrated, one),
               "int8_qat": (qat_model, "int8", 1.0, one)}
    for suffix, views, wanted in (("_mirror", (True, False), recipe.optimize.mirror_average),
                                  ("_mirror_shift", (True, True), recipe.optimize.shift_average)):
        if wanted:
            exports.update({"fp32" + suffix: (float_model, "fp32", 1.0, views),
                            "int8_qat" + suffix: (qat_model, "int8", 1.0, views)})
    files = {}
    for name, (model_path, mode, range_quantile, (mirror, shift)) in exports.items():
        files[name] = os.path.join(out, "tflite", f"{recipe.model.name}_{name}.tflite")
        if not _done(files[name]):
            _log(quiet, f"quantize {name}")
            quantize(model_path, mode, files[name], data=data, data_dir=data_dir,
                     calibration_steps=recipe.optimize.calibration_steps, range_quantile=range_quantile,
                     class_names=_class_names(fit_dir), **holdout, mirror=mirror, shift=shift)

    results = []
    for name, path in files.items():
        result = os.path.join(out, "eval", f"{name}.json")
        if not _done(result):
            _log(quiet, f"eval {name}")
            write_json(result, evaluate(path, data, data_dir=data_dir, **holdout))
        results.append(result)
    bench_file = os.path.join(out, "bench.json")
    if not _done(bench_file):
        from mobilecls.bench import result as bench_results
        from mobilecls.bench.host import bench_host

        _log(quiet, "bench")
        bench_results.write_json(bench_file, bench_host(list(files.values()), threads=bench_threads, runs=bench_runs))
    from mobilecls.reporting.report import report

    _log(quiet, "report")
    return report([*results, bench_file], os.path.join(out, "report"))


def _class_names(fit_dir):
    import json

    with open(os.path.join(fit_dir, "classes.json"), encoding="utf-8") as handle:
        return json.load(handle)
