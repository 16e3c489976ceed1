"""A time budget for `fit`: how many epochs of a recipe fit in N minutes on this machine.

A short probe times training steps and validation batches of a fresh copy of the model on the
real input pipeline; the number of epochs then follows from the minutes left. The schedule is
built for that many epochs, so a budgeted run still decays its learning rate to the end.

A shared machine can then run slower than it did during the probe (2026-12-06: the first 12
epochs of a MobileNetV1 fit at 1.01-1.25x the planned time, then six at the planned pace); after
every epoch from the second ``epochs_at_pace`` plans the rest again at the pace of the last few
epochs: the run drops the epochs that would overrun the budget, and takes them back when the
machine is fast again, up to what the whole budget would fit at ``FASTEST_PACE`` of the probe's time
(``most_epochs``: the first plan keeps a safety margin that a run measuring its own pace no longer
needs, and a machine can run faster than it did during the probe).
"""

import dataclasses
import math
import time

from mobilecls._tf import keras

PROBE_STEPS = 8         # training steps in each of the probe's two epochs
PROBE_WARMUP_STEPS = 2  # the first epoch's first steps trace the graph and are not timed
PROBE_EVAL_BATCHES = 2  # timed validation batches per probe epoch, after one more
# Of the time left, for first-epoch tracing and a probe that runs a little fast: the first plan
# only, since the run's own epochs then set the pace. Measured: the demo recipe planned 3.93 s per
# epoch and ran 4.11 s; ShuffleNetV2 1.0x on CIFAR-10 planned 123.6 s and ran 127.3 s (125.4 s
# after the first epoch).
SAFETY_MARGIN = 0.05
# Epochs whose pace predicts the epochs left: recent enough to follow a machine that slows down or
# recovers mid-run, enough of them that one slow epoch does not move the plan by itself.
PACE_WINDOW = 4
# The fastest pace, against the probe's, that a plan may rise to (``most_epochs``): a ceiling for
# ``model.fit``'s epochs, under which the measured pace decides. Measured: 2026-12-06, a ShuffleNetV1
# fit planned 271 s per epoch, ran its last ten at 225-244 s (0.83-0.90x) and, held at the probe's
# pace, stopped at 24 epochs after 100.6 of its 112 minutes; replayed with this ceiling it trains 26.
FASTEST_PACE = 0.75


@dataclasses.dataclass(frozen=True)
class EpochCost:
    """Measured seconds per training step, per validation batch, and per epoch on top of those."""

    train_step_s: float
    eval_batch_s: float
    epoch_overhead_s: float = 0.0

    def epoch_seconds(self, steps, eval_batches):
        """One epoch: ``steps`` training steps, ``eval_batches`` validation batches, its saving."""
        return steps * self.train_step_s + eval_batches * self.eval_batch_s + self.epoch_overhead_s


class _Clock(keras.callbacks.Callback):
    """When each training batch, validation batch and epoch of a ``fit`` call ended."""

    def __init__(self):
        super().__init__()
        self.train_ends, self.eval_ends, self.epoch_ends = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.train_ends.append(time.perf_counter())

    def on_test_batch_end(self, batch, logs=None):
        self.eval_ends.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(time.perf_counter())


def _mean_interval(*spans):
    """Mean seconds per interval over several runs of consecutive end times."""
    return sum(span[-1] - span[0] for span in spans) / sum(len(span) - 1 for span in spans)


def measure_epoch_cost(model, train_batches, validation, callbacks=(), steps=PROBE_STEPS,
                       eval_batches=PROBE_EVAL_BATCHES):
    """Time ``model`` (compiled) on the training pipeline and the validation batches, through ``fit``.

    The probe is a short ``model.fit`` of two epochs, the very loop the run uses, with the run's
    ``callbacks`` (its saving). Steps and batches are timed (except the first ones, which trace
    the graph); whatever else the second epoch took (callbacks, starting the iterators) is the
    per-epoch overhead.

    Args:
        model: a compiled Keras model; its weights are trained by the probe, so pass a copy.
        train_batches: the training ``tf.data.Dataset`` of (pixels, targets).
        validation: the validation ``tf.data.Dataset``, batched as `fit` evaluates it; its first
            batch is evaluated ``1 + eval_batches`` times per epoch (one batch is enough, and a
            smaller last batch would be traced again inside the timed part).
        callbacks: what the run calls around each epoch (its checkpoints), writing elsewhere.
        steps: training steps per probe epoch, more than ``PROBE_WARMUP_STEPS``.
        eval_batches: timed validation batches per probe epoch.
    """
    clock = _Clock()
    model.fit(train_batches, epochs=2, steps_per_epoch=steps, callbacks=[*callbacks, clock], verbose=0,
              validation_data=validation.take(1).repeat(1 + eval_batches))
    train, evals = clock.train_ends, clock.eval_ends
    train_step_s = _mean_interval(train[PROBE_WARMUP_STEPS - 1:steps], train[steps:])
    eval_batch_s = _mean_interval(evals[:1 + eval_batches], evals[1 + eval_batches:])
    timed = steps * train_step_s + (1 + eval_batches) * eval_batch_s
    overhead_s = max(0.0, clock.epoch_ends[1] - clock.epoch_ends[0] - timed)
    return EpochCost(train_step_s, eval_batch_s, overhead_s)


