"""Distillation targets computed once (train.teacher_runs: once): the teachers' class distributions
on every training image and its mirror image, mixed into the targets of every batch."""

import json
import shutil

import numpy as np
import pytest
from tflite_files import save_run
from tiny import TINY

from mobilecls import recipes
from mobilecls.data.pipeline import training_batches
from mobilecls.recipes import AugmentSection
from mobilecls.training.teacher_targets import teacher_targets


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    from mobilecls.data import load

    return load("synthetic", seed=TINY.train.seed)


@pytest.fixture(scope="module")
def images(data):
    return data.splits["train"].images[:48]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A linear classifier of the pixels whose classes are far apart (an untrained CNN gives ~0.1 to
    each), saved with its classes."""
    from mobilecls._tf import keras

    inputs = keras.Input((32, 32, 3))
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(10, kernel_initializer=keras.initializers.RandomNormal(stddev=0.2, seed=3))
    return str(save_run(tmp_path_factory.mktemp("teacher"), keras.Model(inputs, dense(flat))))


@pytest.fixture(scope="module")
def logits(teacher, images):
    """The teacher's logits on ``images`` and on their mirror images."""
    from mobilecls._tf import keras

    model = keras.models.load_model(teacher, compile=False)
    return [model.predict(view.astype(np.float32), verbose=0) for view in (images, images[:, :, ::-1])]


def test_a_keras_teachers_targets_are_its_softmax_averaged_over_the_image_and_its_mirror(teacher, data, images,
                                                                                         logits):
    plain, mirrored = (_softmax(view) for view in logits)
    targets = teacher_targets([teacher], images, data.class_names)
    assert targets.shape == (48, 10) and targets.dtype == np.float32
    np.testing.assert_allclose(targets, (plain + mirrored) / 2, atol=1e-5)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    alone = teacher_targets([teacher], images, data.class_names, mirror=False)
    np.testing.assert_allclose(alone, plain, atol=1e-5)
    assert np.abs(alone - targets).max() > 1e-3  # the mirror images are other inputs to the model


def test_a_temperature_divides_the_teachers_logits(teacher, data, images, logits):
    targets = teacher_targets([teacher], images, data.class_names, mirror=False, temperature=4.0)
    np.testing.assert_allclose(targets, _softmax(logits[0] / 4.0), atol=1e-5)
    assert targets.max(axis=1).mean() < _softmax(logits[0]).max(axis=1).mean()
    with pytest.raises(ValueError, match="temperature must be > 0"):
        teacher_targets([teacher], images, data.class_names, temperature=0)


def test_a_tflite_teacher_gives_its_keras_models_targets_and_teachers_average(teacher, tiny_run, data, images,
                                                                             tmp_path):
    from mobilecls.export.quantize import quantize

    exported = str(tmp_path / "teacher_fp32.tflite")
    quantize(teacher, "fp32", exported)  # its output is a softmax
    keras_targets = teacher_targets([teacher], images, data.class_names)
    tflite_targets = teacher_targets([exported], images, data.class_names)
    np.testing.assert_allclose(tflite_targets, keras_targets, atol=1e-4)
    other_targets = teacher_targets([tiny_run.model_path], images, data.class_names)
    assert np.abs(other_targets - keras_targets).max() > 0.1
    both = teacher_targets([exported, tiny_run.model_path], images, data.class_names)
    np.testing.assert_allclose(both, (tflite_targets + other_targets) / 2, atol=1e-5)


def test_a_teacher_of_other_classes_or_image_size_is_refused(tiny_run, data, images, tmp_path):
    from mobilecls.models import build_model

    renamed = tmp_path / "renamed"
    renamed.mkdir()
    shutil.copy(tiny_run.model_path, renamed / "best.keras")
    (renamed / "classes.json").write_text(json.dumps(list(reversed(data.class_names))))
    with pytest.raises(ValueError, match=r"renamed/best.keras has the classes \['vertical_stripes'"):
        teacher_targets([str(renamed / "best.keras")], images, data.class_names)
    five = tmp_path / "five.keras"
    build_model("shufflenet_v2", width=0.5, input_size=32, num_classes=5).save(five)
    with pytest.raises(ValueError, match="five.keras gives 5 class scores; the data has 10 classes"):
        teacher_targets([str(five)], images, data.class_names)
    large = tmp_path / "large.keras"
    build_model("shufflenet_v2", width=0.5, input_size=64, num_classes=10).save(large)
    with pytest.raises(ValueError, match=r"large.keras takes \(64, 64, 3\) images; the training images are \(32"):
        teacher_targets([str(large)], images, data.class_names)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        teacher_targets([str(tmp_path / "missing.tflite")], images, data.class_names)


