"""A user's mistake or a full disk is one line and a non-zero exit, and leaves nothing half-made."""

import errno
import json
import os
import shutil

import pytest
from click.testing import CliRunner
from tiny import folder_recipe, write_tiny_images

from mobilecls import files, recipes
from mobilecls.cli import main


def _tiny(images, **changes):
    return folder_recipe(images, **changes)  # the tiny folder recipe (tests/tiny.py)


def _invoke(*arguments):
    result = CliRunner().invoke(main, [str(argument) for argument in arguments])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _one_line_error(result, status=2):
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def tiny_model(tiny_run):
    """A trained tiny run: best.keras with classes.json beside it (the session's run, conftest.py)."""
    return tiny_run


@pytest.fixture(scope="module")
def tiny_tflite(tiny_fp32):
    return tiny_fp32


# fit ----------------------------------------------------------------------------------------------

def test_a_model_that_cannot_be_built_leaves_no_run_folder(tmp_path, tiny_images):
    out = tmp_path / "run"
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--set", "model.width=-1", "--out", out))
    assert "model.width must be > 0, got -1" in message and not out.exists()
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--set", "optimizer.ema_decay=1", "--out", out))
    assert "optimizer.ema_decay must be in (0, 1)" in message and not out.exists()
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--set", "optimize.range_quantile=2", "--out",
                                      out))
    assert "optimize.range_quantile must be in [0.5, 1] (1 = min / max), got 2" in message and not out.exists()
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--set", "optimize.shift_average=true",
                                      "--out", out))
    assert "optimize.shift_average adds shifted views to optimize.mirror_average's two: set both" in message
    assert not out.exists()
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--set", "train.low_resolution=4",
                                      "--out", out))
    assert "train.low_resolution must be >= 8 pixels (or null), got 4" in message and not out.exists()
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--set", "train.low_resolution_fraction=1",
                                      "--out", out))
    assert "train.low_resolution_fraction must be in (0, 1), got 1.0" in message and not out.exists()
    # after the data loaded: a low resolution that is not lower, a model that takes one size only
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--data", f"folder:{tiny_images}",
                                      "--set", "train.low_resolution=32", "--out", out))
    assert "train.low_resolution=32 must be smaller than the model's input size 32" in message
    message = _one_line_error(_invoke("fit", "--model", "shufflenet_v1", "--data", f"folder:{tiny_images}",
                                      "--set", "train.low_resolution=16", "--out", out))
    assert "train.low_resolution=16: shufflenet_v1" in message and "cannot take 16x16 images" in message
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--set", "train.distill=0.5", "--out", out))
    assert "train.teacher and train.distill go together" in message and not out.exists()
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--set", "train.distill=0.5",
                                      "--set", "train.teacher=zoo.tflite", "--out", out))
    assert "a .tflite teacher (zoo.tflite) runs only with train.teacher_runs: once" in message
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--data", f"folder:{tiny_images}",
                                      "--set", "train.distill=0.5", "--set", "train.teacher_runs=once",
                                      "--set", f"train.teacher=[{tmp_path}/t.tflite]", "--out", out))
    assert f"model file not found: {tmp_path}/t.tflite" in message
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--data", f"folder:{tiny_images}",
                                      "--set", "train.distill=0.5", "--set", f"train.teacher=[{tmp_path}/t.keras]",
                                      "--out", out))
    assert f"model file not found: {tmp_path}/t.keras" in message
    # input_size 40 passes the recipe checks and fails in the builder, after the data loaded
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--data", f"folder:{tiny_images}",
                                      "--set", "model.input_size=40", "--out", out))
    assert "input_size must be a multiple of 32" in message
    assert os.listdir(tmp_path) == []  # neither the run folder nor a staging folder


def test_one_image_per_class_is_a_clear_error_that_leaves_nothing(tmp_path):
    images = write_tiny_images(tmp_path / "few", per_class=1)
    out = tmp_path / "run"
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--data", f"folder:{images}", "--out", out))
    assert "4 training and 0 validation images" in message and "every class needs at least 2 images" in message
    assert not out.exists()


def test_fit_refuses_an_out_that_is_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    message = _one_line_error(_invoke("fit", "--model", "mobilenet_v1", "--out", target))
    assert f"--out {target} is a file" in message and target.read_text() == "keep me"


def test_a_recipe_file_without_model_name_is_an_error(tmp_path):
    for text in ("", "train: {epochs: 1}\n"):
        path = tmp_path / "recipe.yaml"
        path.write_text(text)
        message = _one_line_error(_invoke("fit", "--recipe", path, "--out", tmp_path / "run"))
        assert f"{path}: model.name is required" in message
    assert not (tmp_path / "run").exists()


