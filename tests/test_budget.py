"""`fit --time-budget`: the probe, the epoch arithmetic, and a budgeted run that keeps its plan."""

import csv
import functools
import json
import math
import os
import re
import time

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
    # without the margin: 569 s / 50.8 = 11.2 -> 11 epochs
    assert budget.epochs_within(600, 30, cost, steps=100, eval_batches=4, final_batches=5, margin=0.0) == 11


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
    # and half a second more after each epoch, so the overhead stands out of a busy machine's noise
    pause = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(0.5))
    cost = budget.measure_epoch_cost(model, batches, validation, [saver, pause], steps=5, eval_batches=3)
    assert (tmp_path / "probe.keras").is_file()
    assert int(model.optimizer.iterations.numpy()) == 2 * 5  # two probe epochs
    assert not np.array_equal(before, model.get_weights()[0])
    assert cost.train_step_s > 0 and cost.eval_batch_s > 0
    assert cost.epoch_overhead_s >= 0.4  # the saving and the pause, outside the timed batches


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
    # the probe's plan is the first one (the keeper re-plans from the run's pace), within a safety margin;
    # the most it may become is what fits without it if epochs ran at FASTEST_PACE of the probe's time
    within = functools.partial(budget.epochs_within, 30, plan["probe_done_at_s"], cost, steps, val_batches,
                               val_batches + math.ceil(sizes["test"] / EVAL_BATCH))
    assert (plan["replans"][0]["from_epochs"] if "replans" in plan else plan["epochs"]) == within()
    assert plan["most_epochs"] == within(margin=0.0, pace=budget.FASTEST_PACE) >= plan["epochs"]
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
    run = train._epoch_callbacks("RUN", train._Monitor(128, 10), train.WeightAverage(None, None))
    assert [type(c) for c in seen["callbacks"]] == [type(c) for c in run]
    assert not os.path.exists(seen["folder"])  # the probe's checkpoints are gone


PLAN = {"minutes": 10, "epochs": 10, "planned_epoch_s": 50.0, "probe_done_at_s": 20.0}


def test_epochs_at_pace_drops_the_epochs_a_slower_machine_would_overrun_and_never_adds_unplanned_ones():
    # as planned: 600 - 20 - 100 - 5 = 475 s left holds the 8 epochs left (400 s)
    assert budget.epochs_at_pace(PLAN, [50.0, 50.0], final_s=5.0) == (10, pytest.approx(1.0))
    # 1.2x slower after the first epoch (which also traced the step): 600 - 20 - 130 - 6 = 444 s left
    # holds 7 epochs of 60 s (420 s), not 8 (480 s)
    assert budget.epochs_at_pace(PLAN, [70.0, 60.0], final_s=5.0) == (9, pytest.approx(1.2))
    assert budget.epochs_at_pace(PLAN, [70.0], final_s=5.0)[1] == pytest.approx(1.4)  # one epoch: that one
    assert budget.epochs_at_pace(PLAN, [30.0, 30.0], final_s=5.0)[0] == 10  # faster: no more than most_epochs
    # so slow that not one more epoch fits: stop after the epochs done
    assert budget.epochs_at_pace(PLAN, [250.0, 250.0], final_s=5.0)[0] == 2


def test_epochs_at_pace_gives_back_dropped_epochs_at_the_pace_of_the_last_few():
    replanned = {**PLAN, "epochs": 8, "replans": [{"after_epoch": 3, "pace": 1.4, "from_epochs": 10, "epochs": 8}]}
    assert budget.most_epochs(replanned) == 10 and budget.most_epochs(PLAN) == 10  # plans without most_epochs
    # three slow epochs, then four as planned: 600 - 20 - 410 - 5 = 165 s left holds the 3 epochs left
    # at the last four's pace (150 s), not at the pace since the first (1.13x, 170 s)
    seconds = [70.0, 70.0, 70.0, 50.0, 50.0, 50.0, 50.0]
    assert budget.PACE_WINDOW == 4
    assert budget.epochs_at_pace(replanned, seconds, final_s=5.0) == (10, pytest.approx(1.0))
    # never more than most_epochs, however fast
    assert budget.epochs_at_pace(replanned, [70.0, 70.0, 70.0, 10.0], final_s=5.0)[0] == 10


