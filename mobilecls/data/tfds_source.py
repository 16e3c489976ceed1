"""TensorFlow Datasets image-classification datasets, loaded into uint8 arrays.

The dataset is prepared (downloaded) by TFDS into ``data_dir`` the first time; datasets that
need a manual download (imagenet2012) read the archives from ``manual_dir``.
"""

import os

import numpy as np

from mobilecls.data.dataset import Dataset, Split

# TFDS split name -> mobilecls split name.
SPLITS = {"train": "train", "validation": "val", "test": "test"}
_BATCH = 1024  # examples per tf.data batch: turning examples into numpy one by one is ~50x slower


def tfds_dataset(name, data_dir=None, split_names=None, resize=None, manual_dir=None):
    """Load a TFDS image-classification dataset (e.g. 'cifar10', 'imagenette', 'imagenet2012').

    Args:
        name: the TFDS name, optionally with config and version ('imagenette/160px-v2').
        data_dir: the TFDS data directory (TFDS' default, ~/tensorflow_datasets, if None).
        split_names: TFDS splits to load, among 'train', 'validation' (returned as 'val') and
            'test'. None loads each of them that the dataset has; when TFDS does not know the
            dataset's splits (its metadata is unavailable, as under ``tfds.testing.mock_data``),
            'train' and 'test', the layout of most TFDS image datasets.
        resize: if given, resize every image to ``resize`` x ``resize`` (bilinear, antialiased,
            aspect ratio not kept). Required for datasets whose images vary in size, such as
            imagenette and imagenet2012.
        manual_dir: folder holding the archives of a manual-download dataset.

    Returns:
        A Dataset named ``name`` with uint8 RGB images (grayscale is repeated to 3 channels).

    Raises:
        ValueError: ``name`` is not a TFDS dataset or has no (image, label) supervised keys, an
            unknown split is asked for, its images vary in size and ``resize`` is None, or a bad
            ``resize``.
    """
    import tensorflow_datasets as tfds

    from mobilecls._tf import tf

    if resize is not None and (not isinstance(resize, int) or resize < 1):
        raise ValueError(f"the image size (data.image_size) must be a positive integer or null, got {resize!r}")
    if split_names is not None:
        unknown = [split for split in split_names if split not in SPLITS]
        if unknown:
            raise ValueError(f"unknown TFDS split(s) {unknown}; expected some of: {', '.join(SPLITS)}")
    data_dir = os.path.expanduser(data_dir) if data_dir else None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        # TFDS' own message lists every dataset it knows: hundreds of lines.
        raise ValueError(f"{name!r} is not a TFDS dataset; see https://www.tensorflow.org/datasets/catalog "
                         f"or tfds.list_builders()") from None

    info = builder.info
    if not info.supervised_keys or len(info.supervised_keys) != 2:
        raise ValueError(f"TFDS dataset {name!r} has no (image, label) supervised keys; got {info.supervised_keys!r}")
    image_key, label_key = info.supervised_keys
    height, width, channels = info.features[image_key].shape
    if resize is None and (height is None or width is None):
        raise ValueError(f"the images of TFDS dataset {name!r} vary in size; set data.image_size "
                         "(e.g. --set data.image_size=224)")
    if channels not in (1, 3):
        raise ValueError(f"TFDS dataset {name!r} has {channels}-channel images; expected 1 or 3")
    class_names = tuple(info.features[label_key].names)

    config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir)) if manual_dir else None
    builder.download_and_prepare(download_config=config)
    available = builder.info.splits
    if split_names is None:
        split_names = [split for split in SPLITS if split in available] or ["train", "test"]
    elif available:
        missing = [split for split in split_names if split not in available]
        if missing:
            raise ValueError(f"TFDS dataset {name!r} has no split(s) {missing}; it has: {', '.join(available)}")

    def square(image, label):
        image = tf.image.resize(image, (resize, resize), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    splits = {}
    for split in split_names:
        data = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        if resize is not None:
            data = data.map(square, num_parallel_calls=tf.data.AUTOTUNE)  # keeps the order
        batches = list(tfds.as_numpy(data.batch(_BATCH).prefetch(1)))
        size = (resize, resize) if resize is not None else (height, width)
        images = (np.concatenate([images for images, _ in batches]) if batches
                  else np.empty((0, *size, channels), np.uint8))
        labels = np.concatenate([labels for _, labels in batches]) if batches else np.empty(0)
        if channels == 1:
            images = np.repeat(images, 3, axis=-1)
        splits[SPLITS[split]] = Split(images=images.astype(np.uint8, copy=False), labels=labels.astype(np.int64))
    return Dataset(name=name, class_names=class_names, splits=splits)
