"""ShuffleNetV1's block layout: no grouped convolution, the textbook function, eq. (7)'s wiring."""

import re

import numpy as np
import pytest

from mobilecls.models import build_model
from mobilecls.models.profile import count_params, layer_costs
from mobilecls.models.shufflenet_v1 import bundle_sizes, cut_points

GROUPS = [1, 2, 3, 4, 8]


def _macs(model):
    return sum(cost.macs for cost in layer_costs(model))


@pytest.mark.parametrize("groups", GROUPS)
def test_block_layout_has_the_textbook_parameters_and_macs(groups):
    blocks = build_model("shufflenet_v1", groups=groups, input_size=32, num_classes=10)
    textbook = build_model("shufflenet_v1", groups=groups, input_size=32, num_classes=10, grouped_conv=True)
    assert count_params(blocks) == count_params(textbook)
    assert _macs(blocks) == _macs(textbook)


@pytest.mark.parametrize("groups", GROUPS)
def test_block_layout_builds_no_grouped_convolution_split_or_transpose(groups):
    model = build_model("shufflenet_v1", groups=groups, input_size=32, num_classes=10)
    assert all(getattr(layer, "groups", 1) == 1 for layer in model.layers)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not kinds & {"Reshape", "Permute", "Lambda", "TFOpLambda", "SlicingOpLambda"}


# Every group count at every width of the paper; the fast run keeps the case that used to fail
# (width 0.5, g=3: a 16-channel stem left 104 branch channels for 3 groups) and the extremes.
FAST_WIDTHS = {(3, 0.5), (8, 0.25), (1, 2.0)}


@pytest.mark.parametrize("groups,width", [
    pytest.param(g, w, marks=() if (g, w) in FAST_WIDTHS else pytest.mark.slow)
    for g in GROUPS for w in (0.25, 0.5, 1.0, 1.5, 2.0)])