def test_every_batch_mixes_each_images_own_soft_target_into_its_smoothed_label():
    count, classes, weight, smoothing = 24, 4, 0.3, 0.1
    images = np.zeros((count, 8, 8, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(count)  # each image carries its index
    labels = np.arange(count) % classes
    soft = np.random.default_rng(0).dirichlet(np.ones(classes), count).astype(np.float32)
    batches = training_batches(images, labels, 8, AugmentSection(crop_padding=0, flip=False), classes,
                               label_smoothing=smoothing, seed=1, soft_targets=soft, distill=weight)
    seen = []
    for pixels, targets in batches.take(3):  # one epoch
        index = pixels.numpy()[:, 0, 0, 0].astype(int)
        label = np.eye(classes)[labels[index]] * (1 - smoothing) + smoothing / classes
        np.testing.assert_allclose(targets.numpy(), (1 - weight) * label + weight * soft[index], atol=1e-6)
        seen.extend(index)
    assert sorted(seen) == list(range(count))


def test_fit_distils_from_a_tflite_teacher_computed_once(tiny_run, tiny_fp32, tmp_path, monkeypatch):
    from mobilecls.data import load
    from mobilecls.training import train

    passed, original = [], train.training_batches

    def spy(*arguments, **keywords):
        passed.append((keywords["soft_targets"], keywords["distill"]))
        return original(*arguments, **keywords)

    monkeypatch.setattr(train, "training_batches", spy)
    recipe = recipes.replace(TINY, train={"teacher": [tiny_fp32], "distill": 0.5, "teacher_runs": "once",
                                          "teacher_temperature": 2.0})
    run = train.fit(recipe, str(tmp_path / "run"), quiet=True)
    (soft, weight), = passed  # one training pipeline (no budget probe)
    data = load(recipe.data.spec, val_fraction=recipe.data.val_fraction)  # as fit loads it
    expected = teacher_targets([tiny_fp32], data.splits["train"].images, data.class_names, temperature=2.0)
    assert weight == 0.5 and soft.shape == expected.shape
    np.testing.assert_allclose(soft, expected, atol=1e-6)
    saved = recipes.load(f"{run.path}/recipe.yaml").train
    assert (saved.teacher, saved.teacher_runs, saved.teacher_temperature) == ([tiny_fp32], "once", 2.0)
    assert run.metrics["val"]["accuracy"] > 0


def test_recipes_say_which_teachers_run_on_every_batch():
    def resolve(*assignments):
        return recipes.override(TINY, ["train.distill=0.5", *assignments])

    assert recipes.teacher_files(resolve("train.teacher=[a.tflite, b.keras]", "train.teacher_runs=once").train) \
        == ["a.tflite", "b.keras"]
    assert recipes.teacher_files(TINY.train) == []
    for assignments, message in [
            (["train.teacher=a.tflite"], r"a .tflite teacher \(a.tflite\) runs only with train.teacher_runs: once"),
            (["train.teacher=[a.keras, b.keras]"], "2 teachers run only with train.teacher_runs: once"),
            (["train.teacher=a.keras", "train.teacher_temperature=2"], "teacher_temperature applies with"),
            (["train.teacher=a.keras", "train.teacher_runs=once", "train.teacher_temperature=0"],
             "teacher_temperature must be > 0"),
            (["train.teacher=[]"], "train.teacher: expected str or a list of str or null, got"),
            (["train.teacher=a.keras", "train.teacher_runs=always"], "expected one of every_batch, once")]:
        with pytest.raises(ValueError, match=message):
            resolve(*assignments)
