"""A time budget for `fit`: how many epochs of a recipe fit in N minutes on this machine.

A short probe times training steps and validation batches of a fresh copy of the model on the
real input pipeline; the number of epochs then follows from the minutes left. The schedule is
built for that many epochs, so a budgeted run still decays its learning rate to the end.
"""

import dataclasses
import math
import time

PROBE_WARMUP_STEPS = 2  # traced and discarded
PROBE_STEPS = 12
SAFETY_MARGIN = 0.03    # of the time left, for first-epoch tracing and per-epoch saving


@dataclasses.dataclass(frozen=True)
class EpochCost:
    """Measured seconds per training step and per validation batch."""

    train_step_s: float
    eval_batch_s: float

    def epoch_seconds(self, steps, eval_batches):
        """One epoch: ``steps`` training steps, then ``eval_batches`` validation batches."""
        return steps * self.train_step_s + eval_batches * self.eval_batch_s


def _timed_mean(function, calls):
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def measure_epoch_cost(model, train_batches, eval_batch, steps=PROBE_STEPS):
    """Time ``model`` (compiled) on batches of the training pipeline and one validation batch.

    Args:
        model: a compiled Keras model; its weights are trained by the probe, so pass a copy.
        train_batches: the training ``tf.data.Dataset`` of (pixels, targets).
        eval_batch: one (pixels, targets) validation batch of the size `fit` evaluates with.
        steps: timed training steps (after ``PROBE_WARMUP_STEPS`` untimed ones).
    """
    batches = iter(train_batches)

    def train_step():
        pixels, targets = next(batches)
        model.train_on_batch(pixels, targets)

    def eval_step():
        model.test_on_batch(*eval_batch)

    _timed_mean(train_step, PROBE_WARMUP_STEPS)
    _timed_mean(eval_step, 1)
    return EpochCost(_timed_mean(train_step, steps), _timed_mean(eval_step, 2))


def epochs_within(budget_s, elapsed_s, cost, steps, eval_batches, final_batches):
    """Whole epochs that fit in what is left of ``budget_s``.

    Args:
        budget_s: the whole fit's budget in seconds.
        elapsed_s: seconds already spent (loading data, the probe).
        cost: an ``EpochCost``.
        steps: training steps per epoch.
        eval_batches: validation batches after each epoch.
        final_batches: batches of the final metrics pass (validation and test splits).

    Raises:
        ValueError: not even one epoch fits.
    """
    epoch_s = cost.epoch_seconds(steps, eval_batches)
    left = (budget_s - elapsed_s - final_batches * cost.eval_batch_s) * (1.0 - SAFETY_MARGIN)
    epochs = math.floor(left / epoch_s) if left > 0 else 0
    if epochs < 1:
        raise ValueError(f"train.time_budget_minutes={budget_s / 60:g} fits no epoch here: one epoch takes "
                         f"about {epoch_s:.0f} s and {elapsed_s:.0f} s went to loading data and timing the model")
    return epochs
