"""The in-memory dataset every source returns, and the stratified train/val holdout."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: decoded images and their labels.

    Attributes:
        images: uint8 array of shape (N, H, W, 3), RGB.
        labels: int64 array of shape (N,), indices into the dataset's class names.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
                or images.shape[-1] != 3:
            raise ValueError(f"Split: images must be a uint8 array of shape (N, H, W, 3), "
                             f"got {_describe(images)}")
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.shape != images.shape[:1]:
            raise ValueError(f"Split: labels must be an int64 array of shape ({len(images)},), "
                             f"got {_describe(labels)}")

    def __len__(self):
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled image dataset held in memory.

    Attributes:
        name: where it came from ('synthetic', the folder path, the TFDS name).
        class_names: the class names; label i is class_names[i].
        splits: split name ('train', 'val', 'test') -> Split.
        skipped: files that could not be decoded and were skipped (``skip_bad``).
    """

    name: str
    class_names: tuple[str, ...]
    splits: dict
    skipped: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.class_names) < 2:
            raise ValueError(f"Dataset {self.name!r}: needs at least 2 classes, got {list(self.class_names)}")
        for split_name, split in self.splits.items():
            if len(split) and not 0 <= split.labels.min() <= split.labels.max() < len(self.class_names):
                raise ValueError(f"Dataset {self.name!r}: labels of split {split_name!r} must be in "
                                 f"0..{len(self.class_names) - 1}, got {split.labels.min()}..{split.labels.max()}")

    @property
    def num_classes(self):
        """The number of classes."""
        return len(self.class_names)


def stratified_split(labels, fraction, seed):
    """Indices that hold out ``fraction`` of every class, chosen at random but reproducibly.

    Each class with at least 2 samples puts at least one in the holdout and keeps at least
    one; a class with a single sample stays entirely on the kept side.

    Args:
        labels: 1-D integer array of class labels.
        fraction: the share of each class to hold out, in (0, 1).
        seed: random seed; the same labels, fraction and seed give the same indices.

    Returns:
        (kept_indices, held_out_indices): sorted int64 arrays that partition range(len(labels)).

    Raises:
        ValueError: ``fraction`` outside (0, 1), or ``labels`` not 1-D.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"stratified_split: fraction must be in (0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"stratified_split: labels must be 1-D, got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):  # sorted, so the random stream is consumed in a fixed order
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) >= 2:
            count = min(max(round(len(members) * fraction), 1), len(members) - 1)
            held_out.append(members[:count])
    held = np.sort(np.concatenate(held_out)) if held_out else np.empty(0, np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept.astype(np.int64), held.astype(np.int64)


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