def test_epochs_at_pace_takes_the_epochs_the_probes_safety_margin_kept_back_when_the_pace_is_as_planned():
    assert budget.most_epochs({**PLAN, "most_epochs": 12}) == 12
    # as planned: 600 - 20 - 100 - 5 = 475 s left hold 9 more epochs of 50 s (450 s), not 10 (500 s)
    assert budget.epochs_at_pace({**PLAN, "most_epochs": 12}, [50.0, 50.0], final_s=5.0) == (11, pytest.approx(1.0))
    assert budget.epochs_at_pace({**PLAN, "most_epochs": 11}, [50.0, 50.0], final_s=5.0)[0] == 11


def test_epochs_at_pace_counts_the_cheaper_low_resolution_epochs_first():
    plan = {**PLAN, "low_resolution_epochs": 4, "planned_low_resolution_epoch_s": 25.0}
    assert budget.planned_seconds(plan, 0, 10) == 4 * 25 + 6 * 50
    assert budget.planned_seconds(plan, 2, 6) == 2 * 25 + 2 * 50
    assert budget.planned_seconds(plan, 5, 7) == 2 * 50
    # low epochs took 2x their 25 s: 600 - 20 - 100 - 10 = 470 s left; at 2x, the 2 low epochs left
    # (100 s) and 3 full ones (300 s) fit, a 4th full one (500 s in all) not
    assert budget.epochs_at_pace(plan, [50.0, 50.0], final_s=5.0) == (7, pytest.approx(2.0))
    # at 4x, 600 - 20 - 200 - 20 = 360 s hold the 2 low epochs left (200 s) but no full one (200 s):
    # one full-resolution epoch is kept all the same, since a run must not end on a low-resolution one
    assert budget.epochs_at_pace(plan, [100.0, 100.0], final_s=5.0) == (5, pytest.approx(4.0))


def test_the_schedule_decays_to_a_new_end_inside_a_traced_step():
    from mobilecls._tf import tf
    from mobilecls.training.train import LearningRate

    schedule = LearningRate("cosine", 1.0, total_steps=100)
    rate = tf.function(lambda step: schedule(step))
    assert float(rate(50)) == pytest.approx(0.5)
    schedule.end_at(60)
    assert float(rate(50)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 50 / 60)))
    assert float(rate(60)) == pytest.approx(0.0, abs=1e-7)
    assert schedule.get_config()["total_steps"] == schedule.total_steps == 60


TINY_FOLDER_STEPS = 32 // 8  # tiny_images: 40 images, 8 held out, batch 8


def _fast_probe(*args):
    """A probe that times the tiny fit at a small fraction of its real cost: the budget overruns."""
    return budget.EpochCost(train_step_s=0.001, eval_batch_s=0.001)