def test_a_full_disk_during_the_first_epoch_leaves_no_run_folder(tmp_path, tiny_images, monkeypatch):
    def disk_full(temporary, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    recipe = tmp_path / "tiny.yaml"
    recipes.save(_tiny(tiny_images), str(recipe))
    monkeypatch.setattr(files, "_before_rename", lambda temporary, path: path.endswith(".h5") and disk_full(
        temporary, path))
    out = tmp_path / "run"
    message = _one_line_error(_invoke("fit", "--recipe", recipe, "--out", out, "--quiet"), status=1)
    assert message.startswith("Error: no space left on device") and message.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["tiny.yaml"]


def test_a_full_disk_later_keeps_the_finished_epochs_and_the_run_resumes(tmp_path, tiny_images, monkeypatch):
    writes = []

    def full_at_second_checkpoint(temporary, path):
        writes.append(os.path.basename(path))
        if writes[-1] == "epoch_002.weights.h5":
            raise OSError(errno.ENOSPC, "No space left on device", path)

    recipe = tmp_path / "tiny.yaml"
    recipes.save(_tiny(tiny_images), str(recipe))
    monkeypatch.setattr(files, "_before_rename", full_at_second_checkpoint)
    out = tmp_path / "run"
    message = _one_line_error(_invoke("fit", "--recipe", recipe, "--out", out, "--quiet"), status=1)
    assert f"resume with: mobilecls fit --resume {out}" in message
    assert os.listdir(out / "checkpoints") == ["epoch_001.weights.h5"]  # and no temporary file
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 1
    monkeypatch.setattr(files, "_before_rename", lambda temporary, path: None)
    result = _invoke("fit", "--resume", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert [line.split(",")[0] for line in (out / "history.csv").read_text().splitlines()] == ["epoch", "0", "1"]


def test_resume_rebuilds_a_best_model_replaced_after_the_last_manifest(tmp_path, tiny_images):
    from mobilecls._tf import keras
    from mobilecls.training import train

    out = str(tmp_path / "run")
    train.fit(_tiny(tiny_images), out, quiet=True)
    state = json.loads(open(os.path.join(out, "state.json"), encoding="utf-8").read())
    best_epoch = state["best"]["epoch"]
    # as if killed after writing a better best.keras but before its epoch's manifest: the final
    # stage has not run (finished false) and best.keras holds other weights
    state["finished"] = False
    files.write_json(os.path.join(out, "state.json"), state)
    shutil.copyfile(os.path.join(out, "last.keras"), os.path.join(out, "best.keras"))
    reference = keras.models.load_model(os.path.join(out, "best.keras"), compile=False)
    reference.load_weights(os.path.join(out, "checkpoints", f"epoch_{best_epoch:03d}.weights.h5"))
    run = train.fit(None, out, resume=True, quiet=True)
    best = keras.models.load_model(run.model_path, compile=False)
    for got, expected in zip(best.get_weights(), reference.get_weights(), strict=True):
        assert (got == expected).all()
    assert json.loads(open(os.path.join(out, "state.json"), encoding="utf-8").read())["finished"] is True


def test_resume_refuses_a_folder_whose_recorded_files_changed(tmp_path, tiny_model):
    from mobilecls.training import train

    out = str(tmp_path / "run")
    shutil.copytree(tiny_model.path, out)
    state = json.loads(open(os.path.join(out, "state.json"), encoding="utf-8").read())
    state["finished"] = False
    files.write_json(os.path.join(out, "state.json"), state)
    with open(os.path.join(out, "checkpoints", "epoch_001.weights.h5"), "r+b") as handle:
        handle.truncate(96)
    with pytest.raises(ValueError, match="checkpoints/epoch_001.weights.h5 changed or vanished after epoch 1"):
        train.fit(None, out, resume=True, quiet=True)


def test_a_run_folder_without_a_manifest_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "old"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "epoch_001.weights.h5").write_bytes(b"weights of an older mobilecls")
    recipes.save(recipes.from_dict({"model": {"name": "mobilenet_v1"}}), str(out / "recipe.yaml"))
    message = _one_line_error(_invoke("fit", "--resume", out))
    assert "it has no state.json" in message
    assert os.listdir(out / "checkpoints") == ["epoch_001.weights.h5"]


def test_resuming_a_finished_run_returns_its_metrics_without_training(tiny_model):
    from mobilecls.training import train

    before = {name: os.path.getmtime(os.path.join(tiny_model.path, name)) for name in os.listdir(tiny_model.path)}
    run = train.fit(None, tiny_model.path, resume=True, quiet=True)
    assert run.metrics["val"]["accuracy"] == tiny_model.metrics["val"]["accuracy"]
    assert {name: os.path.getmtime(os.path.join(tiny_model.path, name)) for name in before} == before


# quantize, eval, bench, report, pipeline -----------------------------------------------------------

def test_quantize_checks_its_output_path_before_converting(tmp_path, tiny_model):
    message = _one_line_error(_invoke("quantize", tiny_model.model_path, "-o", tmp_path))
    assert f"-o/--out {tmp_path} is a folder" in message


def test_quantize_refuses_zero_calibration_steps(tmp_path, tiny_model):
    message = _one_line_error(_invoke("quantize", tiny_model.model_path, "--int8", "--data", "synthetic",
                                      "--calibration-steps", "0", "-o", tmp_path / "m.tflite"))
    assert "--calibration-steps must be >= 1, got 0" in message and not (tmp_path / "m.tflite").exists()


def test_quantize_refuses_a_range_quantile_out_of_range_or_with_nothing_to_calibrate(tmp_path, tiny_model):
    out = tmp_path / "m.tflite"
    message = _one_line_error(_invoke("quantize", tiny_model.model_path, "--int8", "--data", "synthetic",
                                      "--range-quantile", "0.3", "-o", out))
    assert "--range-quantile" in message and "0.3 is not in the range 0.5<=x<=1" in message
    message = _one_line_error(_invoke("quantize", tiny_model.model_path, "--fp16", "--range-quantile", "0.9",
                                      "-o", out))
    assert "--range-quantile sets calibrated activation ranges: it needs --int8 or --int16x8, not fp16" in message
    assert not out.exists()


def test_quantize_refuses_data_with_other_class_names(tmp_path, tiny_model):
    other = write_tiny_images(tmp_path / "other", per_class=2, classes=10, prefix="kind_")  # same count and size
    out = tmp_path / "m.tflite"
    message = _one_line_error(_invoke("quantize", tiny_model.model_path, "--int8", "--data", f"folder:{other}",
                                      "-o", out))
    assert "was trained on classes blob, checkerboard" in message and "kind_0" in message and not out.exists()


def test_a_full_disk_in_quantize_is_one_line_and_keeps_the_input(tmp_path, tiny_model, monkeypatch):
    from mobilecls.export import quantize

    def disk_full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(quantize, "write_atomically", disk_full)
    before = files.sha256(tiny_model.model_path)
    out = tmp_path / "m.tflite"
    message = _one_line_error(_invoke("quantize", tiny_model.model_path, "-o", out), status=1)
    assert message.startswith("Error: no space left on device") and message.count("\n") == 1
    assert not out.exists() and files.sha256(tiny_model.model_path) == before


def test_eval_of_a_truncated_tflite_names_the_file(tmp_path, tiny_tflite):
    cut = tmp_path / "cut.tflite"
    content = open(tiny_tflite, "rb").read()
    cut.write_bytes(content[:len(content) // 3])
    message = _one_line_error(_invoke("eval", cut, "--data", "synthetic"))
    assert f"{cut}: truncated or damaged TFLite file" in message


@pytest.mark.parametrize("command", [["eval", "m.tflite", "--data", "synthetic"], ["bench", "m.tflite"]])
def test_json_output_that_is_a_folder_is_refused_first(tmp_path, command):
    message = _one_line_error(_invoke(*command, "--json", tmp_path))
    assert f"--json {tmp_path} is a folder" in message


def test_report_names_a_file_with_a_non_numeric_accuracy_and_makes_no_folder(tmp_path):
    result = tmp_path / "eval.json"
    result.write_text(json.dumps({"model": "m.tflite", "accuracy": "0.9"}))
    out = tmp_path / "report"
    message = _one_line_error(_invoke("report", result, "-o", out))
    assert f"{result}: accuracy must be a number, got '0.9'" in message and not out.exists()


def test_pipeline_refuses_an_unrelated_non_empty_out(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"not touched")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: mobilenet_v1, width: 0.25}\n")
    message = _one_line_error(_invoke("pipeline", "--recipe", recipe, "--out", out))
    assert "is not a pipeline folder" in message and os.listdir(out) == ["holiday.jpg"]


def test_messages_name_the_cli_options(tmp_path, monkeypatch):
    from PIL import Image

    from mobilecls.bench.adb import _find_binary
    from mobilecls.data.folder import folder

    monkeypatch.delenv("MOBILECLS_BENCHMARK_MODEL", raising=False)
    with pytest.raises(FileNotFoundError, match="pass --benchmark-binary PATH or set"):
        _find_binary(None)
    images = write_tiny_images(tmp_path / "mixed", per_class=2, size=8)
    Image.new("RGB", (12, 12)).save(os.path.join(images, "class_0", "big.png"))
    with pytest.raises(ValueError, match=r"must have the same size \(or set data.image_size\)"):
        folder(images, cache=False)
    with pytest.raises(ValueError, match=r"the image size \(data.image_size\) must be a positive integer"):
        folder(images, resize=0, cache=False)
