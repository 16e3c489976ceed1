"""One entry point for every dataset source: parse a spec string, load, hold out a val split."""

import dataclasses
import re

from mobilecls.data.dataset import Split, stratified_split

ACCEPTED_FORMS = ("'synthetic', 'folder:PATH', 'tfds:NAME', or a TFDS name such as "
                  "'cifar10', 'imagenette', 'imagenet2012'")
# A TFDS name, with optional config and version: 'cifar10', 'imagenette/160px-v2', 'mnist:3.*.*'.
_TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*(/[A-Za-z0-9_.\-]+)?(:[0-9*]+\.[0-9*]+\.[0-9*]+)?")


def parse_spec(spec):
    """Split a dataset spec into (kind, argument).

    'synthetic' -> ('synthetic', None); 'folder:PATH' -> ('folder', PATH);
    'tfds:NAME' -> ('tfds', NAME); a bare TFDS name such as 'cifar10' -> ('tfds', 'cifar10').

    Raises:
        ValueError: an empty or malformed spec (the message lists the accepted forms).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset spec must be a non-empty string, got {spec!r}; expected {ACCEPTED_FORMS}")
    spec = spec.strip()
    if spec == "synthetic":
        return "synthetic", None
    kind, colon, argument = spec.partition(":")
    if colon and kind == "folder":
        if not argument:
            raise ValueError(f"dataset spec {spec!r} has no folder path; expected {ACCEPTED_FORMS}")
        return "folder", argument
    if colon and kind == "tfds":
        if not _TFDS_NAME.fullmatch(argument):
            raise ValueError(f"dataset spec {spec!r}: {argument!r} is not a TFDS dataset name; "
                             f"expected {ACCEPTED_FORMS}")
        return "tfds", argument
    if spec in ("folder", "tfds"):
        raise ValueError(f"dataset spec {spec!r} needs an argument ({spec}:...); expected {ACCEPTED_FORMS}")
    if _TFDS_NAME.fullmatch(spec):
        return "tfds", spec
    hint = f" (for a folder, write 'folder:{spec}')" if not colon and ("/" in spec or "\\" in spec) else ""
    raise ValueError(f"malformed dataset spec {spec!r}{hint}; expected {ACCEPTED_FORMS}")


def load(spec, data_dir=None, val_fraction=0.1, seed=0, skip_bad=False, image_size=None):
    """Load the dataset named by ``spec``, always with 'train' and 'val' splits.

    When the source has no 'val' split, ``val_fraction`` of every class of 'train' is held out
    as 'val' (see ``stratified_split``), the same way for the same ``seed``.

    Args:
        spec: 'synthetic', 'folder:PATH', 'tfds:NAME' or a bare TFDS name (see ``parse_spec``).
        data_dir: the TFDS data directory (tfds sources only).
        val_fraction: share of each class held out of 'train' as 'val', in (0, 1).
        seed: seed of the holdout. The synthetic data itself is always the same (seed 0), so
            that runs with different seeds train on one dataset.
        skip_bad: folder sources: skip undecodable images instead of failing.
        image_size: square image side. Synthetic images are drawn at this size (default 32);
            folder and TFDS images are resized to it (required for TFDS datasets whose images
            vary in size, such as imagenette).

    Returns:
        The Dataset.

    Raises:
        ValueError: a malformed spec, a bad ``val_fraction``, a source without a 'train' split,
            or any error of the source.
        FileNotFoundError: a folder source's path does not exist.
    """
    kind, argument = parse_spec(spec)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    # Sources are imported here, not at the top, so importing mobilecls.data stays cheap.
    if kind == "synthetic":
        from mobilecls.data.synthetic import synthetic

        dataset = synthetic(size=32 if image_size is None else image_size)
    elif kind == "folder":
        from mobilecls.data.folder import folder

        dataset = folder(argument, skip_bad=skip_bad, resize=image_size)
    else:
        from mobilecls.data.tfds_source import tfds_dataset

        dataset = tfds_dataset(argument, data_dir=data_dir, resize=image_size)

    if "train" not in dataset.splits:
        raise ValueError(f"dataset {spec!r} has no 'train' split, only: {', '.join(dataset.splits)}")
    if "val" in dataset.splits:
        return dataset
    train = dataset.splits["train"]
    kept, held_out = stratified_split(train.labels, val_fraction, seed)
    splits = dict(dataset.splits)
    splits["train"] = Split(images=train.images[kept], labels=train.labels[kept])
    splits["val"] = Split(images=train.images[held_out], labels=train.labels[held_out])
    return dataclasses.replace(dataset, splits=splits)
