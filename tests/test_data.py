import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mobilecls.data import Dataset, load, parse_spec
from mobilecls.data import folder as folder_module
from mobilecls.data.dataset import Split, stratified_split
from mobilecls.data.folder import folder
from mobilecls.data.synthetic import CLASS_NAMES, synthetic

# One pure colour per class, so a decoded image tells which class folder it came from.
COLOURS = {"ant": (255, 0, 0), "bee": (0, 255, 0), "cat": (0, 0, 255)}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep every folder cache of these tests out of ~/.cache."""
    monkeypatch.setenv("MOBILECLS_CACHE", str(tmp_path / "cache"))


def make_images(directory, classes=COLOURS, count=3, size=(8, 8), extensions=(".png", ".PNG", ".jpg")):
    """class/NNN.ext images of the class colour; returns the directory."""
    for name in classes:
        (directory / name).mkdir(parents=True)
        for index in range(count):
            image = Image.new("RGB", size, COLOURS.get(name, (128, 128, 128)))
            image.save(directory / name / f"{index:03d}{extensions[index % len(extensions)]}")
    return directory


def class_of(images):
    """The class index encoded by each image's dominant channel (red=ant, green=bee, blue=cat)."""
    return images.reshape(len(images), -1, 3).mean(1).argmax(1)


# --- synthetic ---------------------------------------------------------------------------------

def test_synthetic_is_deterministic_per_seed():
    first, again, other = synthetic(60, 20, seed=1), synthetic(60, 20, seed=1), synthetic(60, 20, seed=2)
    for split in ("train", "test"):
        np.testing.assert_array_equal(first.splits[split].images, again.splits[split].images)
        np.testing.assert_array_equal(first.splits[split].labels, again.splits[split].labels)
        assert not np.array_equal(first.splits[split].images, other.splits[split].images)
    # The test split comes from its own stream: it does not depend on the train size.
    np.testing.assert_array_equal(synthetic(10, 20, seed=1).splits["test"].images, first.splits["test"].images)


def test_synthetic_shapes_classes_and_balance():
    dataset = synthetic(200, 50)
    assert dataset.name == "synthetic" and dataset.class_names == CLASS_NAMES
    assert list(CLASS_NAMES) == sorted(CLASS_NAMES) and dataset.num_classes == 10
    train, test = dataset.splits["train"], dataset.splits["test"]
    assert set(dataset.splits) == {"train", "test"}
    assert train.images.shape == (200, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.shape == (200,) and train.labels.dtype == np.int64
    assert test.images.shape == (50, 32, 32, 3)
    assert np.bincount(train.labels, minlength=10).tolist() == [20] * 10
    assert np.bincount(test.labels, minlength=10).tolist() == [5] * 10
    assert train.images.std() > 40  # real pictures, not a constant
    assert synthetic(10, 0, size=48).splits["train"].images.shape == (10, 48, 48, 3)


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_train must be an integer >= 0, got -1"):
        synthetic(-1)
    with pytest.raises(ValueError, match="size must be an integer >= 16, got 8"):
        synthetic(10, 10, size=8)


def test_synthetic_is_not_linearly_separable_but_not_noise():
    # Ridge least squares on raw pixels, one-hot targets, solved in the dual (2000 x 2000).
    dataset = synthetic(2000, 1000, seed=0)
    train, test = dataset.splits["train"], dataset.splits["test"]
    x = train.images.reshape(len(train), -1) / 255.0
    x_test = test.images.reshape(len(test), -1) / 255.0
    mean = x.mean(0)
    x, x_test = x - mean, x_test - mean
    targets = np.eye(10)[train.labels]
    targets -= targets.mean(0)
    weights = x.T @ np.linalg.solve(x @ x.T + 1000.0 * np.eye(len(x)), targets)
    accuracy = float(((x_test @ weights).argmax(1) == test.labels).mean())
    assert 0.10 < accuracy < 0.45, accuracy


# --- stratified split --------------------------------------------------------------------------

def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(5), [100, 50, 20, 2, 1])
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert np.bincount(labels[held], minlength=5).tolist() == [20, 10, 4, 1, 0]
    assert np.bincount(labels[kept], minlength=5).tolist() == [80, 40, 16, 1, 1]
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(labels)))
    again = stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(held, again[1])
    np.testing.assert_array_equal(kept, again[0])
    assert not np.array_equal(held, stratified_split(labels, 0.2, seed=4)[1])