def test_builds_at_the_papers_widths(groups, width):
    model = build_model("shufflenet_v1", groups=groups, width=width, input_size=224, num_classes=10)
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("per_group,groups", [(20, 3), (40, 3), (12, 8), (3, 8), (17, 4), (5, 1)])
def test_bundles_are_what_eq_7_sends_from_each_group_to_each_group(per_group, groups):
    sizes = bundle_sizes(per_group, groups)
    for a in range(groups):
        targets = [(b * groups + a) // per_group for b in range(per_group)]  # eq. (7), then the group
        assert targets == sorted(targets)  # contiguous: one convolution per bundle
        assert sizes[a] == [targets.count(k) for k in range(groups)]
    assert [sum(row[k] for row in sizes) for k in range(groups)] == [per_group] * groups


def test_cut_points_split_a_range_at_block_boundaries():
    assert cut_points(24, 72, 80) == [56, 16]
    assert cut_points(96, 72, 80) == [64, 8]
    assert cut_points(240, 80, 80) == [80]
    assert cut_points(0, 10, 80) == [10]


def _groups_of(name):
    return [int(n) for n in re.findall(r"_(\d+)", name)]


def _unit_wiring(textbook, unit, groups, shuffle):
    """GConv1's channels per group, the bundle sizes and starts, and for each GConv2 group k
    where eq. (7) puts its channels, in the block layout's order."""
    source = textbook.get_layer(f"{unit}_gconv1")
    n, mixing = source.filters // groups, source.groups > 1 and shuffle
    sizes = bundle_sizes(n, groups)
    starts = [np.cumsum([0] + row[:-1]).tolist() for row in sizes]
    orders = [[a * n + starts[a][k] + b for a in range(groups) for b in range(sizes[a][k])] if mixing
              else [k * n + b for b in range(n)] for k in range(groups)]
    positions = [[(c % n) * groups + c // n if mixing else c for c in order] for order in orders]
    return n, sizes, starts, positions


def _textbook_weights(blocks, textbook, groups, shuffle):
    """Every block-layout weight, copied from the textbook model through eq. (7)'s permutation."""
    values = {layer.name: layer.get_weights() for layer in textbook.layers if layer.get_weights()}
    mapped = {}
    for layer in blocks.layers:
        if not layer.get_weights() or not layer.trainable:
            continue
        if layer.name in values:  # stem, head
            mapped[layer.name] = values[layer.name]
            continue
        unit, part = re.match(r"(stage_\d+_unit_\d+)_(.*)", layer.name).groups()
        n, sizes, starts, positions = _unit_wiring(textbook, unit, groups, shuffle)
        if re.fullmatch(r"gconv1_\d+_\d+(_bn)?", part):  # bundle (a, k) of group a
            a, k = _groups_of(part)
            first = a * n + starts[a][k]
            channels = slice(first, first + sizes[a][k])
            if part.endswith("_bn"):
                mapped[layer.name] = [w[channels] for w in values[f"{unit}_gconv1_bn"]]
            else:
                mapped[layer.name] = [values[f"{unit}_gconv1"][0][..., channels]]
        elif re.fullmatch(r"gconv1_\d+(_bn)?", part):  # ungrouped GConv1, cut into GConv2's inputs
            (k,) = _groups_of(part)
            channels = slice(k * n, (k + 1) * n)
            if part.endswith("_bn"):
                mapped[layer.name] = [w[channels] for w in values[f"{unit}_gconv1_bn"]]
            else:
                mapped[layer.name] = [values[f"{unit}_gconv1"][0][..., channels]]
        elif re.fullmatch(r"depthwise_\d+", part):
            (k,) = _groups_of(part)
            mapped[layer.name] = [values[f"{unit}_depthwise"][0][:, :, positions[k]]]
        elif re.fullmatch(r"depthwise_\d+_bn", part):
            (k,) = _groups_of(part)
            mapped[layer.name] = [w[positions[k]] for w in values[f"{unit}_depthwise_bn"]]
        elif re.fullmatch(r"gconv2_\d+(_\d+)?(_bn)?", part):
            k, *cut = _groups_of(part)
            kernel = values[f"{unit}_gconv2"][0]
            before = sum(blocks.get_layer(f"{unit}_gconv2_{k}_{p}").filters for p in range(cut[0])) if cut else 0
            first = k * kernel.shape[-1] // groups + before
            columns = slice(first, first + blocks.get_layer(layer.name.removesuffix("_bn")).filters)
            if part.endswith("_bn"):
                mapped[layer.name] = [w[columns] for w in values[f"{unit}_gconv2_bn"]]
            else:
                mapped[layer.name] = [kernel[:, :, [p - k * n for p in positions[k]], columns]]
        else:
            raise AssertionError(f"no textbook source for {layer.name}")
    return mapped


@pytest.mark.parametrize("groups,shuffle,size", [(3, True, 32), (3, False, 32), (8, True, 32), (2, True, 96)])
def test_block_layout_computes_the_textbook_function(groups, shuffle, size):
    kwargs = {"groups": groups, "shuffle": shuffle, "input_size": size, "num_classes": 10, "width": 0.5}
    textbook = build_model("shufflenet_v1", grouped_conv=True, **kwargs)
    rng = np.random.default_rng(0)
    for layer in textbook.layers:  # random BatchNorm statistics, so that no permutation error hides
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    blocks = build_model("shufflenet_v1", **kwargs)
    for name, weights in _textbook_weights(blocks, textbook, groups, shuffle).items():
        blocks.get_layer(name).set_weights(weights)
    pixels = rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
    expected = textbook(pixels, training=False).numpy()
    np.testing.assert_allclose(blocks(pixels, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_shuffle_false_rewires_the_bundles_and_keeps_every_layer():
    on = build_model("shufflenet_v1", input_size=32, num_classes=10)
    off = build_model("shufflenet_v1", input_size=32, num_classes=10, shuffle=False)
    assert sorted((layer.name, layer.count_params()) for layer in on.layers) == sorted(
        (layer.name, layer.count_params()) for layer in off.layers)

    def sources(model, k):
        concat = model.get_layer(f"stage_3_unit_2_gconv1_{k}_concat")
        return sorted(layer.name for layer in concat._inbound_nodes[0].inbound_layers)

    for k in range(3):
        assert sources(on, k) == [f"stage_3_unit_2_gconv1_{a}_{k}_relu" for a in range(3)]  # every group
        assert sources(off, k) == [f"stage_3_unit_2_gconv1_{k}_{j}_relu" for j in range(3)]  # its own group
