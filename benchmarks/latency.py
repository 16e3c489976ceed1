"""Int8 latency side by side in one run (LiteRT interpreter, XNNPACK, static batch 1, 224x224).

Prints the median of many invokes at 1 and 2 threads for:
  - mobilecls shufflenet_v2 1.0 and its shuffle=False ablation (cost of the shuffle),
  - mobilecls shufflenet_v1 g=3 1.0 as built (GroupedPointwiseConvBN layers, exported as grouped
    convolutions) and as the textbook graph (Conv2D(groups=3) layers), the same function: their
    files should hold the same ops and run alike,
  - mobilecls mobilenet_v2 1.0 and tf_keras.applications.MobileNetV2 1.0 (weights=None)
    converted the standard way (from_keras_model + representative dataset, int8),
and the ratios against the targets. Models are timed interleaved, so drift hits all equally.

    python benchmarks/latency.py [--rounds 7] [--invokes 50]
"""

import argparse
import statistics
import time

import numpy as np

from mobilecls._tf import Interpreter, keras, tf
from mobilecls.export.convert import inspect_tflite, to_tflite
from mobilecls.models import build_model

SIZE = 224


def calibration(count=16, seed=0):
    return [np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, 3)).astype("float32")]


def keras_application_int8():
    """tf_keras' MobileNetV2 converted as its users do: from_keras_model, int8 PTQ."""
    model = keras.applications.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    images = calibration()[0] / 127.5 - 1.0  # the application expects inputs in -1..1
    converter.representative_dataset = lambda: ([image[None]] for image in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def interpreter(content, threads):
    runner = Interpreter(model_content=content, num_threads=threads)
    detail = runner.get_input_details()[0]
    if list(detail["shape"]) != [1, SIZE, SIZE, 3]:  # the Keras application has a dynamic batch
        runner.resize_tensor_input(detail["index"], [1, SIZE, SIZE, 3])
    runner.allocate_tensors()
    runner.set_tensor(detail["index"], np.zeros((1, SIZE, SIZE, 3), detail["dtype"]))
    for _ in range(10):  # warm-up, kept apart from the timed invokes
        runner.invoke()
    return runner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--invokes", type=int, default=50)
    args = parser.parse_args()

    contents = {
        "shufflenet_v2 1.0": to_tflite(build_model("shufflenet_v2"), "int8", calibration(), io="int8"),
        "shufflenet_v2 1.0 shuffle=False": to_tflite(build_model("shufflenet_v2", shuffle=False), "int8",
                                                     calibration(), io="int8"),
        "shufflenet_v1 g=3 1.0": to_tflite(build_model("shufflenet_v1"), "int8", calibration(), io="int8"),
        "shufflenet_v1 g=3 1.0 textbook graph": to_tflite(build_model("shufflenet_v1", grouped_conv=True), "int8",
                                                          calibration(), io="int8"),
        "mobilenet_v2 1.0 (mobilecls)": to_tflite(build_model("mobilenet_v2"), "int8", calibration(), io="int8"),
        "MobileNetV2 1.0 (tf_keras.applications)": keras_application_int8(),
    }
    for name, content in contents.items():
        report = inspect_tflite(content)
        print(f"{name:<42} {len(content) / 1e6:5.2f} MB  {report.partitions} XNNPACK partition(s)  "
              f"{len(report.ops)} ops")

    medians = {}
    for threads in (1, 2):
        runners = {name: interpreter(content, threads) for name, content in contents.items()}
        samples = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, runner in runners.items():
                for _ in range(args.invokes):
                    start = time.perf_counter()
                    runner.invoke()
                    samples[name].append(time.perf_counter() - start)
        for name in runners:
            medians[name, threads] = statistics.median(samples[name]) * 1e3
    print(f"\n{'model (int8, 224x224, batch 1)':<42} {'1 thread':>10} {'2 threads':>10}")
    for name in contents:
        print(f"{name:<42} {medians[name, 1]:>8.2f}ms {medians[name, 2]:>8.2f}ms")

    ratios = [
        ("shufflenet_v2 / its shuffle=False ablation", "shufflenet_v2 1.0", "shufflenet_v2 1.0 shuffle=False", 1.15),
        # The same ops in both files: a ratio above 1 is timing noise, 2 % allowed for it.
        ("shufflenet_v1 g=3 / textbook graph", "shufflenet_v1 g=3 1.0", "shufflenet_v1 g=3 1.0 textbook graph",
         1.02),
        ("mobilecls mobilenet_v2 / Keras MobileNetV2", "mobilenet_v2 1.0 (mobilecls)",
         "MobileNetV2 1.0 (tf_keras.applications)", 1.02),
        ("shufflenet_v2 1.0 / Keras MobileNetV2", "shufflenet_v2 1.0", "MobileNetV2 1.0 (tf_keras.applications)", 0.50),
    ]
    print(f"\n{'ratio':<44} {'1 thread':>9} {'2 threads':>9} {'target':>8}")
    for label, a, b, target in ratios:
        r1, r2 = medians[a, 1] / medians[b, 1], medians[a, 2] / medians[b, 2]
        verdict = "ok" if max(r1, r2) <= target else "MISSED"
        print(f"{label:<44} {r1:>9.3f} {r2:>9.3f} {'<= ' + str(target):>8} {verdict}")


if __name__ == "__main__":
    main()