def check_time_left(minutes, elapsed_s):
    """Refuse, before the probe trains anything, a budget that loading the data already used up.

    Raises:
        ValueError: ``elapsed_s`` is the whole budget or more (``epochs_within`` would find no epoch).
    """
    if elapsed_s >= 60.0 * minutes:
        raise ValueError(f"train.time_budget_minutes={minutes:g} fits no epoch here: loading the data took "
                         f"{elapsed_s:.1f} s, the whole budget")


def epochs_within(budget_s, elapsed_s, cost, steps, eval_batches, final_batches, low_resolution=None,
                  margin=SAFETY_MARGIN, pace=1.0):
    """Whole epochs that fit in what is left of ``budget_s``, less a ``margin`` (a fraction) of it, if
    epochs take ``pace`` times what ``cost`` says.

    Args:
        budget_s: the whole fit's budget in seconds.
        elapsed_s: seconds already spent (loading data, the probe).
        cost: an ``EpochCost``.
        steps: training steps per epoch.
        eval_batches: validation batches after each epoch.
        final_batches: batches of the final metrics pass (validation and test splits).
        low_resolution: progressive resizing, ``(EpochCost of a low-resolution epoch, fraction)``:
            ``low_resolution_epochs(epochs, fraction)`` of the epochs cost that instead.

    Raises:
        ValueError: not even one epoch fits.
    """
    epoch_s = pace * cost.epoch_seconds(steps, eval_batches)
    low_cost, fraction = low_resolution or (cost, 0.0)
    low_epoch_s = pace * low_cost.epoch_seconds(steps, eval_batches)

    def seconds(epochs):
        low = low_resolution_epochs(epochs, fraction)
        return low * low_epoch_s + (epochs - low) * epoch_s

    left = (budget_s - elapsed_s - final_batches * cost.eval_batch_s) * (1.0 - margin)
    epochs = math.floor(left / min(epoch_s, low_epoch_s)) if left > 0 else 0  # an upper bound
    while epochs and seconds(epochs) > left:
        epochs -= 1
    if epochs < 1:
        raise ValueError(f"train.time_budget_minutes={budget_s / 60:g} fits no epoch here: one epoch takes "
                         f"about {epoch_s:.0f} s and {elapsed_s:.0f} s went to loading data and timing the model")
    return epochs


def planned_seconds(plan, start, end):
    """What ``plan`` (``fit``'s ``time_budget`` record) expected epochs ``start`` to ``end`` (from 0)
    to take: its low-resolution epochs come first."""
    lows = max(0, min(end, plan.get("low_resolution_epochs", 0)) - start)
    low_s = plan.get("planned_low_resolution_epoch_s", plan["planned_epoch_s"])
    return lows * low_s + (end - start - lows) * plan["planned_epoch_s"]


def most_epochs(plan):
    """The most epochs a run with ``plan`` trains: what the budget fits without the safety margin at
    ``FASTEST_PACE`` of the probe's time (plans recorded before ``most_epochs`` existed: the probe's plan)."""
    replans = plan.get("replans")
    return plan.get("most_epochs", replans[0]["from_epochs"] if replans else plan["epochs"])


def epochs_at_pace(plan, epoch_seconds, final_s):
    """The most epochs, no more than ``most_epochs``, that still end within the budget if the
    epochs left run at the pace of the last epochs done, and that pace.

    Args:
        plan: ``fit``'s ``time_budget`` record: ``minutes``, ``epochs``, ``planned_epoch_s``,
            ``probe_done_at_s``, ``most_epochs``, ``replans`` if any (and with progressive resizing
            ``low_resolution_epochs``, ``planned_low_resolution_epoch_s``).
        epoch_seconds: the measured seconds of each epoch done (one or more).
        final_s: the planned seconds of the final metrics pass.

    Returns:
        ``(epochs, pace)``: ``pace`` is the measured over the planned seconds of the last
        ``PACE_WINDOW`` epochs, leaving out the first (which also traced the training step) unless
        it is the only one, 1.0 as planned; ``epochs`` is never more than ``most_epochs``,
        never fewer than the epochs done (then the run stops now) and, with progressive resizing,
        never ends on a low-resolution epoch (one full-resolution epoch is kept even if it overruns).
    """
    done = len(epoch_seconds)
    first = max(1 if done > 1 else 0, done - PACE_WINDOW)
    pace = sum(epoch_seconds[first:]) / planned_seconds(plan, first, done)
    left = 60.0 * plan["minutes"] - plan["probe_done_at_s"] - sum(epoch_seconds) - pace * final_s
    low = plan.get("low_resolution_epochs", 0)
    least = max(done, low + 1 if low else 0)
    epochs = most_epochs(plan)
    while epochs > least and pace * planned_seconds(plan, done, epochs) > left:
        epochs -= 1
    return epochs, pace


def low_resolution_epochs(epochs, fraction):
    """How many of ``epochs`` progressive resizing trains at low resolution: the first
    ``fraction`` of them, rounded half up, and never the last one."""
    return max(0, min(math.floor(fraction * epochs + 0.5), epochs - 1))
