"""`fit` trains a recipe into a complete run folder, reproducibly, and refuses to overwrite."""

import csv
import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner
from tiny import TINY  # the tiny synthetic recipe, shared by every module

from mobilecls import recipes
from mobilecls.cli import main


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run  # the session's one run of TINY (conftest.py)


def _synthetic_sizes():
    from mobilecls.data import load

    data = load("synthetic", seed=TINY.train.seed)
    return {split: len(part) for split, part in data.splits.items()}


def test_run_folder_holds_models_history_metrics_and_plots(run):
    names = set(os.listdir(run.path))
    assert {"best.keras", "last.keras", "recipe.yaml", "classes.json", "history.csv", "metrics.json",
            "curves.png", "confusion.png", "checkpoints"} <= names
    assert os.listdir(os.path.join(run.path, "checkpoints")) == ["epoch_001.weights.h5"]
    assert recipes.load(os.path.join(run.path, "recipe.yaml")) == TINY
    with open(os.path.join(run.path, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    sizes = _synthetic_sizes()
    val = metrics["val"]
    assert val["samples"] == sizes["val"] and len(val["confusion"]) == 10
    assert sum(map(sum, val["confusion"])) == sizes["val"]
    assert 0.0 <= val["accuracy"] <= 1.0 and val["top5"] >= val["accuracy"]
    assert "test" in metrics and metrics["test"]["samples"] == sizes["test"]  # synthetic has a test split
    assert metrics["train_images_per_sec"] > 0 and metrics["wall_time_s"] > 0


def test_best_model_reloads_and_reproduces_the_val_metrics(run):
    from mobilecls._tf import keras
    from mobilecls.data import load
    from mobilecls.evaluation.metrics import classification_metrics

    model = keras.models.load_model(run.model_path, compile=False)
    data = load("synthetic", seed=7)
    val = data.splits["val"]
    scores = model.predict(val.images.astype("float32"), verbose=0)
    again = classification_metrics(val.labels, scores, data.class_names)
    assert again["accuracy"] == pytest.approx(run.metrics["val"]["accuracy"])


def test_same_seed_and_data_give_the_same_first_epoch(run, tmp_path, capsys):
    from mobilecls.training.train import fit

    second = fit(TINY, str(tmp_path / "again"))
    rows = []
    for path in (run.path, second.path):
        with open(os.path.join(path, "history.csv"), encoding="utf-8") as handle:
            rows.append(next(csv.DictReader(handle)))
    assert rows[0]["val_accuracy"] == rows[1]["val_accuracy"]
    assert float(rows[0]["loss"]) == pytest.approx(float(rows[1]["loss"]), rel=1e-4)
    # the progress line: the epoch of the recipe's epochs, its time, images/s and the history row's metrics
    progress = [line for line in capsys.readouterr().out.splitlines() if line.lower().startswith("epoch")]
    row = {name: float(value) for name, value in rows[1].items()}
    metrics = ", ".join(f"{name} {row[name]:.4f}"
                        for name in ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5"))
    assert len(progress) == 1 and re.fullmatch(
        rf"epoch 1/{TINY.train.epochs}: \d+ s, {row['images_per_sec']:.0f} images/s, {metrics}", progress[0])


def test_existing_run_folder_is_never_overwritten(run):
    before = os.path.getmtime(os.path.join(run.path, "best.keras"))
    result = CliRunner().invoke(main, ["fit", "--model", "shufflenet_v2", "--epochs", "1", "--out", run.path])
    assert result.exit_code == 2
    assert "already exists and is not empty" in result.output and "--resume" in result.output
    assert os.path.getmtime(os.path.join(run.path, "best.keras")) == before


def test_resume_of_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["fit", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "no recipe.yaml in it (not a run folder)" in result.output


def test_unknown_override_key_is_a_clear_cli_error(tmp_path):
    result = CliRunner().invoke(main, ["fit", "--set", "optimizer.learning_rate=0.1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "valid keys in optimizer: name, lr" in result.output
    assert not os.path.exists(tmp_path / "x")


def test_a_bad_data_spec_leaves_no_run_folder(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["fit", "--data", f"folder:{tmp_path / 'missing'}", "--out", str(out)])
    assert result.exit_code == 2 and "missing" in result.output
    assert not out.exists()


def test_an_unknown_model_is_refused_before_anything_runs(tmp_path):
    result = CliRunner().invoke(main, ["fit", "--model", "resnet50", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "model.name: expected one of mobilenet_v1" in result.output
    assert not (tmp_path / "run").exists()


def test_ctrl_c_leaves_a_run_that_resumes_where_it_stopped(tmp_path, monkeypatch):
    from mobilecls._tf import keras
    from mobilecls.training import train

    recipe = recipes.replace(TINY, train={"epochs": 2})
    original = train._Monitor.on_train_batch_end

    def interrupt_in_second_epoch(self, batch, logs=None):
        if self.epoch == 1 and batch == 3:
            raise KeyboardInterrupt
        original(self, batch, logs)

    monkeypatch.setattr(train._Monitor, "on_train_batch_end", interrupt_in_second_epoch)
    out = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train.fit(recipe, out, quiet=True)
    with open(os.path.join(out, "state.json"), encoding="utf-8") as handle:
        assert json.load(handle)["epochs_done"] == 1  # the manifest vouches for epoch 1 only
    monkeypatch.setattr(train._Monitor, "on_train_batch_end", original)
    run = train.fit(None, out, resume=True, quiet=True)
    with open(os.path.join(out, "history.csv"), encoding="utf-8") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1"]
    last = keras.models.load_model(os.path.join(out, "last.keras"), compile=True)
    steps = _synthetic_sizes()["train"] // 128
    assert int(last.optimizer.iterations.numpy()) == 2 * steps  # the schedule continued, not restarted
    assert run.metrics["epochs"] == 2


def test_a_nan_loss_stops_the_run_with_a_clear_message(tmp_path, monkeypatch):
    from mobilecls._tf import keras
    from mobilecls.training import train

    # A NaN learning rate turns the weights, and so the loss, into NaN after the first step.
    monkeypatch.setattr(train, "make_optimizer", lambda recipe, steps: keras.optimizers.SGD(float("nan")))
    from mobilecls.errors import RunFailed

    with pytest.raises(RunFailed, match="loss became NaN at epoch 1, step 2; the run stopped. Lower optimizer.lr"):
        train.fit(TINY, str(tmp_path / "run"), quiet=True)


def test_fit_holds_out_the_val_split_every_other_command_loads(monkeypatch, tmp_path):
    """The holdout does not follow train.seed (7 in TINY): it is data.holdout_seed, whose default is
    load()'s and the commands' (eval, quantize and QAT load the data with --holdout-seed)."""
    import inspect

    from mobilecls.data import load
    from mobilecls.training import train

    seen = []

    def spy(spec, **kwargs):
        seen.append(kwargs)
        raise RuntimeError("stop after the data call")

    monkeypatch.setattr(train, "load_data", spy)
    for recipe in (TINY, recipes.replace(TINY, data={"holdout_seed": 3})):
        with pytest.raises(RuntimeError, match="stop after the data call"):
            train.fit(recipe, str(tmp_path / f"run{len(seen)}"), quiet=True)
    default = inspect.signature(load).parameters["seed"].default
    assert TINY.train.seed == 7 and [kwargs["seed"] for kwargs in seen] == [default, 3]


def test_with_ema_decay_validation_and_best_keras_use_the_averaged_weights(tmp_path):
    import numpy as np

    from mobilecls._tf import keras
    from mobilecls.training.train import fit

    run = fit(recipes.replace(TINY, optimizer={"ema_decay": 0.9}), str(tmp_path / "ema"), quiet=True)
    best = keras.models.load_model(run.model_path, compile=False)
    with np.load(os.path.join(run.path, "state", "epoch_001.npz")) as state:
        trained = [state[name] for name in state.files if name.startswith("weight_")]
        optimizer = [state[name] for name in state.files if name.startswith("optimizer_")]
    kernels = [w.numpy() for w in best.trainable_weights if w.name.endswith("kernel:0")]
    # best.keras holds neither the last step's kernels (the resume state's) nor anything but the
    # optimizer's moving averages of them
    assert not any(any(t.shape == k.shape and np.array_equal(t, k) for t in trained) for k in kernels)
    assert all(any(o.shape == k.shape and np.array_equal(o, k) for o in optimizer) for k in kernels)
    # the epoch's validation measured those averaged weights: the metrics of best.keras
    with open(os.path.join(run.path, "history.csv"), encoding="utf-8") as handle:
        validated = float(next(csv.DictReader(handle))["val_accuracy"])
    assert run.metrics["val"]["accuracy"] == pytest.approx(validated, abs=1e-6)


def test_with_ema_decay_batchnorm_statistics_are_recomputed_for_the_averaged_weights(tmp_path):
    from mobilecls._tf import keras
    from mobilecls.data import load
    from mobilecls.training.train import STATISTICS_BATCH, fit, statistics_images

    run = fit(recipes.replace(TINY, optimizer={"ema_decay": 0.9}), str(tmp_path / "ema"), quiet=True)
    best = keras.models.load_model(run.model_path, compile=False)
    # The stem's BatchNorm follows a convolution of the raw pixels: its moving mean must be the mean
    # over the sample's batches of the batch means of that convolution, with the averaged kernel.
    sample = statistics_images(load(TINY.data.spec).splits["train"].images, TINY.augment)
    stem = keras.Model(best.input, best.get_layer("stem").output)
    batch_means = [stem.predict(sample[start:start + STATISTICS_BATCH], verbose=0).mean(axis=(0, 1, 2))
                   for start in range(0, len(sample), STATISTICS_BATCH)]
    recomputed = best.get_layer("stem_bn").moving_mean.numpy()
    np.testing.assert_allclose(recomputed, np.mean(batch_means, axis=0), rtol=1e-4, atol=1e-4)
    with np.load(os.path.join(run.path, "state", "epoch_001.npz")) as state:  # the live statistics differ
        live = [state[name] for name in state.files if name.startswith("weight_")]
    assert not any(value.shape == recomputed.shape and np.allclose(value, recomputed) for value in live)


@pytest.mark.parametrize("depthwise_weight_decay", [True, False])
def test_weight_decay_shrinks_kernels_not_batchnorm_and_depthwise_filters_only_when_asked(depthwise_weight_decay):
    from mobilecls._tf import tf
    from mobilecls.models.registry import build_model
    from mobilecls.training.train import make_optimizer

    model = build_model("mobilenet_v1", width=0.25, input_size=32, num_classes=10)
    recipe = recipes.replace(TINY, optimizer={"weight_decay": 0.1, "depthwise_weight_decay": depthwise_weight_decay})
    optimizer = make_optimizer(recipe, steps_per_epoch=10)
    before = {w.name: w.numpy() for w in model.trainable_weights}
    # a step with zero gradients moves only what weight decay shrinks: by lr x decay = 0.05 x 0.1
    optimizer.apply_gradients([(tf.zeros_like(w), w) for w in model.trainable_weights])
    shrunk = {w.name for w in model.trainable_weights
              if not np.allclose(w.numpy(), before[w.name]) and np.allclose(w.numpy(), before[w.name] * (1 - 0.005))}
    moved = {w.name for w in model.trainable_weights if not np.array_equal(w.numpy(), before[w.name])}
    assert moved == shrunk
    depthwise = {name for name in before if "depthwise_kernel" in name}
    kernels = {name for name in before if name.endswith("/kernel:0")}
    assert len(depthwise) == 13 and kernels  # MobileNetV1's 13 depthwise filters; stem, pointwise, classifier
    assert shrunk == (kernels | depthwise if depthwise_weight_decay else kernels)


def test_statistics_sample_mixes_the_classes_in_every_batch_and_is_augmented_as_in_training():
    from mobilecls.training.train import STATISTICS_BATCH, statistics_images

    # A split stored class by class (as a folder loads), each class one grey level.
    grey = np.repeat(np.arange(1, 11, dtype=np.uint8) * 20, 400)
    images = grey[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    augment = recipes.AugmentSection(crop_padding=2, flip=True, cutout=0)
    sample = statistics_images(images, augment)
    assert sample.shape == (2048, 8, 8, 3) and sample.dtype == np.float32
    for start in range(0, len(sample), STATISTICS_BATCH):
        assert len(np.unique(sample[start:start + STATISTICS_BATCH].max(axis=(1, 2, 3)))) == 10
    assert (sample == 0).any(axis=(1, 2, 3)).mean() > 0.5  # shifted crops bring in the zero padding
    np.testing.assert_array_equal(sample, statistics_images(images, augment))


def test_progressive_resizing_trains_the_first_epochs_small_resumes_at_full_size_and_saves_full_size(
        tmp_path, monkeypatch):
    from mobilecls._tf import keras
    from mobilecls.training import train

    recipe = recipes.replace(TINY, train={"epochs": 2, "low_resolution": 16, "low_resolution_fraction": 0.5})
    pipelines, original_batches = [], train.training_batches

    def spy(*args, **kwargs):
        pipelines.append((kwargs["first_epoch"], kwargs["image_size"]))
        return original_batches(*args, **kwargs)

    original_end = train._Monitor.on_train_batch_end

    def interrupt_in_second_epoch(self, batch, logs=None):
        if self.epoch == 1 and batch == 3:
            raise KeyboardInterrupt
        original_end(self, batch, logs)

    monkeypatch.setattr(train, "training_batches", spy)
    monkeypatch.setattr(train._Monitor, "on_train_batch_end", interrupt_in_second_epoch)
    out = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train.fit(recipe, out, quiet=True)
    monkeypatch.setattr(train._Monitor, "on_train_batch_end", original_end)
    run = train.fit(None, out, resume=True, quiet=True)
    # epoch 1 at 16 px, epoch 2 at 32 px, and the resumed run went on at 32 px
    assert pipelines == [(0, 16), (1, None), (1, None)]
    with open(os.path.join(out, "history.csv"), encoding="utf-8") as handle:
        assert [float(row["image_size"]) for row in csv.DictReader(handle)] == [16, 32]
    best = keras.models.load_model(run.model_path, compile=False)
    assert best.input_shape == (None, 32, 32, 3)
    with pytest.raises(ValueError, match="incompatible"):  # the saved model checks its size again
        best(np.zeros((1, 16, 16, 3), np.float32))
    assert run.metrics["val"]["accuracy"] > 0


def test_distillation_mixes_the_teachers_probabilities_into_every_training_batch(tmp_path, monkeypatch, run):
    from mobilecls._tf import keras
    from mobilecls.models import build_model
    from mobilecls.training import train

    mixed, original = [], train.distilled

    def spy(batches, teacher, weight):
        mixed.append((teacher, weight))
        return original(batches, teacher, weight)

    monkeypatch.setattr(train, "distilled", spy)
    recipe = recipes.replace(TINY, train={"teacher": run.model_path, "distill": 0.5})
    distilled_run = train.fit(recipe, str(tmp_path / "run"), quiet=True)
    (teacher, weight), = mixed  # one training pipeline (no budget probe), distilled at 0.5
    expected = keras.models.load_model(run.model_path, compile=False)
    assert weight == 0.5 and all(np.array_equal(a, b) for a, b in zip(teacher.get_weights(),
                                                                        expected.get_weights(), strict=True))
    assert recipes.load(os.path.join(distilled_run.path, "recipe.yaml")).train.teacher == run.model_path
    # a teacher with other classes is refused before a run folder exists
    other = tmp_path / "five.keras"
    build_model("shufflenet_v2", width=0.5, input_size=32, num_classes=5).save(other)
    with pytest.raises(ValueError, match=r"teacher .*five.keras maps \(32, 32, 3\) to \(5,\); shufflenet_v2 maps"):
        train.fit(recipes.replace(recipe, train={"teacher": str(other)}), str(tmp_path / "refused"), quiet=True)
    assert not (tmp_path / "refused").exists()
