"""Does XNNPACK's sparse inference make a pruned model faster here? Side by side in one run.

Builds MobileNetV2 at 224x224 with explicit_padding (the layout XNNPACK's sparse subgraph and
tfmot's PruneForLatencyOnXNNPack need), prunes its 1x1 convolutions with that policy to each
sparsity (magnitude masks; latency does not depend on training), and benchmarks, interleaved
on one LiteRT interpreter thread with XNNPACK:
  - the unpruned model (dense fp32 file),
  - each pruned model stored dense (plain fp32 conversion),
  - each pruned model stored sparse (converter EXPERIMENTAL_SPARSITY: DENSIFY ops),
and prints p50 latencies and the ratios sparse / dense.

    python benchmarks/sparse_inference.py [--width 1.0] [--sparsity 0.75,0.9] [--runs 50]
"""

import argparse
import os
import tempfile

import numpy as np

from mobilecls._tf import keras
from mobilecls.bench.host import bench_host
from mobilecls.export.convert import inspect_tflite, to_tflite
from mobilecls.models import build_model
from mobilecls.optimize import prune


def pruned_copy(model, sparsity):
    """``model`` with its 1x1 convolutions pruned to ``sparsity`` by the XNNPACK policy."""
    wrapped = prune.prune(model, sparsity, "constant", frequency=1, policy="xnnpack")
    wrapped.compile(keras.optimizers.SGD(0.0), keras.losses.CategoricalCrossentropy(from_logits=True))
    images = np.zeros((1, *model.input_shape[1:]), np.float32)
    labels = np.eye(model.output_shape[-1], dtype=np.float32)[:1]
    wrapped.fit(images, labels, epochs=1, verbose=0, callbacks=[prune.update_step_callback()])  # masks at step 0
    return prune.strip(wrapped)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--sparsity", default="0.75,0.9")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    model = build_model("mobilenet_v2", width=args.width, input_size=224, num_classes=1000, explicit_padding=True)
    with tempfile.TemporaryDirectory() as folder:
        files = {"unpruned, dense": to_tflite(model, "fp32")}
        for sparsity in (float(part) for part in args.sparsity.split(",")):
            pruned = pruned_copy(model, sparsity)
            label = f"{prune.pointwise_sparsity(pruned):.0%} zeros in 1x1 convs"
            files[f"{label}, dense"] = to_tflite(pruned, "fp32")
            files[f"{label}, sparse"] = to_tflite(pruned, "fp32", sparse=True)
        paths = {}
        for index, (label, content) in enumerate(files.items()):
            paths[label] = os.path.join(folder, f"{index}.tflite")
            with open(paths[label], "wb") as handle:
                handle.write(content)
        results = dict(zip(paths, bench_host(list(paths.values()), threads=1, runs=args.runs), strict=True))
    print(f"mobilenet_v2 {args.width:g} 224x224 fp32, LiteRT + XNNPACK, 1 thread, {args.runs} interleaved runs")
    for label, result in results.items():
        densify = inspect_tflite(files[label]).ops.count("DENSIFY")
        print(f"  {label:<40} p50 {result.p50_ms:8.2f} ms   {len(files[label]) / 1e6:6.2f} MB   DENSIFY ops {densify}")
    for label in results:
        if label.endswith(", sparse"):
            dense = label.replace(", sparse", ", dense")
            print(f"  sparse / dense, {label.split(',')[0]}: {results[label].p50_ms / results[dense].p50_ms:.3f}")


if __name__ == "__main__":
    main()
