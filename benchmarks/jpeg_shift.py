"""How much a model's accuracy owes to the JPEG artefacts of the images it was trained on.

The shipped CIFAR-10 is JPEG quality 75 with 4:2:0 chroma; the official test images, and a phone's
camera frames, are not. This script re-encodes the val images once more (one more JPEG generation,
on a block grid shifted by ``--shift`` pixels, so it is not the near no-op of re-encoding on the
file's own grid) and prints each file's val accuracy on every variant, beside the mean absolute
pixel change:

    python benchmarks/jpeg_shift.py --data folder:/tmp/cifar10 FILE.tflite [FILE.tflite ...]

``--write DEST`` instead writes DEST/train/<class>/<file>, every image of the data folder's train
split one generation further (quality 75, 4:2:0, the grid shifted by a random 1-7 pixels per image,
seeded): a copy of the dataset one step lossier than the original, to train on and validate on
both (``folder:DEST`` against ``folder:SRC`` with the same ``--val-fraction``): what training on
JPEGs costs, or gains, on less compressed images, measured without a clean test split.

    python benchmarks/jpeg_shift.py --write /tmp/cifar10_gen2 --source /tmp/cifar10
"""

import argparse
import io
import os
import shutil

import numpy as np
from PIL import Image


def jpeg_generation(image, quality=75, subsampling=2, shift=0):
    """``image`` (H, W, 3 uint8) encoded and decoded once more, its 8x8 grid ``shift`` pixels off."""
    padded = np.pad(image, ((shift, 8 - shift), (shift, 8 - shift), (0, 0)), mode="edge") if shift else image
    buffer = io.BytesIO()
    Image.fromarray(padded).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    return decoded[shift:shift + image.shape[0], shift:shift + image.shape[1]] if shift else decoded


VARIANTS = {  # name: (quality, subsampling) of the extra generation
    "q75 4:2:0": (75, 2),
    "q90 4:2:0": (90, 2),
    "q95 4:4:4": (95, 0),
}


def probe(files, data, val_fraction, shift):
    from mobilecls.data import load
    from mobilecls.evaluation.evaluate import open_model

    loaded = load(data, val_fraction=val_fraction)
    val, names = loaded.splits["val"], loaded.class_names
    models = [open_model(f) for f in files]  # each file read once, as `mobilecls eval` reads it
    for model in models:
        if model.class_names not in (None, list(names)):
            raise SystemExit(f"{model.path}: its classes {model.class_names} are not the data's {list(names)}")
    images = np.asarray(val.images)
    batches = {"as stored": images}
    for name, (quality, subsampling) in VARIANTS.items():
        for grid in sorted({0, shift}):
            batches[f"{name}, grid +{grid}"] = np.stack([jpeg_generation(x, quality, subsampling, grid)
                                                         for x in images])
    print(f"{len(images)} val images of {data}; accuracy % per file: " + ", ".join(os.path.basename(f) for f in files))
    print(f"{'val images':24s} {'mean |change|':>13s}  " + "  ".join(f"{i + 1:>7d}" for i in range(len(files))))
    for name, batch in batches.items():
        change = np.abs(batch.astype(np.float32) - images).mean()
        accuracies = [100 * (model.predict(batch).argmax(1) == val.labels).mean() for model in models]
        print(f"{name:24s} {change:13.2f}  " + "  ".join(f"{a:7.2f}" for a in accuracies), flush=True)


def write_generation(source, destination, seed=0):
    """Every image of ``source``/train one JPEG generation further, into ``destination``/train."""
    if os.path.exists(destination):
        raise SystemExit(f"--write: {destination} exists; expected a new folder")
    if not os.path.isdir(os.path.join(source, "train")):
        raise SystemExit(f"--source: {source} has no train/ folder; expected a data folder (train/<class>/<image>)")
    rng = np.random.default_rng(seed)
    temporary = f"{destination}.partial"
    shutil.rmtree(temporary, ignore_errors=True)  # left by an interrupted run
    count = 0
    for folder, _, names in sorted(os.walk(os.path.join(source, "train"))):
        relative = os.path.relpath(folder, source)
        os.makedirs(os.path.join(temporary, relative), exist_ok=True)
        for name in sorted(names):
            image = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
            result = jpeg_generation(image, 75, 2, int(rng.integers(1, 8)))
            Image.fromarray(result).save(os.path.join(temporary, relative, os.path.splitext(name)[0] + ".png"))
            count += 1
    os.rename(temporary, destination)
    print(f"{count} images one JPEG generation further (q75 4:2:0, shifted grid) in {destination}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help=".tflite files to evaluate")
    parser.add_argument("--data", default="folder:/tmp/cifar10")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--shift", type=int, default=4, choices=range(1, 8), metavar="1-7",
                        help="grid offset of the shifted variants")
    parser.add_argument("--write", metavar="DEST", help="write the train split one generation further")
    parser.add_argument("--source", default="/tmp/cifar10", help="the data folder --write reads")
    args = parser.parse_args()
    if args.write:
        write_generation(args.source, args.write)
    elif not args.files:
        parser.error("give .tflite files to evaluate, or --write DEST")
    else:
        probe(args.files, args.data, args.val_fraction, args.shift)


if __name__ == "__main__":
    main()
