"""What the client-ready edits cost: a file as shipped against it upgraded, side by side.

For each .tflite file (default: the int8 files in tflite_models/cifar10/*/, before they are
upgraded), three variants are made in a temporary folder with ``mobilecls.export.packaging.upgrade_file``:
  original  the file as it is (logits, int8 I/O),
  uint8     uint8 I/O, no softmax (the I/O edit alone),
  upgraded  uint8 I/O and the int8 softmax (what `mobilecls upgrade` writes).
Each is evaluated on the data's val split (accuracy, top-1 agreement with the original) and
benchmarked interleaved on 1 thread (p50), and the XNNPACK partitions are counted. Ratios to the
original are printed. The issue's goal: accuracy within 0.1 point, p50 within 5 %.

    python benchmarks/softmax_cost.py --data folder:/tmp/cifar10 --runs 300 [FILE.tflite ...]
Smoke check: python benchmarks/softmax_cost.py --data synthetic --runs 5 --limit 50 FILE.tflite
"""

import argparse
import glob
import os
import shutil
import tempfile

import numpy as np

DEFAULT_FILES = "tflite_models/cifar10/*/*int8*.tflite"


def variants(path, folder):
    """{name: path} of the three variants of ``path`` (see the module docstring)."""
    from mobilecls.export.packaging import upgrade_file
    from mobilecls.export.tflite_edit import output_op

    with open(path, "rb") as handle:
        if output_op(handle.read()) == "SOFTMAX":
            raise SystemExit(f"{path} already ends in a softmax: run this before `mobilecls upgrade`")
    stem = os.path.splitext(os.path.basename(path))[0]
    made = {"original": os.path.join(folder, f"{stem}_original.tflite")}
    shutil.copyfile(path, made["original"])
    for name, softmax in (("uint8", False), ("upgraded", True)):
        made[name] = os.path.join(folder, f"{stem}_{name}.tflite")
        upgrade_file(path, out=made[name], softmax=softmax)
    return made


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help=f"default: {DEFAULT_FILES}")
    parser.add_argument("--data", default="folder:/tmp/cifar10", help="dataset spec with a val split")
    parser.add_argument("--runs", type=int, default=300, help="timed invokes per variant")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N val images")
    args = parser.parse_args()

    from mobilecls.bench.host import bench_host
    from mobilecls.data import load
    from mobilecls.export.convert import inspect_tflite
    from mobilecls.runtime import predict_tflite

    files = args.files or sorted(glob.glob(DEFAULT_FILES))
    val = load(args.data).splits["val"]
    images, labels = val.images[:args.limit], val.labels[:args.limit]
    print(f"{len(images)} val images of {args.data}; p50 over {args.runs} interleaved invokes at 1 thread")
    print(f"{'file':<44} {'variant':<9} {'accuracy':>8} {'top-1 = orig':>12} {'p50 ms':>8} {'p50 ratio':>9} "
          f"{'partitions':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for path in files:
            made = variants(path, folder)
            latency = {os.path.basename(row.model): row.p50_ms
                       for row in bench_host(list(made.values()), threads=1, runs=args.runs, warmup=20)}
            original_scores = None
            for name, variant in made.items():
                with open(variant, "rb") as handle:
                    content = handle.read()
                scores = predict_tflite(content, images)
                original_scores = scores if original_scores is None else original_scores
                p50 = latency[os.path.basename(variant)]
                p50_original = latency[os.path.basename(made["original"])]
                print(f"{os.path.relpath(path):<44.44} {name:<9} {np.mean(scores.argmax(1) == labels):>8.4f} "
                      f"{np.mean(scores.argmax(1) == original_scores.argmax(1)):>12.4f} {p50:>8.4f} "
                      f"{p50 / p50_original:>9.3f} {inspect_tflite(content).partitions:>10}")


if __name__ == "__main__":
    main()
