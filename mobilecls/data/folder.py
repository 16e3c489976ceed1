"""Image-folder datasets: one subfolder per class, optionally under train/ val/ test/.

    PATH/train/cat/0001.jpg        PATH/cat/0001.jpg
    PATH/train/dog/0002.png   or   PATH/dog/0002.png   (all of it is the 'train' split)
    PATH/val/cat/...

Images are decoded once with Pillow into uint8 RGB arrays. Big trees (CIFAR-10 as JPEGs has
50,000 files) are cached as one .npz of decoded arrays under $MOBILECLS_CACHE (default
~/.cache/mobilecls; 'off' disables it), keyed by a hash of every file's path, mtime and size,
so a second load reads one file instead of decoding them all.
"""

import concurrent.futures
import hashlib
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from mobilecls.data.dataset import Dataset, Split
from mobilecls.files import cache_folder, replacing

SPLIT_FOLDERS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_WORKERS = 2
_CHUNK = 256             # files per pool task: one future per file costs more than decoding 32x32
_CACHE_MIN_FILES = 1000  # below this, decoding is faster than hashing, writing and reading a cache
_CACHE_VERSION = 1       # bump when the cached arrays or their meaning change


def folder(path, skip_bad=False, resize=None, cache=True):
    """Load a class-per-subfolder image tree.

    Classes are the subfolder names in sorted order. If PATH holds ``train/``, ``val/`` and/or
    ``test/``, those are the splits (and must have the same class folders); otherwise every
    image is in the 'train' split. Files ending in .jpg, .jpeg or .png (any case) are images;
    other files and hidden files are ignored.

    Args:
        path: the dataset folder.
        skip_bad: skip images that cannot be decoded (listed in ``Dataset.skipped``) instead
            of failing.
        resize: if given, resize every image to ``resize`` x ``resize`` (bilinear, aspect ratio
            not kept), so the folder may hold images of different sizes.
        cache: use the decoded-array cache for trees of 1000 images or more.

    Returns:
        A Dataset named after ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a folder, a split has no class folders, a class folder has
            no images, the splits' class folders differ, an image cannot be decoded (unless
            ``skip_bad``), or a split's images differ in size (without ``resize``).
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"dataset folder {str(path)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"dataset folder {str(path)!r} is not a directory")
    if resize is not None and (not isinstance(resize, int) or resize < 1):
        raise ValueError(f"the image size (data.image_size) must be a positive integer or null, got {resize!r}")
    layout = {split: _classes(split_dir) for split, split_dir in _split_dirs(root).items()}
    class_names = _same_classes(root, layout)
    entries = [(split, label, file) for split, classes in layout.items()
               for label, name in enumerate(class_names) for file in classes[name]]

    cache_file = None
    if cache and len(entries) >= _CACHE_MIN_FILES:
        cache_file = _cache_file(root, entries, skip_bad, resize)
        if cache_file is not None:
            cached = _read_cache(cache_file, str(path))
            if cached is not None:
                return cached

    dataset = _decode(str(path), class_names, list(layout), entries, skip_bad, resize)
    if cache_file is not None:
        _write_cache(cache_file, dataset)
    return dataset


def _split_dirs(root):
    found = {split: root / split for split in SPLIT_FOLDERS if (root / split).is_dir()}
    return found or {"train": root}


def _visible(entry):
    # Hidden entries include macOS' "._name.jpg" resource forks, which look like images but are not.
    return not entry.name.startswith(".")


def _classes(split_dir):
    """class name -> sorted image files of that class folder."""
    class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir() and _visible(d))
    if not class_dirs:
        raise ValueError(f"no class folders in {str(split_dir)!r}; expected one subfolder of images per class")
    classes = {}
    for class_dir in class_dirs:
        files = sorted(f for f in class_dir.iterdir()
                       if f.suffix.lower() in IMAGE_EXTENSIONS and _visible(f) and f.is_file())
        if not files:
            raise ValueError(f"class folder {str(class_dir)!r} has no images "
                             f"(expected files ending in {', '.join(IMAGE_EXTENSIONS)})")
        classes[class_dir.name] = files
    return classes


def _same_classes(root, layout):
    """The sorted class names, after checking that every split has the same class folders."""
    splits = list(layout)
    reference = set(layout[splits[0]])
    differences = []
    for split in splits[1:]:
        names = set(layout[split])
        if missing := sorted(reference - names):
            differences.append(f"{split}/ lacks {missing}")
        if extra := sorted(names - reference):
            differences.append(f"{split}/ has {extra} that {splits[0]}/ lacks")
    if differences:
        raise ValueError(f"the splits of {str(root)!r} have different class folders: {'; '.join(differences)}")
    return tuple(sorted(reference))


def _decode_one(file, resize):
    """(array, None) for a decodable image, (None, reason) otherwise."""
    try:
        with Image.open(file) as image:
            image = image.convert("RGB")  # also forces the full decode, so truncation shows here
            if resize is not None:
                image = image.resize((resize, resize), Image.BILINEAR)
            return np.asarray(image, np.uint8), None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return None, str(error) or type(error).__name__


def _decode_chunk(files, resize):
    return [_decode_one(file, resize) for file in files]


def _decode(name, class_names, split_names, entries, skip_bad, resize):
    files = [file for _, _, file in entries]
    chunks = [files[start:start + _CHUNK] for start in range(0, len(files), _CHUNK)]
    # Threads, not processes: Pillow releases the GIL while decoding and reading files, and
    # threads need no pickling or re-importing of the caller's __main__ (which breaks spawn).
    pool = concurrent.futures.ThreadPoolExecutor(_WORKERS)
    try:
        results = [result for chunk in pool.map(_decode_chunk, chunks, [resize] * len(chunks)) for result in chunk]
    finally:
        pool.shutdown(cancel_futures=True)

    skipped = []
    per_split = {split: ([], [], []) for split in split_names}  # images, labels, files
    for (split, label, file), (image, error) in zip(entries, results, strict=True):
        if image is None:
            if not skip_bad:
                raise ValueError(f"cannot decode image {str(file)!r}: {error}")
            skipped.append(str(file))
            continue
        images, labels, kept_files = per_split[split]
        images.append(image)
        labels.append(label)
        kept_files.append(file)

    splits = {}
    for split, (images, labels, kept_files) in per_split.items():
        if not images:
            raise ValueError(f"split {split!r} of {name!r} has no decodable images")
        expected = images[0].shape
        for image, file in zip(images, kept_files, strict=True):
            if image.shape != expected:
                raise ValueError(f"image {str(file)!r} is {image.shape[1]}x{image.shape[0]} pixels but "
                                 f"{str(kept_files[0])!r} is {expected[1]}x{expected[0]}; all images of split "
                                 f"{split!r} must have the same size (or set data.image_size)")
        splits[split] = Split(images=np.stack(images), labels=np.array(labels, np.int64))
    return Dataset(name=name, class_names=class_names, splits=splits, skipped=tuple(skipped))


def _cache_file(root, entries, skip_bad, resize):
    """The cache file for this exact tree and these options, or None when caching is off."""
    directory = cache_folder()
    if directory is None:
        return None
    digest = hashlib.sha256(f"{_CACHE_VERSION}\n{root.resolve()}\n{skip_bad}\n{resize}\n".encode())
    for split, label, file in entries:
        stat = file.stat()
        digest.update(f"{split}\t{label}\t{file.relative_to(root)}\t{stat.st_mtime_ns}\t{stat.st_size}\n".encode())
    return directory / f"folder-{digest.hexdigest()[:32]}.npz"


def _read_cache(cache_file, name):
    try:
        with np.load(cache_file, allow_pickle=False) as arrays:
            splits = {str(split): Split(images=arrays[f"images_{split}"], labels=arrays[f"labels_{split}"])
                      for split in arrays["splits"]}
            return Dataset(name=name, class_names=tuple(str(c) for c in arrays["class_names"]),
                           splits=splits, skipped=tuple(str(s) for s in arrays["skipped"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        # A damaged cache is only a lost shortcut: decode the images again (and rewrite it).
        warnings.warn(f"ignoring unreadable dataset cache {cache_file}: {error}", stacklevel=3)
        return None


def _write_cache(cache_file, dataset):
    arrays = {"splits": np.array(list(dataset.splits)), "class_names": np.array(dataset.class_names),
              "skipped": np.array(dataset.skipped, dtype=str)}
    for split, data in dataset.splits.items():
        arrays[f"images_{split}"], arrays[f"labels_{split}"] = data.images, data.labels
    try:
        # Written beside it, then renamed: a concurrent or interrupted load never sees half a file.
        with replacing(str(cache_file)) as temporary:
            np.savez(temporary, **arrays)
    except OSError as error:
        warnings.warn(f"could not write dataset cache {cache_file}: {error}", stacklevel=3)