def test_stratified_split_holds_out_one_of_each_small_class():
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    kept, held = stratified_split(labels, 0.01, seed=0)
    assert sorted(labels[held].tolist()) == [0, 1, 2]
    assert sorted(labels[kept].tolist()) == [0, 1, 1, 2]


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_stratified_split_rejects_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        stratified_split(np.arange(10) % 2, fraction, seed=0)


def test_split_and_dataset_validate_arrays():
    with pytest.raises(ValueError, match="images must be a uint8 array"):
        Split(images=np.zeros((2, 4, 4, 3), np.float32), labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="labels must be an int64 array of shape"):
        Split(images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.zeros(3, np.int64))
    split = Split(images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, 2]))
    with pytest.raises(ValueError, match="labels of split 'train' must be in 0..1"):
        Dataset(name="x", class_names=("a", "b"), splits={"train": split})


# --- folder ------------------------------------------------------------------------------------

def test_folder_loads_sorted_classes_and_right_labels(tmp_path):
    root = make_images(tmp_path / "data", classes=["cat", "ant", "bee"], count=4)
    (root / "ant" / "notes.txt").write_text("not an image, ignored")
    dataset = folder(root)
    assert dataset.class_names == ("ant", "bee", "cat")
    assert set(dataset.splits) == {"train"} and dataset.skipped == ()
    train = dataset.splits["train"]
    assert train.images.shape == (12, 8, 8, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64
    np.testing.assert_array_equal(class_of(train.images), train.labels)
    assert np.bincount(train.labels).tolist() == [4, 4, 4]


def test_folder_uses_train_val_test_subfolders(tmp_path):
    root = tmp_path / "data"
    make_images(root / "train", count=4)
    make_images(root / "val", count=2, extensions=(".jpeg", ".JPG"))
    make_images(root / "test", count=1)
    dataset = load(f"folder:{root}")
    assert set(dataset.splits) == {"train", "val", "test"}
    assert [len(dataset.splits[s]) for s in ("train", "val", "test")] == [12, 6, 3]  # val not held out
    for split in dataset.splits.values():
        np.testing.assert_array_equal(class_of(split.images), split.labels)


def test_folder_names_a_corrupt_image_and_skip_bad_skips_it(tmp_path):
    root = make_images(tmp_path / "data", count=2)
    bad = root / "bee" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match=r"cannot decode image .*broken\.png.*: "):
        folder(root)
    dataset = folder(root, skip_bad=True)
    assert dataset.skipped == (str(bad),)
    assert len(dataset.splits["train"]) == 6
    np.testing.assert_array_equal(class_of(dataset.splits["train"].images), dataset.splits["train"].labels)


def test_folder_rejects_an_empty_class_folder(tmp_path):
    root = make_images(tmp_path / "data", count=2)
    (root / "dog").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*dog' has no images"):
        folder(root)


def test_folder_rejects_different_classes_across_splits(tmp_path):
    root = tmp_path / "data"
    make_images(root / "train", classes=["ant", "bee"])
    make_images(root / "val", classes=["ant", "cat"])
    with pytest.raises(ValueError, match=r"different class folders: val/ lacks \['bee'\]; val/ has \['cat'\]"):
        folder(root)


def test_folder_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load(f"folder:{tmp_path / 'nowhere'}")


def test_folder_rejects_mixed_sizes_unless_resized(tmp_path):
    root = make_images(tmp_path / "data", count=2)
    Image.new("RGB", (10, 8), COLOURS["cat"]).save(root / "cat" / "wide.png")
    with pytest.raises(ValueError, match=r"image .*wide\.png' is 10x8 pixels but .*000\.png' is 8x8"):
        folder(root)
    resized = folder(root, resize=6).splits["train"]
    assert resized.images.shape == (7, 6, 6, 3)
    np.testing.assert_array_equal(class_of(resized.images), resized.labels)


