"""How fast could ShuffleNetV1 train if its grouped layers' BatchNorm cost nothing? (an upper bound)

Trains, side by side in interleaved rounds (32x32, batch 128, float32, the mobilecls pipeline as in
train_throughput.py): ShuffleNetV2 1.0x, ShuffleNetV1 g=3 and g=8 as built, and the same ShuffleNetV1s with
every ``GroupedPointwiseConvBN`` computing its products only ("no BN": no BatchNorm, no ReLU) or its
products and ReLU ("no BN, ReLU kept"). Not a model anyone should train: the bound on what fusing the
BatchNorm into the grouped op can buy. Prints each model's best round (this VM also runs rounds at a
quota's fixed rate, whatever the model) and its ratio to ShuffleNetV2's best.

    cd benchmarks && python grouped_bn_bound.py [--threads 1] [--steps 6] [--rounds 3]
"""

import argparse

from train_throughput import compiled_model, data, timed_rate, use_threads

from mobilecls._tf import tf
from mobilecls.data.pipeline import training_batches
from mobilecls.models.layers import GroupedPointwiseConvBN
from mobilecls.recipes import AugmentSection

AS_BUILT = GroupedPointwiseConvBN.call


def products_only(self, inputs, training=None):
    return self._group_products(inputs)


def products_and_relu(self, inputs, training=None):
    x = self._group_products(inputs)
    return tf.nn.relu(x) if self.activation == "relu" else x


VARIANTS = [("shufflenet_v2 1.0", "shufflenet_v2", {}, AS_BUILT),
            ("shufflenet_v1 g=3", "shufflenet_v1", {"groups": 3}, AS_BUILT),
            ("shufflenet_v1 g=3, no BN", "shufflenet_v1", {"groups": 3}, products_only),
            ("shufflenet_v1 g=3, no BN, ReLU kept", "shufflenet_v1", {"groups": 3}, products_and_relu),
            ("shufflenet_v1 g=8", "shufflenet_v1", {"groups": 8}, AS_BUILT),
            ("shufflenet_v1 g=8, no BN", "shufflenet_v1", {"groups": 8}, products_only)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="intra- and inter-op threads (0: one per core)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    use_threads(args.threads)
    images, labels = data(count=128 * 8)
    dataset = training_batches(images, labels, 128, AugmentSection(crop_padding=4, flip=True), 10)
    models = []
    for label, name, keywords, call in VARIANTS:
        GroupedPointwiseConvBN.call = call  # the graph is traced by the first fit, with this call
        models.append((label, compiled_model(name, {"width": 1.0, **keywords}, dataset)))
    GroupedPointwiseConvBN.call = AS_BUILT
    rates = {label: [] for label, _ in models}
    for _ in range(args.rounds):
        for label, model in models:
            rates[label].append(timed_rate(model, dataset, args.steps))
    first = max(rates[VARIANTS[0][0]])
    print(f"{'model (float32, 32x32, batch 128)':<40} {'best images/s':>13} {'ratio':>6}  (rounds)")
    for label, values in rates.items():
        print(f"{label:<40} {max(values):>13.1f} {max(values) / first:>6.3f}  ({' '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
