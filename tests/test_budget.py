"""`fit --time-budget`: the probe, the epoch arithmetic, and a budgeted run that keeps its plan."""

import csv
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner
from tiny import TINY  # the tiny synthetic recipe the fit tests train

from mobilecls import recipes
from mobilecls.cli import main
from mobilecls.training import budget


def test_epochs_within_counts_whole_epochs_in_what_is_left_after_a_safety_margin():
    cost = budget.EpochCost(train_step_s=0.5, eval_batch_s=0.2)
    assert cost.epoch_seconds(100, 4) == pytest.approx(50.8)
    # (600 - 30 - 5 * 0.2) * 0.95 = 540.55 s left; 540.55 / 50.8 = 10.6 -> 10 epochs
    assert budget.epochs_within(600, 30, cost, steps=100, eval_batches=4, final_batches=5) == 10
    # 10 epochs need 508 / 0.95 + 31 = 565.7 s: one second less plans one epoch less
    assert budget.epochs_within(566, 30, cost, steps=100, eval_batches=4, final_batches=5) == 10
    assert budget.epochs_within(565, 30, cost, steps=100, eval_batches=4, final_batches=5) == 9


def test_progressive_resizing_plans_its_cheaper_low_resolution_epochs():
    full = budget.EpochCost(train_step_s=0.5, eval_batch_s=0.2)   # 50.8 s per epoch
    low = budget.EpochCost(train_step_s=0.25, eval_batch_s=0.2)   # 25.8 s
    # 540.55 s left (as above). Half of 14 epochs at low resolution: 7 * 25.8 + 7 * 50.8 = 536.2 s;
    # 15 epochs: 8 * 25.8 + 7 * 50.8 = 562.0 s (7.5 rounds up) -> 14, where full size alone fits 10
    assert budget.epochs_within(600, 30, full, steps=100, eval_batches=4, final_batches=5,
                                low_resolution=(low, 0.5)) == 14
    assert [budget.low_resolution_epochs(n, 0.5) for n in (1, 2, 3, 5, 14, 15)] == [0, 1, 2, 3, 7, 8]
    assert budget.low_resolution_epochs(4, 0.9) == 3  # the last epoch is always at full size


def test_a_budget_that_fits_no_epoch_is_a_clear_error():
    cost = budget.EpochCost(train_step_s=0.5, eval_batch_s=0.2)
    with pytest.raises(ValueError, match=r"time_budget_minutes=1 fits no epoch here: one epoch takes about 51 s"):
        budget.epochs_within(60, 20, cost, steps=100, eval_batches=4, final_batches=4)
    with pytest.raises(ValueError, match="fits no epoch"):
        budget.epochs_within(60, 61, cost, steps=1, eval_batches=1, final_batches=1)


def test_the_probe_trains_on_exactly_its_steps_and_times_both_kinds_of_batch(tmp_path):
    from mobilecls._tf import keras, tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(keras.optimizers.SGD(0.1), keras.losses.CategoricalCrossentropy(from_logits=True))
    pixels = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    batches = tf.data.Dataset.from_tensors((pixels, targets)).repeat()
    before = model.get_weights()[0].copy()
    validation = tf.data.Dataset.from_tensors((pixels, targets))  # one batch, as a tiny val split has
    saver = keras.callbacks.ModelCheckpoint(str(tmp_path / "probe.keras"))  # the run's saving, elsewhere
    cost = budget.measure_epoch_cost(model, batches, validation, [saver], steps=5, eval_batches=3)
    assert (tmp_path / "probe.keras").is_file()
    assert int(model.optimizer.iterations.numpy()) == 2 * 5  # two probe epochs
    assert not np.array_equal(before, model.get_weights()[0])
    assert cost.train_step_s > 0 and cost.eval_batch_s > 0 and cost.epoch_overhead_s > 0  # it saves each epoch


def test_the_mean_interval_spans_only_consecutive_end_times():
    # two runs of end times: 12 -> 19 s over 3 intervals and 30 -> 31 s over 1: 8 s / 4 intervals
    assert budget._mean_interval([12.0, 13.0, 15.0, 19.0], [30.0, 31.0]) == pytest.approx(2.0)
    assert budget._mean_interval([4.0, 5.0, 5.5]) == pytest.approx(0.75)


def test_the_per_epoch_overhead_adds_to_every_epoch():
    cost = budget.EpochCost(train_step_s=0.5, eval_batch_s=0.2, epoch_overhead_s=1.2)
    assert cost.epoch_seconds(100, 4) == pytest.approx(52.0)


def test_a_non_positive_budget_is_refused_by_the_recipe():
    with pytest.raises(ValueError, match="train.time_budget_minutes must be > 0"):
        recipes.replace(TINY, train={"time_budget_minutes": 0})