def test_folder_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_module, "_CACHE_MIN_FILES", 1)
    root = make_images(tmp_path / "data", count=2)
    first = folder(root)
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npz"  # no temporary file left behind

    def no_decoding(*args):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(folder_module, "_decode", no_decoding)
    second = folder(root)
    assert second.class_names == first.class_names
    np.testing.assert_array_equal(second.splits["train"].images, first.splits["train"].images)
    np.testing.assert_array_equal(second.splits["train"].labels, first.splits["train"].labels)

    Image.new("RGB", (8, 8), COLOURS["ant"]).save(root / "ant" / "new.png")  # the tree changed
    with pytest.raises(AssertionError, match="decoded although"):
        folder(root)


# --- specs and load ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("synthetic", ("synthetic", None)),
    ("folder:/data/cifar10", ("folder", "/data/cifar10")),
    ("folder:relative/dir", ("folder", "relative/dir")),
    ("tfds:cifar10", ("tfds", "cifar10")),
    ("tfds:imagenette/160px-v2", ("tfds", "imagenette/160px-v2")),
    ("cifar10", ("tfds", "cifar10")),
    ("imagenette", ("tfds", "imagenette")),
    ("imagenet2012", ("tfds", "imagenet2012")),
])
def test_parse_spec_forms(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("", "non-empty string"),
    ("   ", "non-empty string"),
    (None, "non-empty string"),
    ("folder:", "no folder path"),
    ("folder", "needs an argument"),
    ("tfds:", "is not a TFDS dataset name"),
    ("tfds:Not A Name", "is not a TFDS dataset name"),
    ("synthetic:3", "malformed"),
    ("nonsense:thing", "malformed"),
    ("./images", "write 'folder:./images'"),
])
def test_parse_spec_errors_list_the_accepted_forms(spec, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_spec(spec)
    assert "'folder:PATH'" in str(error.value) and "'cifar10'" in str(error.value)


def test_load_synthetic_holds_out_a_stratified_val_split(library_synthetic):  # the library's sizes
    dataset = load("synthetic", val_fraction=0.2, seed=1)
    assert set(dataset.splits) == {"train", "val", "test"}
    train, val = dataset.splits["train"], dataset.splits["val"]
    assert (len(train), len(val), len(dataset.splits["test"])) == (4000, 1000, 1000)
    assert np.bincount(val.labels).tolist() == [100] * 10
    again = load("synthetic", val_fraction=0.2, seed=1)
    np.testing.assert_array_equal(again.splits["val"].images, val.images)
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\), got 0"):
        load("synthetic", val_fraction=0)


def test_load_folder_without_val_holds_one_out(tmp_path):
    root = make_images(tmp_path / "data", count=5)
    dataset = load(f"folder:{root}", val_fraction=0.2)
    assert np.bincount(dataset.splits["val"].labels).tolist() == [1, 1, 1]
    assert np.bincount(dataset.splits["train"].labels).tolist() == [4, 4, 4]


# --- TFDS (mocked: there is no network) --------------------------------------------------------

def test_tfds_cifar10_through_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    from mobilecls.data.tfds_source import tfds_dataset

    with tfds.testing.mock_data(num_examples=40):
        dataset = load("cifar10", val_fraction=0.25)
        assert dataset.name == "cifar10" and len(dataset.class_names) == 10
        assert set(dataset.splits) == {"train", "val", "test"}
        train, val, test = (dataset.splits[s] for s in ("train", "val", "test"))
        for split in (train, val, test):
            assert split.images.dtype == np.uint8 and split.images.shape[1:] == (32, 32, 3)
            assert split.labels.dtype == np.int64 and split.labels.max() < 10
        assert len(train) + len(val) == 40 and len(test) == 40 and len(val) >= 5
        assert set(val.labels) <= set(train.labels)

        small = tfds_dataset("cifar10", split_names=["test"], resize=16)
        assert set(small.splits) == {"test"} and small.splits["test"].images.shape == (40, 16, 16, 3)
        with pytest.raises(ValueError, match="vary in size; set data.image_size"):
            tfds_dataset("imagenette")
        with pytest.raises(ValueError, match="unknown TFDS split"):
            tfds_dataset("cifar10", split_names=["valid"])
    with pytest.raises(ValueError, match="'no_such_dataset_xyz' is not a TFDS dataset"):
        load("tfds:no_such_dataset_xyz")


def test_importing_mobilecls_data_does_not_import_tensorflow():
    code = "import sys, mobilecls.data; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
