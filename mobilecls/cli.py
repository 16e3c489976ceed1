"""The `mobilecls` command line: thin commands that parse, call the library and print.

TensorFlow is imported only inside commands, so `mobilecls --help` answers instantly. Library
errors (ValueError, FileNotFoundError) become one-line click errors with exit status 2; a full
disk, a failing device and an interrupt are one line with exit status 1.
"""

import errno
import functools
import json

import click

from mobilecls.files import check_output_file  # no TensorFlow import either
from mobilecls.models.registry import list_models  # no TensorFlow import


def _library_errors(command):
    """Turn the library's errors into one line: a user's mistake (ValueError, FileNotFoundError)
    exits 2, a failed run (RunFailed) exits 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from mobilecls.errors import RunFailed

        try:
            return command(*args, **kwargs)
        except (ValueError, FileNotFoundError) as error:
            raise click.UsageError(str(error)) from None
        except RunFailed as error:
            raise click.ClickException(str(error)) from None
        except Exception as error:
            if _disk_full(error):
                raise click.ClickException(f"no space left on device ({str(error).splitlines()[0][:200]}); free "
                                           "some space and run the command again: files written before are "
                                           "intact") from None
            raise

    return wrapper


def _disk_full(error):
    """ENOSPC, however it arrives (OSError, h5py, or TensorFlow's ResourceExhaustedError)."""
    return getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)


