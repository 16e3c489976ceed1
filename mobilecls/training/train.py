"""`fit`: train a recipe into a run folder (checkpoints, history, metrics, plots), resumable."""

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import shutil
import tempfile
import time

import numpy as np

from mobilecls import recipes
from mobilecls._tf import keras, tf
from mobilecls.data import load as load_data
from mobilecls.data.pipeline import augment_batch, evaluation_batches, training_batches
from mobilecls.errors import RunFailed
from mobilecls.evaluation.metrics import classification_metrics
from mobilecls.files import replacing, staging_folder, write_atomically, write_json
from mobilecls.models import build_model
from mobilecls.models.io import load_keras_model
from mobilecls.optimize.finetune import check_teacher, distilled
from mobilecls.training import budget, run_state
from mobilecls.training.teacher_targets import teacher_targets


@keras.utils.register_keras_serializable("mobilecls")
class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then constant, step decay, cosine or one-cycle (cosine down from the peak).

    A function of the optimizer step, so a resumed run continues the schedule where it stopped.
    The last step is a variable (``end_at``), so a time budget can end a traced run sooner.
    """

    def __init__(self, name, peak, total_steps, warmup_steps=0, step_every=1, step_factor=0.1,
                 final_fraction=0.0):
        super().__init__()
        self.name, self.peak = name, float(peak)
        self._total_steps = tf.Variable(float(total_steps), trainable=False, dtype=tf.float32)
        self.warmup_steps, self.step_every = int(warmup_steps), max(1, int(step_every))
        self.step_factor, self.final_fraction = float(step_factor), float(final_fraction)

    @property
    def total_steps(self):
        return int(self._total_steps.numpy())

    def end_at(self, total_steps):
        """Decay to ``total_steps`` instead (the steps taken so far keep the rates they had)."""
        self._total_steps.assign(float(total_steps))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(self.warmup_steps, tf.float32)
        after = tf.maximum(step - warmup, 0.0)
        span = tf.maximum(self._total_steps - warmup, 1.0)
        if self.name == "constant":
            decayed = tf.constant(self.peak)
        elif self.name == "step":
            decayed = self.peak * self.step_factor ** tf.floor(step / self.step_every)
        else:  # linear, cosine and onecycle: from the peak down to final_fraction * peak
            progress = tf.minimum(after / span, 1.0)
            floor = self.final_fraction * self.peak
            shape = 1.0 - progress if self.name == "linear" else 0.5 * (1.0 + tf.cos(math.pi * progress))
            decayed = floor + (self.peak - floor) * shape
        if self.warmup_steps:
            start = self.peak / 25.0 if self.name == "onecycle" else 0.0
            ramp = start + (self.peak - start) * step / warmup
            return tf.where(step < warmup, ramp, decayed)
        return decayed

    def get_config(self):
        return {"name": self.name, "peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "step_every": self.step_every,
                "step_factor": self.step_factor, "final_fraction": self.final_fraction}


def learning_rate(recipe, steps_per_epoch):
    """The recipe's schedule as a ``LearningRate`` over optimizer steps."""
    schedule = recipe.schedule
    warmup = schedule.warmup_epochs or (0.3 * recipe.train.epochs if schedule.name == "onecycle" else 0)
    return LearningRate(schedule.name, recipe.optimizer.lr, recipe.train.epochs * steps_per_epoch,
                        warmup_steps=round(warmup * steps_per_epoch),
                        step_every=schedule.step_epochs * steps_per_epoch, step_factor=schedule.step_factor,
                        final_fraction=schedule.final_lr_fraction)