def test_a_run_slower_than_its_probe_drops_epochs_to_keep_its_budget(tmp_path, tiny_images, monkeypatch, capsys):
    from tiny import folder_recipe

    from mobilecls._tf import keras
    from mobilecls.training import train

    monkeypatch.setattr(budget, "measure_epoch_cost", _fast_probe)
    recipe = folder_recipe(tiny_images, train={"time_budget_minutes": 0.15})
    run = train.fit(recipe, str(tmp_path / "run"))
    plan = run.metrics["time_budget"]
    (replan, *later) = plan["replans"]
    assert replan["after_epoch"] == 2 and replan["pace"] > 10  # from the second epoch: the first traced the step
    assert replan["from_epochs"] > 100 > replan["epochs"]  # hundreds planned at the fast probe's pace
    epochs = run.metrics["epochs"]
    assert epochs == plan["epochs"] == (later[-1] if later else replan)["epochs"]
    assert recipes.load(os.path.join(run.path, "recipe.yaml")).train.epochs == epochs
    with open(os.path.join(run.path, "history.csv"), encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == epochs
    last = keras.models.load_model(os.path.join(run.path, "last.keras"))
    assert last.optimizer._learning_rate.total_steps == epochs * TINY_FOLDER_STEPS
    assert int(last.optimizer.iterations.numpy()) == epochs * TINY_FOLDER_STEPS
    # one progress line per epoch, counting to the plan as it stood (not to the budget's ceiling, Keras' count)
    lines = capsys.readouterr().out.splitlines()
    progress = [re.match(r"epoch (\d+)/(\d+): \d+ s, \d+ images/s, loss [\d.]+, accuracy [\d.]+, top5 [\d.]+, "
                         r"val_loss [\d.]+, val_accuracy [\d.]+, val_top5 [\d.]+$", line) for line in lines
                if line.startswith(("epoch", "Epoch"))]
    assert all(progress) and len(progress) == epochs
    counts = [(int(match[1]), int(match[2])) for match in progress]
    assert counts[0] == (1, replan["from_epochs"]) and counts[1] == (2, replan["epochs"])  # replanned after epoch 2
    assert f"{replan['epochs']} epochs fit in it, not {replan['from_epochs']}" in lines[lines.index(progress[1][0]) - 1]
    assert counts[-1] == (epochs, epochs)


def test_a_run_resumed_after_a_replan_trains_the_replanned_epochs(tmp_path, tiny_images, monkeypatch):
    from tiny import folder_recipe

    from mobilecls._tf import keras
    from mobilecls.training import run_state, train

    monkeypatch.setattr(budget, "measure_epoch_cost", _fast_probe)
    keep = train._BudgetKeeper.on_epoch_end

    def killed_after_the_first_replan(self, epoch, logs=None):
        keep(self, epoch, logs)
        if self.state["plan"].get("replans"):
            raise KeyboardInterrupt

    monkeypatch.setattr(train._BudgetKeeper, "on_epoch_end", killed_after_the_first_replan)
    out = str(tmp_path / "run")
    recipe = folder_recipe(tiny_images, train={"time_budget_minutes": 0.3})
    with pytest.raises(KeyboardInterrupt):
        train.fit(recipe, out, quiet=True)
    state = run_state.read(out)
    replanned = state["plan"]["epochs"]
    assert state["epochs_done"] == 2 and replanned < state["plan"]["replans"][0]["from_epochs"]
    # as a kill between recipe.yaml and the manifest would leave it: the recipe still names the old plan
    recipes.save(recipes.replace(recipe, train={"epochs": state["plan"]["replans"][0]["from_epochs"]}),
                 os.path.join(out, "recipe.yaml"))
    monkeypatch.setattr(train._BudgetKeeper, "on_epoch_end", keep)
    run = train.fit(None, out, resume=True, quiet=True)
    epochs = run.metrics["epochs"]
    assert epochs <= replanned
    with open(os.path.join(out, "history.csv"), encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == epochs
    last = keras.models.load_model(os.path.join(out, "last.keras"))
    assert last.optimizer._learning_rate.total_steps == epochs * TINY_FOLDER_STEPS  # decayed to the end


def test_the_budget_keeper_gives_back_epochs_and_moves_the_schedule_end_up(tmp_path, capsys):
    from types import SimpleNamespace

    from mobilecls.training import run_state, train

    folder = str(tmp_path)
    recipes.save(recipes.replace(TINY, train={"epochs": 8}), os.path.join(folder, "recipe.yaml"))
    plan = {**PLAN, "epochs": 8, "replans": [{"after_epoch": 3, "pace": 1.4, "from_epochs": 10, "epochs": 8}]}
    state = {**run_state.new_state(plan), "epochs_done": 7, "epoch_seconds": [70.0, 70.0, 70.0, 50.0, 50.0, 50.0, 50.0]}
    schedule = train.LearningRate("linear", 0.1, total_steps=8 * 10)
    keeper = train._BudgetKeeper(folder, state, steps=10, final_s=5.0, quiet=False)
    keeper.set_model(SimpleNamespace(optimizer=SimpleNamespace(_learning_rate=schedule), stop_training=False))
    keeper.on_epoch_end(6)
    assert plan["epochs"] == 10 and plan["replans"][-1] == {"after_epoch": 7, "pace": pytest.approx(1.0),
                                                            "from_epochs": 8, "epochs": 10}
    assert capsys.readouterr().out == ("time budget 10 min: at the last epochs' pace (1.00x the planned time) "
                                       "10 epochs fit in it, not 8\n")
    assert schedule.total_steps == 100 and not keeper.model.stop_training
    assert recipes.load(os.path.join(folder, "recipe.yaml")).train.epochs == 10
    assert run_state.read(folder)["plan"]["epochs"] == 10  # what --resume trains


def test_a_run_the_budget_stopped_early_trains_no_more_when_resumed(tmp_path, tiny_images, monkeypatch):
    from tiny import folder_recipe

    from mobilecls.training import run_state, train

    monkeypatch.setattr(budget, "measure_epoch_cost", _fast_probe)
    finish = train._finish

    def killed_before_the_metrics(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_finish", killed_before_the_metrics)
    out = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train.fit(folder_recipe(tiny_images, train={"time_budget_minutes": 0.15}), out, quiet=True)
    state = run_state.read(out)
    epochs = state["plan"]["epochs"]
    assert state["epochs_done"] == epochs < budget.most_epochs(state["plan"])
    monkeypatch.setattr(train, "_finish", finish)
    run = train.fit(None, out, resume=True, quiet=True)
    assert run.metrics["epochs"] == epochs
    with open(os.path.join(out, "history.csv"), encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == epochs


# Real fits' epoch seconds (2026-12-06, MobileNetV1 0.75, docs/results.md). The first: 28 epochs planned at 225 s,
# a slow start, six epochs at the planned pace in the middle, slower again at the end. The second (the linear-decay
# run): 23 planned at 268 s, a slow second epoch, then at about the planned pace.
SLOW_START = ({"minutes": 112.0, "epochs": 28, "planned_epoch_s": 225.05, "probe_done_at_s": 14.9},
              [258, 281, 268, 256, 276, 277, 273, 248, 253, 228, 237, 229, 256, 224, 225, 224, 225, 224, 225,
               249, 256, 249, 254, 253, 269, 262])
SLOW_SECOND_EPOCH = ({"minutes": 112.0, "epochs": 23, "planned_epoch_s": 267.57, "probe_done_at_s": 15.8},
                     [295, 294, 313, 282, 251, 285, 264, 268, 255, 248, 254, 264, 262, 248, 244, 249, 249, 270,
                      272, 255, 251, 268])
# 2026-12-06 21:30: ShuffleNetV1, a probe on a slow moment (271 s per epoch), then the last ten epochs at 0.83-0.90x
FAST_AFTER_SLOW_PROBE = ({"minutes": 112.0, "epochs": 23, "planned_epoch_s": 271.15, "probe_done_at_s": 39.6},
                         [265, 273, 254, 253, 239, 262, 272, 292, 282, 279, 275, 259, 250, 226, 231, 237, 240, 241,
                          233, 225, 232, 235, 238, 244])


def _replayed(folder, first_plan, seconds, final_s=7.1, steps=10):
    """The plans ``_BudgetKeeper`` makes after each epoch from the second, fed recorded epoch times, until it
    stops the run."""
    from types import SimpleNamespace

    from mobilecls.training import run_state, train

    recipes.save(recipes.replace(TINY, train={"epochs": first_plan["epochs"]}), os.path.join(folder, "recipe.yaml"))
    state = run_state.new_state(dict(first_plan))
    keeper = train._BudgetKeeper(folder, state, steps, final_s, quiet=True)
    schedule = train.LearningRate("cosine", 0.1, total_steps=first_plan["epochs"] * steps)
    keeper.set_model(SimpleNamespace(optimizer=SimpleNamespace(_learning_rate=schedule), stop_training=False))
    plans = []
    for epoch, epoch_s in enumerate(seconds):
        state["epoch_seconds"].append(epoch_s)
        state["epochs_done"] = epoch + 1
        keeper.on_epoch_end(epoch)
        if epoch:
            plans.append(state["plan"]["epochs"])
            assert schedule.total_steps == state["plan"]["epochs"] * steps
        if keeper.model.stop_training:
            break
    return plans


def test_replayed_on_real_fits_the_keeper_ends_within_the_budget_without_giving_up_epochs_for_a_slow_start(tmp_path):
    first_plan, seconds = SLOW_START
    plans = _replayed(str(tmp_path), first_plan, seconds)
    # 23 after epoch 2 (1.25x), back up to 27, 26 at the end; a pace since the first epoch never took any back
    assert plans[0] == 23 and max(plans) == 27 and len(plans) + 1 == plans[-1] == 26
    assert sum(seconds[:26]) + first_plan["probe_done_at_s"] + 7.1 <= 60 * first_plan["minutes"]
    # the first rule cut this one to 22 for good after epoch 2 and left ~14 min unused
    assert _replayed(str(tmp_path), *SLOW_SECOND_EPOCH) == [22] * 3 + [23] * 18


def test_replayed_on_real_fits_the_keeper_takes_back_the_probes_safety_margin_when_the_pace_allows(tmp_path):
    # the most the probe's pace fits without the margin: (6720 - 14.9 - 7.1) / 225.05 = 29.8 and
    # (6720 - 15.8 - 7.1) / 267.57 = 25.0
    most = {"most_epochs": 29}, {"most_epochs": 25}
    # the slow start: no room for more than the 26 epochs it trained
    assert _replayed(str(tmp_path), {**SLOW_START[0], **most[0]}, SLOW_START[1])[-1] == 26
    # the slow second epoch: 25 epochs where the probe planned 23, had epochs 23-25 run at the pace of the
    # last four recorded (262 s)
    first_plan, seconds = {**SLOW_SECOND_EPOCH[0], **most[1]}, SLOW_SECOND_EPOCH[1] + [262] * 3
    plans = _replayed(str(tmp_path), first_plan, seconds)
    assert plans[:3] == [22] * 3 and len(plans) + 1 == plans[-1] == 25
    assert sum(seconds) + first_plan["probe_done_at_s"] + 7.1 <= 60 * first_plan["minutes"]


def test_replayed_on_a_real_fit_the_keeper_uses_a_machine_that_runs_faster_than_its_probe(tmp_path):
    first_plan, seconds = FAST_AFTER_SLOW_PROBE
    final_s = 12.0
    # the ceiling at the probe's pace, (6720 - 39.6 - 12) / 271.15 = 24.6: 24 epochs, 101 of the 112 minutes
    plans = _replayed(str(tmp_path), {**first_plan, "most_epochs": 24}, seconds, final_s)
    assert plans[-1] == len(plans) + 1 == 24
    assert sum(seconds) + first_plan["probe_done_at_s"] < 60 * (first_plan["minutes"] - 10)
    # at FASTEST_PACE: (6720 - 39.6 - 12) / (0.75 * 271.15) = 32.8; epochs 25-26 taken at the last four's pace
    # (237 s), 26 epochs within the budget
    most = math.floor((60 * first_plan["minutes"] - first_plan["probe_done_at_s"] - final_s)
                      / (budget.FASTEST_PACE * first_plan["planned_epoch_s"]))
    seconds = seconds + [237] * 8
    plans = _replayed(str(tmp_path), {**first_plan, "most_epochs": most}, seconds, final_s)
    assert most == 32 and plans[-1] == len(plans) + 1 == 26
    assert sum(seconds[:26]) + first_plan["probe_done_at_s"] + final_s <= 60 * first_plan["minutes"]