@pytest.mark.slow  # a 30-second run
def test_a_budgeted_run_trains_the_planned_epochs_and_records_the_plan(tmp_path):
    from mobilecls.training.train import fit

    recipe = recipes.replace(TINY, train={"time_budget_minutes": 0.5})
    run = fit(recipe, str(tmp_path / "run"), quiet=True)
    plan = run.metrics["time_budget"]
    saved = recipes.load(os.path.join(run.path, "recipe.yaml"))
    assert saved.train.epochs == plan["epochs"] == run.metrics["epochs"] >= 1
    assert saved.train.time_budget_minutes == 0.5
    with open(os.path.join(run.path, "history.csv"), encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == plan["epochs"]
    # the plan is the arithmetic above on the measured costs and the synthetic set's sizes
    from mobilecls.data import load
    from mobilecls.training.train import EVAL_BATCH

    sizes = {split: len(part) for split, part in load("synthetic", seed=TINY.train.seed).splits.items()}
    steps, val_batches = sizes["train"] // 128, math.ceil(sizes["val"] / EVAL_BATCH)
    cost = budget.EpochCost(plan["train_step_s"], plan["eval_batch_s"], plan["epoch_overhead_s"])
    assert plan["planned_epoch_s"] == pytest.approx(cost.epoch_seconds(steps, val_batches))
    assert plan["epochs"] == budget.epochs_within(30, plan["probe_done_at_s"], cost, steps, val_batches,
                                                  val_batches + math.ceil(sizes["test"] / EVAL_BATCH))
    with open(os.path.join(run.path, "metrics.json"), encoding="utf-8") as handle:
        assert json.load(handle)["total_time_s"] >= run.metrics["wall_time_s"] > 0


def test_a_budget_too_short_for_one_epoch_is_a_cli_error_that_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["fit", "--model", "shufflenet_v2", "--set", "model.width=0.5",
                                       "--time-budget", "0.001", "--out", str(out)])
    assert result.exit_code == 2
    assert "train.time_budget_minutes=0.001 fits no epoch here" in result.output
    assert not out.exists()


def _plan(recipe, strategy, monkeypatch, probe=lambda *args: budget.EpochCost(1.0, 0.1)):
    from types import SimpleNamespace

    from mobilecls.training import train

    monkeypatch.setattr(budget, "measure_epoch_cost", probe)
    split = SimpleNamespace(images=np.zeros((500, 1)))
    data = SimpleNamespace(splits={"val": split})
    def batches(image_size=None):  # what the probe is given to time: here, the image size
        return image_size

    return train._plan_epochs(recipe, strategy, None, train.WeightAverage(None, None), batches, [None], data, steps=10,
                              batch_size=128,
                              elapsed_s=0.0, quiet=True)


def test_a_budget_with_no_more_epochs_than_the_warm_up_is_a_clear_error(monkeypatch):
    # 60 s: (60 - 0.2) * 0.95 / 10.2 s per epoch = 5.6 -> 5 epochs, against 5 warm-up epochs
    recipe = recipes.replace(TINY, train={"time_budget_minutes": 1.0}, schedule={"warmup_epochs": 5})
    with pytest.raises(ValueError, match=r"fits 5 epoch\(s\) here, not more than schedule.warmup_epochs=5"):
        _plan(recipe, "default", monkeypatch)
    planned, plan = _plan(recipes.replace(recipe, schedule={"warmup_epochs": 2}), "default", monkeypatch)
    assert planned.train.epochs == plan["epochs"] == 5


def test_a_budget_with_progressive_resizing_times_both_sizes_and_plans_the_cheaper_epochs(monkeypatch):
    def probe(model, image_size, validation, callbacks):  # 10.2 s per epoch at full size, 5.2 s at 16 px
        return budget.EpochCost(0.5 if image_size == 16 else 1.0, 0.1)

    recipe = recipes.replace(TINY, train={"time_budget_minutes": 1.0, "low_resolution": 16})
    # (60 - 2 * 0.1) * 0.95 = 56.8 s: 7 epochs, 4 of them at 16 px (4 * 5.2 + 3 * 10.2 = 51.4 s); full size alone: 5
    planned, plan = _plan(recipe, "default", monkeypatch, probe)
    assert planned.train.epochs == plan["epochs"] == 7 and plan["low_resolution_epochs"] == 4
    assert plan["planned_low_resolution_epoch_s"] == pytest.approx(5.2)
    assert plan["planned_epoch_s"] == pytest.approx(10.2)


def test_a_budget_is_refused_with_multiworker(monkeypatch):
    recipe = recipes.replace(TINY, train={"time_budget_minutes": 1.0})
    with pytest.raises(ValueError, match="needs strategy default or mirrored, not multiworker"):
        _plan(recipe, "multiworker", monkeypatch)


def test_the_probe_times_the_runs_own_epoch_callbacks_in_a_folder_it_removes(monkeypatch):
    from mobilecls.training import train

    seen = {}

    def probe(model, batches, validation, callbacks):
        seen["callbacks"] = callbacks
        seen["folder"] = callbacks[-1].folder  # the recorder writes the run files
        return budget.EpochCost(1.0, 0.1)

    _plan(recipes.replace(TINY, train={"time_budget_minutes": 1.0}), "default", monkeypatch, probe)
    run = train._epoch_callbacks("RUN", train._Monitor(128, 10, quiet=True), train.WeightAverage(None, None))
    assert [type(c) for c in seen["callbacks"]] == [type(c) for c in run]
    assert not os.path.exists(seen["folder"])  # the probe's checkpoints are gone