def make_optimizer(recipe, steps_per_epoch):
    """SGD, RMSprop or AdamW with the schedule; weight decay skips BatchNorm parameters and biases
    (and depthwise filters with ``optimizer.depthwise_weight_decay: false``).

    With ``optimizer.ema_decay`` the optimizer also keeps the moving average of the trainable
    weights (Keras' ``use_ema``; its variables are among the optimizer's, so resuming restores them).
    """
    section = recipe.optimizer
    rate = learning_rate(recipe, steps_per_epoch)
    ema = {"use_ema": True, "ema_momentum": section.ema_decay} if section.ema_decay else {}
    if section.name == "sgd":
        optimizer = keras.optimizers.SGD(rate, momentum=section.momentum, nesterov=section.nesterov,
                                         weight_decay=section.weight_decay or None, **ema)
    elif section.name == "rmsprop":  # as the MobileNet papers (TF-slim): decay 0.9, epsilon 1.0
        optimizer = keras.optimizers.RMSprop(rate, rho=0.9, momentum=section.momentum, epsilon=1.0,
                                             weight_decay=section.weight_decay or None, **ema)
    else:
        optimizer = keras.optimizers.AdamW(rate, weight_decay=section.weight_decay, **ema)
    undecayed = ["_bn", "bias", "gamma", "beta"] + ([] if section.depthwise_weight_decay else ["depthwise_kernel"])
    optimizer.exclude_from_weight_decay(var_names=undecayed)
    return optimizer


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished training run: its folder and what it measured."""

    path: str
    metrics: dict

    @property
    def model_path(self):
        """The best model (float32 .keras)."""
        return os.path.join(self.path, "best.keras")


class _Monitor(keras.callbacks.Callback):
    """Each epoch's time, images/s and image size (into the logs), and a clear stop on a NaN loss."""

    def __init__(self, batch_size, steps, image_size=None):
        super().__init__()
        self.batch_size, self.steps = batch_size, steps
        self.image_size = image_size  # the side the epoch trains at (progressive resizing changes it)
        self.nan_at, self.throughput, self.seconds = None, [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.started = epoch, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if logs and not np.isfinite(logs.get("loss", 0.0)):
            self.nan_at = (self.epoch + 1, batch + 1)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.started
        rate = self.steps * self.batch_size / self.seconds
        self.throughput.append(rate)
        if logs is not None:
            logs["images_per_sec"] = rate
            if self.image_size:
                logs["image_size"] = self.image_size


PROGRESS_METRICS = ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5")


class _ProgressLine(keras.callbacks.Callback):
    """One line per epoch, "epoch k/N: seconds, images/s, metrics", after every other callback.

    The run's only progress output: Keras' own would count to the epochs ``model.fit`` was given,
    which under a time budget is the most the budget allows, not the plan. N is
    ``planned_epochs()`` once the budget keeper has replanned after this epoch.
    """

    def __init__(self, monitor, planned_epochs):
        super().__init__()
        self.monitor, self.planned_epochs = monitor, planned_epochs

    def on_epoch_end(self, epoch, logs=None):
        monitor = self.monitor
        size = f" at {monitor.image_size} px" if monitor.image_size else ""
        metrics = "".join(f", {name} {logs[name]:.4f}" for name in PROGRESS_METRICS if name in (logs or {}))
        print(f"epoch {epoch + 1}/{self.planned_epochs()}: {monitor.seconds:.0f} s, {monitor.throughput[-1]:.0f} "
              f"images/s{size}{metrics}", flush=True)


STATISTICS_IMAGES = 2048  # training images BatchNorm statistics are recomputed on for the averaged weights
STATISTICS_BATCH = 256


def statistics_images(images, augment, count=STATISTICS_IMAGES, seed=0):
    """The fixed sample ``WeightAverage`` recomputes BatchNorm statistics on (float32 pixels 0..255).

    ``count`` training images in a random order, so that every batch mixes the classes as a
    training batch does (a folder split is stored class by class: batches of one or two classes
    understate the deep layers' variance), with the recipe's augmentation, the inputs the network
    learned its statistics on. Measured on the final live weights of a MobileNetV1 0.75 fit, 2,000
    val images: live statistics 86.65 %, recomputed on this sample 86.65 %, on the same images
    without augmentation 82.85 %, on class-sorted batches 84.60 %.
    """
    chosen = images[np.random.default_rng(seed).permutation(len(images))[:count]]
    return np.concatenate([
        augment_batch(tf.constant(chosen[start:start + STATISTICS_BATCH]), augment,
                      tf.constant([seed, start], tf.int64)).numpy()
        for start in range(0, len(chosen), STATISTICS_BATCH)])


class WeightAverage(keras.callbacks.Callback):
    """With ``optimizer.ema_decay``: the averaged model that each epoch's validation measures and
    best.keras holds; inert without one.

    The optimizer averages the trainable weights (Keras' ``use_ema``; tf_keras 2.21 keeps one
    average per variable in ``_model_variables_moving_average``, in its index order). BatchNorm's
    moving statistics are not trainable, and neither the live ones nor an average of them fit the
    averaged weights: as for stochastic weight averaging, they are recomputed for the averaged
    weights, a cumulative average over ``images`` (``statistics_images``) in training mode, once
    per step count and kept for that epoch's validation, checkpoint and best.keras. Measured on a
    MobileNetV1 0.75 CIFAR-10 fit (decay 0.999), all 5,000 val images: epoch 9's averaged weights
    16.3 % with averaged statistics, 82.8 % with recomputed ones; the last epoch's 87.92 / 87.94 %.
    """

    def __init__(self, model, decay, images=None):
        super().__init__()
        self.decay, self.images = decay, images
        self.normalizations = [layer for layer in model.submodules
                               if isinstance(layer, keras.layers.BatchNormalization)] if decay else []
        self._held, self._statistics_at, self._statistics = None, None, None

    def _variables(self, model):
        optimizer = model.optimizer
        averages = [optimizer._model_variables_moving_average[optimizer._index_dict[optimizer._var_key(variable)]]
                    for variable in model.trainable_variables]
        statistics = [variable for layer in self.normalizations for variable in (layer.moving_mean,
                                                                                  layer.moving_variance)]
        return averages, statistics

    def swap_in(self, model):
        """Put the averaged weights and their statistics into ``model``; returns what to restore
        (None: no average, or the optimizer has not been built yet: no step taken)."""
        if not self.decay or not hasattr(model.optimizer, "_model_variables_moving_average"):
            return None
        averages, statistics = self._variables(model)
        live = model.trainable_variables
        held = [variable.numpy() for variable in [*live, *statistics]]
        for variable, average in zip(live, averages, strict=True):
            variable.assign(average)
        step = int(model.optimizer.iterations.numpy())
        if self._statistics_at != step:
            self._recompute_statistics(model)
            self._statistics_at, self._statistics = step, [variable.numpy() for variable in statistics]
        for variable, value in zip(statistics, self._statistics, strict=True):
            variable.assign(value)
        return held

    def swap_out(self, model, held):
        """Undo ``swap_in``."""
        if held is not None:
            _, statistics = self._variables(model)
            for variable, value in zip([*model.trainable_variables, *statistics], held, strict=True):
                variable.assign(value)

    def _recompute_statistics(self, model):
        """Each BatchNormalization's moving mean and variance: the mean over ``images``' batches of
        the batch statistics (momentum k / (k + 1) for the k-th batch, from 0)."""
        momenta = [layer.momentum for layer in self.normalizations]
        try:
            for k, start in enumerate(range(0, len(self.images), STATISTICS_BATCH)):
                for layer in self.normalizations:
                    layer.momentum = k / (k + 1)
                model(tf.constant(self.images[start:start + STATISTICS_BATCH]), training=True)
        finally:
            for layer, momentum in zip(self.normalizations, momenta, strict=True):
                layer.momentum = momentum

    @contextlib.contextmanager
    def swapped(self, model):
        """Inside: ``model`` holds the averages (as validation measured them)."""
        held = self.swap_in(model)
        try:
            yield model
        finally:
            self.swap_out(model, held)

    def on_test_begin(self, logs=None):
        self._held = self.swap_in(self.model)

    def on_test_end(self, logs=None):
        self.swap_out(self.model, self._held)
        self._held = None


class _Recorder(keras.callbacks.Callback):
    """After every epoch: its weights checkpoint, the resume state, best.keras, then the manifest.

    Each file is written atomically and the manifest last, so a kill at any moment leaves either
    the previous epoch's consistent files or the new ones (see ``mobilecls.training.run_state``).
    """

    def __init__(self, folder, state, monitor, average):
        super().__init__()
        self.folder, self.state, self.monitor, self.average = folder, state, monitor, average

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor.nan_at:  # the epoch stopped early on a NaN loss: nothing in it is worth keeping
            return
        logs, state, number = logs or {}, self.state, epoch + 1
        # The checkpoint and best.keras hold what validation measured (with ema_decay: the averaged
        # weights); the resume state holds the training weights and the optimizer's variables.
        checkpoint = f"checkpoints/epoch_{number:03d}.weights.h5"
        with self.average.swapped(self.model), replacing(os.path.join(self.folder, checkpoint)) as temporary:
            self.model.save_weights(temporary)
        resume_file = f"state/epoch_{number:03d}.npz"
        write_atomically(os.path.join(self.folder, resume_file), _training_state(self.model))
        value = float(logs.get("val_accuracy", float("nan")))
        if state["best"] is None or value > state["best"]["val_accuracy"]:
            with self.average.swapped(self.model), replacing(os.path.join(self.folder, "best.keras")) as temporary:
                self.model.save(temporary)
            state["best"] = {"epoch": number, "val_accuracy": value}
            run_state.record(self.folder, state, "best.keras")
        outdated = [path for path in state["files"] if path.startswith("state/")]
        for path in outdated:
            del state["files"][path]
        run_state.record(self.folder, state, checkpoint)
        run_state.record(self.folder, state, resume_file)
        state["history"].append({"epoch": epoch, **{key: float(v) for key, v in logs.items()}})
        state["epoch_seconds"].append(time.perf_counter() - self.started)
        state["epochs_done"] = number
        run_state.commit(self.folder, state)
        for path in outdated:  # only now: until the commit, the manifest on disk still needs them
            os.unlink(os.path.join(self.folder, path))


class _BudgetKeeper(keras.callbacks.Callback):
    """With a time budget: after each recorded epoch, as many epochs as the recent pace fits in
    the budget (``budget.epochs_at_pace``); inert without a plan.

    Fewer epochs when the machine slows down, more when it recovers, did not need the probe's
    safety margin or runs faster than during the probe, never more than ``budget.most_epochs``
    (``fit`` calls ``model.fit`` for those; this callback stops it). The schedule then decays to the
    new last epoch, and the plan, ``recipe.yaml`` and the manifest say so (``plan["replans"]``), so
    a resumed run trains the same epochs.
    """

    def __init__(self, folder, state, steps, final_s, quiet):
        super().__init__()
        self.folder, self.state, self.steps, self.final_s, self.quiet = folder, state, steps, final_s, quiet

    def on_epoch_end(self, epoch, logs=None):
        state, plan = self.state, self.state["plan"]
        if not plan or state["epochs_done"] != epoch + 1:  # no budget, or an epoch _Recorder dropped (NaN)
            return
        if state["epochs_done"] < 2 < plan["epochs"]:  # the first epoch also traced the step: pace from the second
            return
        epochs, pace = budget.epochs_at_pace(plan, state["epoch_seconds"], self.final_s)
        if epochs != plan["epochs"]:
            plan.setdefault("replans", []).append({"after_epoch": epoch + 1, "pace": pace,
                                                   "from_epochs": plan["epochs"], "epochs": epochs})
            plan["epochs"] = epochs
            self.model.optimizer._learning_rate.end_at(epochs * self.steps)  # tf_keras keeps the schedule there
            path = os.path.join(self.folder, "recipe.yaml")
            recipes.save(recipes.replace(recipes.load(path), train={"epochs": epochs}), path)
            run_state.commit(self.folder, state)
            if not self.quiet:
                print(f"time budget {plan['minutes']:g} min: at the last epochs' pace ({pace:.2f}x the planned "
                      f"time) {epochs} epochs fit in it, not {plan['replans'][-1]['from_epochs']}", flush=True)
        if state["epochs_done"] >= plan["epochs"]:
            self.model.stop_training = True


def _training_state(model):
    """Weights and optimizer variables (step, momenta, weight averages) as .npz bytes: what
    resuming restores."""
    arrays = {f"weight_{index}": value for index, value in enumerate(model.get_weights())}
    arrays.update({f"optimizer_{index}": variable.numpy() for index, variable in enumerate(model.optimizer.variables)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _restore_training_state(model, path, distribution):
    """Put what ``_training_state`` saved back into a compiled model."""
    with np.load(path) as arrays:
        weights = [arrays[f"weight_{index}"] for index in range(len(model.get_weights()))]
        with distribution.scope():
            model.optimizer.build(model.trainable_variables)  # creates the momenta to assign to
        variables = model.optimizer.variables
        if f"optimizer_{len(variables)}" in arrays or f"optimizer_{len(variables) - 1}" not in arrays:
            raise ValueError(f"{path} does not match the recipe's optimizer; the run folder was changed")
        model.set_weights(weights)
        for index, variable in enumerate(variables):
            variable.assign(arrays[f"optimizer_{index}"])


def _epoch_callbacks(folder, monitor, average, state=None):
    """What a run does around every epoch, writing into ``folder`` (the budget probe times them too)."""
    return [average, monitor, _Recorder(folder, run_state.new_state() if state is None else state, monitor, average)]


def _check_run_folder(out, resume):
    if resume:
        if not os.path.isfile(os.path.join(out, "recipe.yaml")):
            raise FileNotFoundError(f"cannot resume {out}: no recipe.yaml in it (not a run folder)")
    elif os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder; choose a new run folder")
    elif os.path.exists(out) and os.listdir(out):
        raise ValueError(f"run folder {out} already exists and is not empty; resume it with --resume {out} "
                         "or choose another --out")
    else:
        parent = os.path.dirname(os.path.abspath(out))
        if os.path.exists(parent) and not os.access(parent, os.W_OK):
            raise ValueError(f"cannot create the run folder {out}: {parent} is not writable")


def _create_run_folder(out, recipe, class_names, state):
    """Make the run folder complete (recipe, classes, manifest) or not at all."""
    with staging_folder(out) as staging:
        os.makedirs(os.path.join(staging, "checkpoints"))
        recipes.save(recipe, os.path.join(staging, "recipe.yaml"))
        write_json(os.path.join(staging, "classes.json"), list(class_names))
        run_state.commit(staging, state)


def _prepare_resume(out, state, model, distribution):
    """Drop what the manifest does not vouch for, check what it does, and restore the training state."""
    run_state.remove_unrecorded(out, state)
    damaged = run_state.damaged_files(out, state)
    if "best.keras" in damaged:  # killed between saving a new best model and committing its epoch
        best = f"checkpoints/epoch_{state['best']['epoch']:03d}.weights.h5"
        if best not in damaged:
            damaged.remove("best.keras")
            model.load_weights(os.path.join(out, best))
            with replacing(os.path.join(out, "best.keras")) as temporary:
                model.save(temporary)
            run_state.record(out, state, "best.keras")
    if damaged:
        raise ValueError(f"cannot resume {out}: {', '.join(damaged)} changed or vanished after epoch "
                         f"{state['epochs_done']} was recorded (the run folder was changed by hand)")
    if state["epochs_done"]:
        _restore_training_state(model, os.path.join(out, f"state/epoch_{state['epochs_done']:03d}.npz"),
                                distribution)
    run_state.commit(out, state)  # history.csv again from the manifest: a later epoch's rows go


def _check_splits(data, recipe):
    """Enough images to train and validate, or a message that says what to change."""
    train, val = data.splits["train"], data.splits["val"]
    if len(train.images) and len(val.images):
        return
    per_class = np.bincount(np.concatenate([train.labels, val.labels]).astype(np.int64),
                            minlength=len(data.class_names))
    raise ValueError(f"data {recipe.data.spec}: {len(train.images)} training and {len(val.images)} validation "
                     f"images; with data.val_fraction={recipe.data.val_fraction:g} every class needs at least 2 "
                     f"images (the fewest has {int(per_class.min()) if len(per_class) else 0})")


def _accept_any_image_size(model, side):
    """Let ``model`` (built for one input size) train on ``side`` x ``side`` images too, or refuse.

    Convolutions and global pooling take any size; Keras only checks the input against the
    shape the model was built with, so the check is relaxed to "4-D, 3 channels" on this model
    object (a saved and reloaded model checks its size again). A layer fixed to the built size
    (ShuffleNetV1's channel-shuffle Reshape) fails the trial call here, before anything trains.

    Raises:
        ValueError: the model cannot run at ``side``.
    """
    model.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: 3})
    try:
        model(tf.zeros((1, side, side, 3)), training=False)
    except Exception as error:  # Keras raises several types for a shape it cannot take
        reason = str(error).splitlines()[0][:160]
        raise ValueError(f"train.low_resolution={side}: {model.name} cannot take {side}x{side} images, only the "
                         f"size it was built for ({reason}); set train.low_resolution to null") from None


def _load_teacher(recipe, kwargs):
    """``train.teacher`` loaded and checked against the model the recipe builds (None without one).

    Raises:
        FileNotFoundError, ValueError: not a model file, or other input size or classes.
    """
    if not recipe.train.teacher or recipe.train.teacher_runs != "every_batch":
        return None
    (path,) = recipes.teacher_files(recipe.train)  # one file (the recipe checks): a str or a list of one
    teacher = load_keras_model(path)
    check_teacher(teacher, path, build_model(recipe.model.name, **kwargs), recipe.model.name)
    if recipe.train.low_resolution:
        _accept_any_image_size(teacher, recipe.train.low_resolution)
    return teacher


def _precomputed_teacher_targets(recipe, train, class_names, quiet):
    """``train.teacher_runs: once``: the teachers' class distributions on the training images
    (``training.teacher_targets``), or None. Run before the budget's probe, so a budget pays for it.

    Raises:
        FileNotFoundError, ValueError: not a model file, or other input size or classes.
    """
    if not recipe.train.teacher or recipe.train.teacher_runs != "once":
        return None
    started = time.perf_counter()
    files = recipes.teacher_files(recipe.train)
    targets = teacher_targets(files, train.images, class_names, mirror=bool(recipe.augment.flip),
                              temperature=recipe.train.teacher_temperature)
    if not quiet:
        agreement = float(np.mean(targets.argmax(axis=1) == train.labels))
        print(f"teacher targets from {len(files)} file(s) in {time.perf_counter() - started:.0f} s; "
              f"they pick the label on {100 * agreement:.2f} % of the training images")
    return targets


def _float32_copy(model, kwargs, name):
    """The same model built in float32 with the trained weights (a bf16 model won't convert)."""
    keras.mixed_precision.set_global_policy("float32")
    copy = build_model(name, **kwargs)
    copy.set_weights(model.get_weights())
    return copy


def _predict(model, images, batch_size):
    return model.predict(evaluation_batches(images, batch_size), verbose=0).astype(np.float32)


STRATEGIES = ("default", "mirrored", "multiworker")
EVAL_BATCH = 256


def make_strategy(name):
    """The tf.distribute strategy ``name``: default, mirrored (all local devices) or multiworker.

    mirrored on a CPU-only machine splits the CPU into two logical devices, which has to happen
    before TensorFlow starts its runtime (fit calls this first). multiworker reads the cluster
    from TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy multiworker needs TF_CONFIG (the cluster's workers and this task's index)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not tf.config.list_physical_devices("GPU"):
        (cpu,) = tf.config.list_physical_devices("CPU")[:1]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        except RuntimeError:  # the runtime already started: keep what it has
            pass
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MirroredStrategy()


def _worker_folder(out, strategy_name):
    """Workers other than the chief write their own copies beside the chief's run folder."""
    if strategy_name != "multiworker":
        return out
    task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
    index = int(task.get("index", 0))
    return out if task.get("type", "worker") in ("chief", "worker") and index == 0 else f"{out}.worker_{index}"


def default_run_folder(recipe, when=None):
    """Where `mobilecls fit` trains ``recipe`` when no --out is given: runs/<model>-<YYYYmmdd-HHMMSS>."""
    return f"runs/{recipe.model.name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def fit(recipe, out, resume=False, quiet=False, strategy="default"):
    """Train ``recipe`` into the run folder ``out``.

    Args:
        recipe: a ``recipes.Recipe`` (or a path to a recipe YAML file).
        out: the run folder; must be new or empty unless ``resume``.
        resume: continue the run in ``out`` from its last completed epoch (weights, optimizer
            state and schedule), reading the recipe saved there.
        quiet: no progress output.
        strategy: default, mirrored (tf.distribute over local devices; two logical CPU devices
            on a CPU-only machine) or multiworker (TF_CONFIG; workers other than the chief write
            to ``out.worker_N``).

    Returns:
        A ``Run`` with the folder and its metrics (also in ``out/metrics.json``).

    Raises:
        ValueError: the run folder exists (without resume), bad data or recipe.
        RunFailed: the loss became NaN.
        FileNotFoundError: resume of a folder that is not a run.
    """
    entered = time.perf_counter()
    distribution = make_strategy(strategy)  # first: mirrored must split the CPU before TF starts
    out = _worker_folder(out, strategy)
    _check_run_folder(out, resume)
    if resume:
        recipe, state = recipes.load(os.path.join(out, "recipe.yaml")), run_state.read(out)
        if state["finished"]:
            return _finished_run(out, quiet)
        if state["plan"]:  # the manifest is committed last: a kill may leave recipe.yaml a re-plan behind
            recipe = recipes.replace(recipe, train={"epochs": state["plan"]["epochs"]})
    elif isinstance(recipe, str):
        recipe = recipes.load(recipe)
    keras.utils.set_random_seed(recipe.train.seed)
    # The holdout is the dataset's, not the run's: data.holdout_seed whatever train.seed, the split that
    # eval, quantize and QAT load. Held out with train.seed, a seed-1 run was evaluated on images it trained on.
    data = load_data(recipe.data.spec, data_dir=recipe.data.data_dir, val_fraction=recipe.data.val_fraction,
                     seed=recipe.data.holdout_seed, skip_bad=recipe.data.skip_bad, image_size=recipe.data.image_size)
    _check_splits(data, recipe)
    if data.skipped and not quiet:
        print(f"skipped {len(data.skipped)} unreadable image(s), e.g. {data.skipped[0]}")
    train, val = data.splits["train"], data.splits["val"]
    batch_size = min(recipe.train.batch_size, len(train.images))
    steps = len(train.images) // batch_size
    num_classes = len(data.class_names)
    kwargs = recipe.model.builder_kwargs(train.images.shape[1], num_classes)
    full_size, low_size = kwargs["input_size"], recipe.train.low_resolution
    if low_size and low_size >= full_size:
        raise ValueError(f"train.low_resolution={low_size} must be smaller than the model's input size {full_size}")
    val_targets = tf.one_hot(val.labels, num_classes)
    validation = tf.data.Dataset.from_tensor_slices((val.images, val_targets)).batch(EVAL_BATCH).map(
        lambda x, y: (tf.cast(x, tf.float32), y))

    teacher = _load_teacher(recipe, kwargs)
    soft_targets = _precomputed_teacher_targets(recipe, train, data.class_names, quiet)

    def batches(first_epoch=0, image_size=None):
        pipeline = training_batches(train.images, train.labels, batch_size, recipe.augment, num_classes,
                                    recipe.train.label_smoothing, recipe.train.seed, first_epoch=first_epoch,
                                    image_size=image_size, soft_targets=soft_targets, distill=recipe.train.distill)
        return distilled(pipeline, teacher, recipe.train.distill) if teacher else pipeline

    def compiled_model(recipe):
        """The model, compiled, and its ``WeightAverage``."""
        with distribution.scope():
            model = build_model(recipe.model.name, **kwargs)
            if low_size:
                _accept_any_image_size(model, low_size)
            model.compile(optimizer=make_optimizer(recipe, steps),
                          loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5")])
            decay = recipe.optimizer.ema_decay
            sample = statistics_images(train.images, recipe.augment) if decay else None
            return model, WeightAverage(model, decay, sample)

    keras.mixed_precision.set_global_policy(recipe.train.mixed_precision or "float32")
    created = False
    try:
        if resume:
            model, average = compiled_model(recipe)
            _prepare_resume(out, state, model, distribution)
        else:
            plan = None
            if recipe.train.time_budget_minutes:
                budget.check_time_left(recipe.train.time_budget_minutes, time.perf_counter() - entered)
                recipe, plan = _plan_epochs(recipe, strategy, *compiled_model(recipe), batches, validation, data,
                                            steps, batch_size, time.perf_counter() - entered, quiet)
                keras.utils.set_random_seed(recipe.train.seed)  # the probe drew from the global seed
            # before the folder exists: a model that cannot be built leaves none
            model, average = compiled_model(recipe)
            state = run_state.new_state(plan)
            _create_run_folder(out, recipe, data.class_names, state)
            created = True
        monitor = _Monitor(batch_size, steps)
        final_s = state["plan"]["eval_batch_s"] * _final_batches(data) if state["plan"] else 0.0
        callbacks = [*_epoch_callbacks(out, monitor, average, state), _BudgetKeeper(out, state, steps, final_s, quiet)]
        if not quiet:
            callbacks.append(_ProgressLine(monitor, lambda: (state["plan"] or {}).get("epochs", recipe.train.epochs)))
        plan = state["plan"]
        if plan:  # up to the most the budget allows: the budget keeper stops the run at its current plan
            epochs, low_epochs = budget.most_epochs(plan), plan.get("low_resolution_epochs", 0)
        else:
            epochs = recipe.train.epochs
            low_epochs = budget.low_resolution_epochs(epochs, recipe.train.low_resolution_fraction) if low_size else 0
        # progressive resizing: a fit call per image size (each traces its own training step)
        for size in (low_size, None):
            end, done = min(low_epochs, epochs) if size else epochs, state["epochs_done"]
            if done >= end or (plan and done >= plan["epochs"]) or monitor.nan_at:
                continue
            monitor.image_size = (size or full_size) if low_size else None
            model.fit(batches(first_epoch=done, image_size=size), epochs=end, initial_epoch=done,
                      steps_per_epoch=steps, validation_data=validation, callbacks=callbacks, verbose=0)
        if monitor.nan_at:
            epoch, step = monitor.nan_at
            raise RunFailed(f"loss became NaN at epoch {epoch}, step {step}; the run stopped. Lower "
                             f"optimizer.lr (now {recipe.optimizer.lr}) or add schedule.warmup_epochs"
                             + (f"; epochs 1-{state['epochs_done']} are kept in {out}" if state["epochs_done"] else
                                "; nothing was kept, so the same --out can be used again"))
        with replacing(os.path.join(out, "last.keras")) as temporary:
            model.save(temporary)
        best = keras.models.load_model(os.path.join(out, "best.keras"), compile=False)
        if recipe.train.mixed_precision:
            best = _float32_copy(best, kwargs, recipe.model.name)
    except BaseException as error:
        if created and not state["epochs_done"] and not isinstance(error, KeyboardInterrupt):
            shutil.rmtree(out, ignore_errors=True)  # nothing worth resuming: leave no half-made run
        raise
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if recipe.train.mixed_precision:
        with replacing(os.path.join(out, "best.keras")) as temporary:
            best.save(temporary)
    if plan:
        recipe = recipes.replace(recipe, train={"epochs": plan["epochs"]})
    return _finish(out, recipe, state, best, data, strategy, distribution, entered)


def _finish(out, recipe, state, best, data, strategy, distribution, entered):
    """metrics.json and the plots from the best model, then the manifest marks the run finished."""
    history = state["history"]
    metrics = {"model": recipe.model.name, "data": recipe.data.spec, "epochs": recipe.train.epochs,
               "strategy": strategy, "replicas": distribution.num_replicas_in_sync,
               "wall_time_s": float(sum(state["epoch_seconds"])),  # over every attempt of a resumed run
               "train_images_per_sec": float(np.mean([row.get("images_per_sec", 0.0) for row in history] or [0.0]))}
    for split in ("val", "test"):
        if split in data.splits:
            part = data.splits[split]
            metrics[split] = classification_metrics(part.labels, _predict(best, part.images, EVAL_BATCH),
                                                    data.class_names)
    metrics["total_time_s"] = time.perf_counter() - entered
    if state["plan"]:
        metrics["time_budget"] = state["plan"]
    write_json(os.path.join(out, "metrics.json"), metrics)
    from mobilecls.training.plots import plot_confusion, plot_curves

    plot_curves(os.path.join(out, run_state.HISTORY), os.path.join(out, "curves.png"))
    plot_confusion(metrics["val"]["confusion"], data.class_names, os.path.join(out, "confusion.png"))
    for name in ("best.keras", "last.keras", "metrics.json"):
        run_state.record(out, state, name)
    state["finished"] = True
    run_state.commit(out, state)
    return Run(out, metrics)


def _finished_run(out, quiet):
    """A resumed run that had already finished: its recorded metrics, nothing retrained."""
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    if not quiet:
        print(f"{out} already finished all {metrics['epochs']} epochs; nothing to resume")
    return Run(out, metrics)


def _final_batches(data):
    """Batches of the final metrics pass (validation and test splits)."""
    return sum(math.ceil(len(data.splits[split].images) / EVAL_BATCH) for split in ("val", "test")
               if split in data.splits)


def _plan_epochs(recipe, strategy, probe, average, batches, validation, data, steps, batch_size, elapsed_s, quiet):
    """The recipe with as many epochs as fit in ``train.time_budget_minutes``, and the plan.

    ``batches(image_size=None)`` makes the training pipeline; with ``train.low_resolution`` the
    probe also times epochs at that size, which progressive resizing makes cheaper.
    """
    if strategy == "multiworker":  # each worker would time itself and could plan a different run
        raise ValueError("train.time_budget_minutes needs strategy default or mirrored, not multiworker")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:  # the probe saves as the run will, but elsewhere
        os.makedirs(os.path.join(folder, "checkpoints"))
        callbacks = _epoch_callbacks(folder, _Monitor(batch_size, steps), average)
        cost = budget.measure_epoch_cost(probe, batches(), validation, callbacks)
        low_size, fraction = recipe.train.low_resolution, recipe.train.low_resolution_fraction
        if low_size:
            callbacks = _epoch_callbacks(folder, _Monitor(batch_size, steps), average)
            low_cost = budget.measure_epoch_cost(probe, batches(image_size=low_size), validation, callbacks)
    elapsed_s += time.perf_counter() - started
    eval_batches = math.ceil(len(data.splits["val"].images) / EVAL_BATCH)
    budget_s = 60.0 * recipe.train.time_budget_minutes
    within = functools.partial(budget.epochs_within, budget_s, elapsed_s, cost, steps, eval_batches,
                               _final_batches(data), low_resolution=(low_cost, fraction) if low_size else None)
    epochs = within()
    warmup = recipe.schedule.warmup_epochs
    if warmup and epochs <= warmup:
        raise ValueError(f"train.time_budget_minutes={recipe.train.time_budget_minutes:g} fits {epochs} "
                         f"epoch(s) here, not more than schedule.warmup_epochs={warmup:g}")
    epoch_s = cost.epoch_seconds(steps, eval_batches)
    plan = {"minutes": recipe.train.time_budget_minutes, "epochs": epochs, "planned_epoch_s": epoch_s,
            "train_step_s": cost.train_step_s, "eval_batch_s": cost.eval_batch_s,
            "epoch_overhead_s": cost.epoch_overhead_s, "probe_done_at_s": elapsed_s,
            "most_epochs": within(margin=0.0, pace=budget.FASTEST_PACE)}
    low = ""
    if low_size:
        plan.update(low_resolution_epochs=budget.low_resolution_epochs(epochs, fraction),
                    planned_low_resolution_epoch_s=low_cost.epoch_seconds(steps, eval_batches))
        low = (f" ({plan['planned_low_resolution_epoch_s']:.0f} s at {low_size} px, "
               f"{plan['low_resolution_epochs']} of them)")
    if not quiet:
        print(f"time budget {recipe.train.time_budget_minutes:g} min: one epoch takes about {epoch_s:.0f} s "
              f"here{low}, so {epochs} epochs", flush=True)
    return recipes.replace(recipe, train={"epochs": epochs}), plan