def _model_options(command):
    for option in reversed((
        click.option("--input-size", type=int, default=224, show_default=True, help="Square input side."),
        click.option("--num-classes", type=int, default=1000, show_default=True),
        click.option("--width", type=float, default=1.0, show_default=True, help="Width multiplier."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
    )):
        command = option(command)
    return command


def _human(count):
    return f"{count / 1e6:.2f}M"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mobilecls")
def main():
    """Build, train, quantize and benchmark MobileNet / ShuffleNet classifiers for mobile."""


@main.command()
@_model_options
@_library_errors
def models(input_size, num_classes, width, as_json):
    """List every model with its parameters and MACs.

    Example: mobilecls models --input-size 224 --width 1.0
    """
    from mobilecls.models.profile import summarize

    rows = [summarize(name, width=width, input_size=input_size, num_classes=num_classes)
            for name in list_models()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'model':<20} {'width':>5} {'params':>8} {'MACs':>9}   (input {input_size}, {num_classes} classes)")
    for row in rows:
        click.echo(f"{row['name']:<20} {row['width']:>5g} {_human(row['params']):>8} {_human(row['macs']):>9}")


@main.command()
@click.argument("name", type=click.Choice(list_models()))
@_model_options
@_library_errors
def profile(name, input_size, num_classes, width, as_json):
    """Per-layer MACs of one model with the study's formulas (eqs. 1-4).

    Example: mobilecls profile mobilenet_v1 --input-size 224
    """
    from mobilecls.models.profile import layer_report

    result = layer_report(name, width=width, input_size=input_size, num_classes=num_classes)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{'layer':<36} {'kind':<10} {'formula':<10} {'output':<14} {'MACs':>12} {'params':>9}")
    for c in result["layers"]:
        output = "x".join(map(str, c["output"]))
        click.echo(f"{c['name']:<36} {c['kind']:<10} {c['formula']:<10} {output:<14} {c['macs']:>12,} "
                   f"{c['params']:>9,}")
    click.echo(f"{'total':<36} {'':<10} {'':<10} {'':<14} {result['macs']:>12,} {result['params']:>9,}")


@main.command()
@click.option("--recipe", "recipe_path", type=click.Path(), help="Recipe YAML (see recipes/).")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one recipe value, e.g. --set optimizer.lr=0.05 (repeatable).")
@click.option("--model", help="Same as --set model.name=NAME.")
@click.option("--data", help="Same as --set data.spec=SPEC (synthetic, cifar10, folder:PATH, tfds:NAME).")
@click.option("--data-dir", help="Same as --set data.data_dir=DIR (TFDS data_dir).")
@click.option("--epochs", type=int, help="Same as --set train.epochs=N.")
@click.option("--batch-size", type=int, help="Same as --set train.batch_size=N.")
@click.option("--seed", type=int, help="Same as --set train.seed=N.")
@click.option("--time-budget", type=float, metavar="MINUTES",
              help="Same as --set train.time_budget_minutes=M: train as many epochs as fit in M minutes here.")
@click.option("--out", type=click.Path(), help="Run folder (default runs/<model>-<time>).")
@click.option("--resume", type=click.Path(), help="Continue the run in this folder where it stopped.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default="default",
              show_default=True, help="tf.distribute: local devices (mirrored) or TF_CONFIG workers (multiworker).")
@_library_errors
def fit(recipe_path, assignments, model, data, data_dir, epochs, batch_size, seed, time_budget, out, resume, quiet,
        strategy):
    """Train a model from a recipe into a run folder.

    Example: mobilecls fit --recipe recipes/demo.yaml --out runs/demo
    """
    import os

    from mobilecls import recipes

    if resume:
        # A resumed run continues exactly what its run folder recorded (schedule, data order):
        # options that would change the recipe or the folder are refused, not silently ignored.
        given = {"--recipe": recipe_path, "--set": assignments, "--model": model, "--data": data,
                 "--data-dir": data_dir, "--epochs": epochs, "--batch-size": batch_size, "--seed": seed,
                 "--time-budget": time_budget, "--out": out}
        refused = [name for name, value in given.items() if value not in (None, ())]
        if refused:
            raise click.UsageError(f"--resume continues {resume} with the recipe it recorded; it cannot take "
                                   f"{', '.join(refused)} (start a new run with --out to change them)")
        recipe, out = None, resume
    else:
        recipe = recipes.resolve(recipe_path, assignments, model=model, data=data, data_dir=data_dir, epochs=epochs,
                                 batch_size=batch_size, seed=seed, time_budget=time_budget)
    from mobilecls.training.train import default_run_folder
    from mobilecls.training.train import fit as fit_recipe

    out = out or default_run_folder(recipe)

    try:
        run = fit_recipe(recipe, out, resume=bool(resume), quiet=quiet, strategy=strategy)
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; resume with: mobilecls fit --resume {out}") from None
    except Exception as error:
        if _disk_full(error) and os.path.isfile(os.path.join(out, "state.json")):
            raise click.ClickException(f"no space left on device; the epochs finished so far are kept: free "
                                       f"some space and resume with: mobilecls fit --resume {out}") from None
        raise
    val = run.metrics["val"]
    click.echo(f"{run.path}: val accuracy {val['accuracy']:.4f}, top-5 {val['top5']:.4f}, "
               f"macro recall {val['recall']:.4f}, F1 {val['f1']:.4f}, "
               f"{run.metrics['train_images_per_sec']:.0f} images/s, {run.metrics['wall_time_s']:.0f} s")


# eval, quantize, prune and qat must evaluate on the images fit held out: the same holdout as its recipe.
# The defaults are recipes.DataSection's (not imported here: the CLI starts without it; tests/test_cli.py checks).
def holdout_options(command):
    """--val-fraction and --holdout-seed: the fit's data.val_fraction and data.holdout_seed."""
    command = click.option(
        "--holdout-seed", type=click.IntRange(min=0), default=0, show_default=True,
        help="Seed of the held-out val images when the data has no val split: the fit's data.holdout_seed.")(command)
    return click.option(
        "--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True,
        help="Share of train held out as val when the data has no val split: the fit's data.val_fraction.")(command)


range_quantile_option = click.option(
    "--range-quantile", type=click.FloatRange(0.5, 1), default=1.0, show_default=True,
    help="Calibrated int8 activation ranges span this quantile of the per-image extremes over the calibration "
         "images; 1 = their min/max (the converter's). 0.95 keeps a few images with rare large activations "
         "from starving the others (for qat: the start, kept through training).")


@main.command()
@click.argument("model_path", metavar="MODEL.keras", type=click.Path())
@click.option("--fp32", "mode", flag_value="fp32", help="Float32 (the default).", default=True)
@click.option("--fp16", "mode", flag_value="fp16", help="Float16 weights.")
@click.option("--dynamic", "mode", flag_value="dynamic", help="Int8 weights, float activations.")
@click.option("--int8", "mode", flag_value="int8", help="Full integer (QAT model as it is, else PTQ).")
@click.option("--int16x8", "mode", flag_value="int16x8", help="Int16 activations, int8 weights.")
@click.option("--data", help="Calibration data and class names (synthetic, cifar10, folder:PATH, tfds:NAME).")
@click.option("--data-dir", help="TFDS data_dir.")
@holdout_options
@click.option("--calibration-steps", type=int, default=256, show_default=True,
              help="Calibration images (stratified over the training split).")
@range_quantile_option
@click.option("--io", type=click.Choice(["float32", "int8", "uint8"]), default=None,
              help="Input/output type of integer models [default: uint8 for --int8 (uint8 pixels in, "
                   "MediaPipe's type), float32 otherwise; int8: value = pixel - 128].")
@click.option("--logits", is_flag=True, help="Keep the logits as output (default: a softmax, probabilities).")
@click.option("--mirror", is_flag=True,
              help="Average the logits over the image and its mirror image, in one pass at batch 2 inside the file "
                   "(1.5-1.9x the latency at 1 thread; +0.6 to +1.2 val points on the study's models).")
@click.option("--shift", is_flag=True,
              help="With --mirror: six views at batch 6, the image and its mirror image each also shifted one pixel "
                   "up-left and down-right (3.8-5.6x the latency at 1 thread; +1.0 to +1.6 val points on the study's "
                   "models).")
@click.option("--author", help="Author for the file's TFLite Metadata.")
@click.option("--license", "license_", help="Licence for the file's TFLite Metadata.")
@click.option("-o", "--out", "out", type=click.Path(), help="Output .tflite (default: beside the model).")
@click.option("--report", is_flag=True,
              help="With --int8 from a float model: per-layer PTQ error, the worst layers, and the accuracy "
                   "with them kept in float (written to OUT_report.json).")
@_library_errors
def quantize(model_path, mode, data, data_dir, val_fraction, holdout_seed, calibration_steps, range_quantile, io,
             logits, mirror, shift, author, license_, out, report):
    """Convert a .keras model to a checked .tflite file (static batch 1, softmax, TFLite Metadata).

    Example: mobilecls quantize runs/demo/best.keras --int8 --data synthetic --report
    """
    import os

    from mobilecls.export.quantize import default_output, report_path
    from mobilecls.export.quantize import quantize as quantize_model

    if report and (mode != "int8" or not data):
        raise click.UsageError("--report needs --int8 and --data (it debugs post-training quantization)")
    if report and mirror:
        raise click.UsageError("--report debugs the model's own post-training quantization: run it without --mirror")
    out = out or default_output(model_path, mode, mirror, shift)
    graph, meta = quantize_model(model_path, mode, out, data=data, calibration_steps=calibration_steps, io=io,
                                 data_dir=data_dir, logits=logits, author=author, license=license_,
                                 val_fraction=val_fraction, holdout_seed=holdout_seed, range_quantile=range_quantile,
                                 mirror=mirror, shift=shift)
    from mobilecls.export.metadata import min_runtime_version
    from mobilecls.files import read_tflite

    click.echo(f"{out}: {mode}, {os.path.getsize(out) / 1e6:.2f} MB, input {graph.input_shape} "
               f"{graph.input_dtype}, output {graph.output_dtype} "
               f"{'probabilities' if meta['probabilities'] else 'logits'}, {len(graph.ops)} ops, "
               f"{graph.partitions} XNNPACK partition(s), "
               f"min runtime {min_runtime_version(read_tflite(out)) or 'unknown'}")
    if report:
        _quantization_report(model_path, data, data_dir, val_fraction, holdout_seed, calibration_steps, range_quantile,
                             report_path(out))


def _quantization_report(model_path, data, data_dir, val_fraction, holdout_seed, calibration_steps, range_quantile,
                         json_out):
    from mobilecls.export.quantize import ptq_report
    from mobilecls.files import write_json

    result = ptq_report(model_path, data, calibration_steps=calibration_steps, data_dir=data_dir,
                        val_fraction=val_fraction, holdout_seed=holdout_seed, range_quantile=range_quantile)
    write_json(json_out, result)
    by_tensor = {row["tensor"]: row for row in result["layers"]}
    click.echo(f"per-layer PTQ error (RMSE / scale; rounding alone gives {result['rounding_noise']:.2f}), worst:")
    for tensor in result["worst"]:
        row = by_tensor[tensor]
        click.echo(f"  {row['rmse_over_scale']:8.3f}  {row['op']:<18} {row['layer']}")
    accuracy = result["accuracy"]
    click.echo(f"{result['split']} accuracy: float {accuracy['float']:.4f}, int8 {accuracy['int8']:.4f}, int8 with "
               f"those {len(result['worst'])} in float {accuracy['int8_worst_in_float']:.4f} ({json_out})")


@main.command()
@click.argument("paths", metavar="MODEL.tflite...", nargs=-1, required=True, type=click.Path())
@click.option("--classes", "classes_path", type=click.Path(), help="JSON list of class names (default: the file's).")
@click.option("--data", help="Check top-1 on this data's val split (default: 64 random pixel images).")
@click.option("--data-dir", help="TFDS data_dir.")
@click.option("--logits", is_flag=True, help="Add no softmax.")
@click.option("--io", type=click.Choice(["uint8", "keep"]), default="uint8", show_default=True,
              help="uint8: turn int8 input/output into uint8.")
@click.option("--author", help="Author for the TFLite Metadata.")
@click.option("--license", "license_", help="Licence for the TFLite Metadata.")
@_library_errors
def upgrade(paths, classes_path, data, data_dir, logits, io, author, license_):
    """Make existing .tflite files run in MediaPipe / the Task Library / tflite-runtime 2.14, in place.

    Adds standard TFLite Metadata (labels, normalization), a softmax and uint8 I/O, and stores
    per-channel hybrid dense weights as float; each file is replaced atomically only if top-1 is unchanged.

    Example: mobilecls upgrade tflite_models/cifar10/*/*.tflite --data folder:/tmp/cifar10
    """
    from mobilecls.export.packaging import upgrade_file

    names = None
    if classes_path:
        with open(classes_path, encoding="utf-8") as handle:
            names = list(json.load(handle))
    images = None
    if data:
        from mobilecls.data import load

        images = load(data, data_dir=data_dir).splits["val"].images
    for path in paths:
        result = upgrade_file(path, class_names=names, images=images, softmax=not logits, uint8_io=io == "uint8",
                              author=author, license=license_)
        click.echo(f"{path}: io {'/'.join(result['io'])}, softmax {'added' if result['softmax_added'] else 'kept'}, "
                   f"{result['float_dense_ops']} dense op(s) to float, top-1 kept on {result['top1_agreement']:.2%} "
                   f"of {result['images']} images, {result['partitions']} XNNPACK partition(s)")


@main.command(name="eval")
@click.argument("model_paths", metavar="MODEL(.tflite|.keras|.h5) [MODEL2]", nargs=-1, required=True,
                type=click.Path())
@click.option("--data", required=True, help="Dataset spec (synthetic, cifar10, folder:PATH, tfds:NAME).")
@click.option("--data-dir", help="TFDS data_dir.")
@holdout_options
@click.option("--split", default="val", show_default=True, type=click.Choice(["val", "test", "train"]))
@click.option("--compare", is_flag=True, help="Compare two models: top-1 agreement and output differences.")
@click.option("--json", "json_out", type=click.Path(), help="Also write the result to this JSON file.")
@_library_errors
def evaluate(model_paths, data, data_dir, val_fraction, holdout_seed, split, compare, json_out):
    """Accuracy, top-5, macro precision/recall/F1 and images/s of a model, or --compare two.

    Examples: mobilecls eval runs/demo/best_int8.tflite --data synthetic --split test
              mobilecls eval --compare runs/qat/model.h5 runs/qat/model_int8.tflite --data synthetic
    """
    from mobilecls.evaluation import evaluate as evaluation

    if json_out:
        check_output_file(json_out, "--json")
    if len(model_paths) != (2 if compare else 1):
        raise click.UsageError("--compare takes exactly two models" if compare else "give one model (or --compare A B)")
    if compare:
        result = evaluation.compare(*model_paths, data, split=split, data_dir=data_dir, val_fraction=val_fraction,
                                    holdout_seed=holdout_seed)
        summary = (f"{result['samples']} {split} images: top-1 agreement {result['top1_agreement']:.4f}, "
                   f"largest output difference {result['max_abs_difference']:.4g} "
                   f"(image {result['worst_image_index']}), mean {result['mean_abs_difference']:.4g}; "
                   f"accuracy {result['accuracy'][0]:.4f} vs {result['accuracy'][1]:.4f}")
        divergence = result["divergence"]
        summary += ("\nno layer diverges" if divergence["first_divergent_layer"] is None else
                    f"\nfirst diverging layer: {divergence['first_divergent_layer']} (relative error "
                    f"{divergence['first_divergent_error']:.3f} > {divergence['tolerance']})")
        summary += f" over {len(divergence['layers'])} matched layers"
    else:
        result = evaluation.evaluate(model_paths[0], data, split=split, data_dir=data_dir, val_fraction=val_fraction,
                                    holdout_seed=holdout_seed)
        summary = (f"{model_paths[0]} on {data} [{split}, {result['samples']} images]: accuracy "
                   f"{result['accuracy']:.4f}, top-5 {result['top5']:.4f}, precision {result['precision']:.4f}, "
                   f"recall {result['recall']:.4f}, F1 {result['f1']:.4f}, {result['images_per_sec']:.0f} images/s")
    if json_out:
        from mobilecls.files import write_json

        write_json(json_out, result)
    click.echo(summary)


def _fine_tune_options(epochs, lr):
    def decorate(command):
        for option in reversed((
            click.argument("model_path", metavar="MODEL.keras", type=click.Path()),
            click.option("--data", required=True, help="Dataset spec the model was trained on."),
            click.option("--data-dir", help="TFDS data_dir."),
            holdout_options,
            click.option("--epochs", type=int, default=epochs, show_default=True, help="Fine-tuning epochs."),
            click.option("--lr", type=float, default=lr, show_default=True, help="Starting learning rate (cosine)."),
            click.option("--batch-size", type=int, default=128, show_default=True),
            click.option("--out", required=True, type=click.Path(), help="Output folder (new or empty)."),
            click.option("--quiet", is_flag=True, help="No progress output."),
        )):
            command = option(command)
        return command

    return decorate


@main.command(name="prune")
@_fine_tune_options(epochs=5, lr=0.01)
@click.option("--sparsity", type=float, default=0.5, show_default=True, help="Target fraction of zero weights.")
@click.option("--schedule", type=click.Choice(["polynomial", "constant"]), default="polynomial", show_default=True)
@click.option("--structured", metavar="N:M", help="Block sparsity, e.g. 2:4.")
@click.option("--policy", type=click.Choice(["all", "xnnpack"]), default="all", show_default=True,
              help="xnnpack: prune only 1x1 convs of a model XNNPACK can run sparse (PruneForLatencyOnXNNPack), "
                   "write a sparse fp32 .tflite and measure whether it runs faster.")
@click.option("--distill", type=float, default=0.0, show_default=True,
              help="Knowledge distillation: weight 0..1 of the teacher's class probabilities in the "
                   "fine-tuning targets.")
@click.option("--teacher", "teacher_path", metavar="MODEL.keras",
              help="Teacher for --distill (default: the input model), e.g. the dense model of an already pruned one.")
@_library_errors
def prune_command(model_path, data, data_dir, val_fraction, holdout_seed, epochs, lr, batch_size, out, quiet, sparsity,
                  schedule, structured, policy, distill, teacher_path):
    """Magnitude pruning (tfmot) + fine-tuning; writes the pruned model and its sparsity.

    Example: mobilecls prune runs/demo/best.keras --data synthetic --sparsity 0.5 --out runs/demo-pruned
    """
    from mobilecls.optimize.runs import prune_run

    report = prune_run(model_path, data, out, sparsity=sparsity, schedule=schedule, structured=structured,
                       epochs=epochs, lr=lr, batch_size=batch_size, data_dir=data_dir, quiet=quiet, policy=policy,
                       distill=distill, teacher_path=teacher_path, val_fraction=val_fraction,
                       holdout_seed=holdout_seed)
    gz = report["tflite_fp32_gzip_bytes"]
    click.echo(f"{out}: sparsity {report['sparsity']:.3f}, val accuracy {report['val_accuracy_before']:.4f} -> "
               f"{report['val_accuracy_after']:.4f}, gzip .tflite {gz['before'] / 1e6:.2f} -> "
               f"{gz['after'] / 1e6:.2f} MB")
    if report["xnnpack_sparse_qualifies"] and policy != "xnnpack":
        click.echo("this model qualifies for XNNPACK sparse inference: try --policy xnnpack --sparsity 0.75")
    if "xnnpack_sparse" in report:
        sparse = report["xnnpack_sparse"]
        click.echo(f"XNNPACK sparse inference: 1x1 convs {sparse['pointwise_sparsity']:.0%} zeros, p50 "
                   f"{sparse['dense_p50_ms']:.3f} ms dense -> {sparse['sparse_p50_ms']:.3f} ms sparse "
                   f"({sparse['speedup']:.2f}x), {out}/model_sparse_fp32.tflite")


@main.command(name="qat")
@_fine_tune_options(epochs=1, lr=1e-4)
@range_quantile_option
@_library_errors
def qat_command(model_path, data, data_dir, val_fraction, holdout_seed, epochs, lr, batch_size, out, quiet,
                range_quantile):
    """Quantization-aware fine-tuning (tfmot, 8-bit; sparsity-preserving for pruned models).

    Example: mobilecls qat runs/demo/best.keras --data synthetic --epochs 2 --out runs/demo-qat
    """
    from mobilecls.optimize.runs import qat_run

    report = qat_run(model_path, data, out, epochs=epochs, lr=lr, batch_size=batch_size, data_dir=data_dir,
                     quiet=quiet, val_fraction=val_fraction, holdout_seed=holdout_seed, range_quantile=range_quantile)
    click.echo(f"{out}: val accuracy float {report['val_accuracy_float']:.4f}, QAT {report['val_accuracy_qat']:.4f}"
               + (" (sparsity preserved)" if report["sparsity_preserving"] else ""))


def _thread_list(_context, _parameter, value):
    try:
        threads = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,2,4, got {value!r}") from None
    return threads


@main.command()
@click.argument("models", metavar="MODEL.tflite...", nargs=-1, required=True, type=click.Path())
@click.option("--threads", default="1", show_default=True, callback=_thread_list, help="Thread counts, e.g. 1,2,4.")
@click.option("--runs", type=int, default=50, show_default=True, help="Timed invokes per model and thread count.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed invokes first.")
@click.option("--min-seconds", type=float, default=0.0, show_default=True, help="Keep timing at least this long.")
@click.option("--json", "json_out", type=click.Path(), help="Write the results as JSON.")
@click.option("--csv", "csv_out", type=click.Path(), help="Write the results as CSV.")
@click.option("--adb", is_flag=True, help="Run on Android devices with TFLite's benchmark_model over adb.")
@click.option("--serial", multiple=True, help="adb device serial (repeatable; default: all connected).")
@click.option("--benchmark-binary", type=click.Path(), help="benchmark_model for the device ABI "
              "(default $MOBILECLS_BENCHMARK_MODEL).")
@click.option("--use-gpu", is_flag=True, help="adb: --use_gpu.")
@click.option("--no-xnnpack", is_flag=True, help="adb: run without the XNNPACK delegate.")
@click.option("--op-profiling", is_flag=True, help="adb: --enable_op_profiling.")
@click.option("--cpu-mask", help="adb: run under taskset with this CPU mask (e.g. f0).")
@click.option("--timeout", type=float, default=300, show_default=True, help="adb: seconds per benchmark run.")
@_library_errors
def bench(models, threads, runs, warmup, min_seconds, json_out, csv_out, adb, serial, benchmark_binary, use_gpu,
          no_xnnpack, op_profiling, cpu_mask, timeout):
    """Latency of .tflite files on this host (LiteRT) or on devices over adb.

    Examples: mobilecls bench a.tflite b.tflite --threads 1,2 --json bench.json
              mobilecls bench a.tflite --adb --serial emulator-5554 --benchmark-binary ./benchmark_model
    """
    from mobilecls.bench import result as results

    for path, option in ((json_out, "--json"), (csv_out, "--csv")):
        if path:
            check_output_file(path, option)
    if adb:
        from mobilecls.bench.adb import DeviceError, bench_adb

        try:
            measured = bench_adb(models, serials=list(serial) or None, threads=threads, binary=benchmark_binary,
                                 use_xnnpack=not no_xnnpack, use_gpu=use_gpu, op_profiling=op_profiling,
                                 cpu_mask=cpu_mask, timeout=timeout, num_runs=runs, warmup_runs=warmup)
        except DeviceError as error:
            raise click.ClickException(str(error)) from None
    else:
        from mobilecls.bench.host import bench_host

        measured = bench_host(models, threads=threads, runs=runs, warmup=warmup, min_seconds=min_seconds)
    if json_out:
        results.write_json(json_out, measured)
    if csv_out:
        results.write_csv(csv_out, measured)
    for row in measured:
        click.echo(row.summary_line())


@main.command(name="report")
@click.argument("results", metavar="RESULT.json...", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", "out_dir", default="report", show_default=True, type=click.Path(),
              help="Folder for table.md and pareto.png.")
@_library_errors
def report_command(results, out_dir):
    """Merge `eval --json` and `bench --json` files into a Markdown table and a Pareto plot.

    Example: mobilecls report runs/*/eval.json bench.json -o report
    """
    from mobilecls.reporting.report import report

    click.echo(report(results, out_dir), nl=False)
    click.echo(f"wrote {out_dir}/table.md and {out_dir}/pareto.png")


@main.command(name="study")
@click.argument("study_path", metavar="STUDY.yaml", type=click.Path())
@click.option("-o", "--out", "out_dir", default="study", show_default=True, type=click.Path(),
              help="Folder for study.md (Tables I and II), study.json and fig3.png.")
@click.option("--partial", is_flag=True, help="Leave out the runs whose files do not exist yet (study.md lists "
              "them; a member with none says 'not run') instead of refusing the study.")
@_library_errors
def study_command(study_path, out_dir, partial):
    """The study's Tables I and II and Fig. 3 from the runs' eval and bench JSON files.

    Example: mobilecls study study/cifar10.yaml -o study/cifar10 --partial
    """
    from mobilecls.reporting.study import study_report

    click.echo(study_report(study_path, out_dir, partial=partial), nl=False)
    click.echo(f"wrote {out_dir}/study.md, {out_dir}/study.json and {out_dir}/fig3.png")


@main.command(name="zoo")
@click.argument("root", default="tflite_models", type=click.Path())
@click.option("--check", is_flag=True, help="Only compare index.json with the files; exit 1 if they disagree.")
@click.option("--cards", is_flag=True, help="Also (re)write README.md, the model card, in every model folder.")
@click.option("--no-profile", is_flag=True, help="Leave out parameters and MACs (no TensorFlow import).")
@_library_errors
def zoo_command(root, check, cards, no_profile):
    """(Re)generate ROOT/index.json (and model cards) from the shipped .tflite files and run files.

    Example: mobilecls zoo tflite_models --cards
    """
    from mobilecls.reporting import zoo

    if check:
        problems = zoo.check_index(root, gzip=True)
        for problem in problems:
            click.echo(problem)
        if problems:
            raise click.ClickException(f"{len(problems)} disagreement(s) between {root}/index.json and the files")
        click.echo(f"{root}/index.json agrees with the files")
        return
    index = zoo.write_index(root, profile=not no_profile)
    click.echo(f"{root}/index.json: {len(index)} files")
    if cards:
        for path in zoo.write_cards(root, index):
            click.echo(f"wrote {path}")


@main.command()
@click.option("--recipe", "recipe_path", required=True, type=click.Path(), help="Recipe YAML (see recipes/).")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a recipe value.")
@click.option("--out", type=click.Path(), help="Pipeline folder (default runs/pipeline-<recipe name>).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@_library_errors
def pipeline(recipe_path, assignments, out, quiet):
    """The main job: fit -> prune -> QAT -> quantize -> eval -> bench -> report (resumable).

    Example: mobilecls pipeline --recipe recipes/demo.yaml --out runs/demo
    """
    from mobilecls import recipes
    from mobilecls.workflow import default_folder, run_pipeline

    recipe = recipes.resolve(recipe_path, assignments)
    out = out or default_folder(recipe_path)
    table = run_pipeline(recipe, out, quiet=quiet)
    click.echo(table, nl=False)
    click.echo(f"report: {out}/report/table.md, {out}/report/pareto.png")


if __name__ == "__main__":
    main()
