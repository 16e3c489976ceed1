"""MACs and parameters follow the study's formulas and agree with the original papers."""

import pytest

from mobilecls.models.profile import (
    depthwise_conv_macs,
    layer_costs,
    pointwise_conv_macs,
    separable_conv_macs,
    standard_conv_macs,
    summarize,
)

# (name, keywords, params, MACs) from the original papers at 224x224, 1000 classes.
PAPER = [
    ("mobilenet_v1", {}, 4.2e6, 569e6),
    ("mobilenet_v2", {}, 3.4e6, 300e6),
    ("mobilenet_v3_large", {}, 5.4e6, 219e6),
    ("mobilenet_v3_small", {}, 2.5e6, 56e6),
    ("shufflenet_v1", {"groups": 3}, 1.9e6, 137e6),
    ("shufflenet_v2", {}, 2.3e6, 146e6),
    ("shufflenet_v2", {"width": 0.5}, 1.4e6, 41e6),
]


@pytest.mark.parametrize("name,kwargs,params,macs", PAPER)
def test_params_and_macs_within_5_percent_of_the_papers(name, kwargs, params, macs):
    row = summarize(name, **kwargs)
    assert row["params"] == pytest.approx(params, rel=0.05)
    assert row["macs"] == pytest.approx(macs, rel=0.05)


def test_eq_5_standard_conv_costs_8_7_times_its_separable_counterpart():
    h = w = 56
    ratio = standard_conv_macs(h, w, 128, 256, 3) / separable_conv_macs(h, w, 128, 256, 3)
    assert ratio == pytest.approx(8.69, abs=0.01)
    assert 1 / ratio == pytest.approx(1 / 256 + 1 / 9)  # eq. (5)


def test_formulas_by_hand():
    assert standard_conv_macs(112, 112, 3, 32, 3) == 112 * 112 * 3 * 32 * 9
    assert depthwise_conv_macs(56, 56, 64, 3) == 56 * 56 * 64 * 9
    assert pointwise_conv_macs(7, 7, 1024, 1024) == 7 * 7 * 1024 * 1024


def test_per_layer_costs_use_the_output_size_and_the_right_equation():
    from mobilecls.models import build_model

    costs = {c.name: c for c in layer_costs(build_model("mobilenet_v1", input_size=224, num_classes=1000))}
    stem, dw2, pw2 = costs["stem"], costs["block_2_depthwise"], costs["block_2_pointwise"]
    assert (stem.kind, stem.macs) == ("standard", 112 * 112 * 3 * 32 * 9)
    assert (dw2.kind, dw2.output, dw2.macs) == ("depthwise", (56, 56, 64), 56 * 56 * 64 * 9)  # stride 2
    assert (pw2.kind, pw2.macs) == ("pointwise", 56 * 56 * 64 * 128)
    assert costs["head_logits"].macs == 1024 * 1000


def test_grouped_pointwise_conv_divides_by_groups():
    from mobilecls.models import build_model

    costs = {c.name: c for c in layer_costs(build_model("shufflenet_v1", groups=3, input_size=224, grouped_conv=True))}
    g = costs["stage_3_unit_2_gconv1"]
    assert (g.kind, g.groups) == ("group", 3)
    assert g.macs == 14 * 14 * 480 * 120 // 3
