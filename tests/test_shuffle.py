"""Channel shuffle follows eq. (7); ShuffleNetV2 units mix both branches; ablations remove it."""

import numpy as np
import pytest

from mobilecls.models import build_model


@pytest.mark.parametrize("channels,groups", [(6, 2), (12, 3), (24, 4), (16, 8), (240, 3)])
def test_channel_shuffle_follows_eq_7(channels, groups):
    from mobilecls._tf import keras
    from mobilecls.models.layers import channel_shuffle

    inputs = keras.Input((2, 2, channels))
    model = keras.Model(inputs, channel_shuffle(inputs, groups, name="shuffle"))
    marked = np.broadcast_to(np.arange(channels, dtype="float32"), (1, 2, 2, channels))
    out = model(marked).numpy()[0, 0, 0]
    per_group = channels // groups
    for i in range(channels):
        assert out[i // per_group + (i % per_group) * groups] == i  # eq. (7)


def test_textbook_channel_shuffle_uses_only_reshape_and_permute():
    model = build_model("shufflenet_v1", input_size=32, num_classes=10, grouped_conv=True)
    kinds = {type(layer).__name__ for layer in model.layers if "_shuffle_" in layer.name}
    assert kinds == {"Reshape", "Permute"}


def test_textbook_shuffle_false_removes_the_shuffle_and_nothing_else():
    on = build_model("shufflenet_v1", input_size=32, num_classes=10, grouped_conv=True)
    off = build_model("shufflenet_v1", input_size=32, num_classes=10, shuffle=False, grouped_conv=True)
    assert on.count_params() == off.count_params()
    assert {layer.name for layer in on.layers} - {layer.name for layer in off.layers} == {
        layer.name for layer in on.layers if "_shuffle_" in layer.name}


def _main_input_sources(model, unit):
    concat = model.get_layer(f"stage_3_unit_{unit}_main_input")
    return [node.inbound_layers for node in concat._inbound_nodes][0]


def test_shufflenet_v2_units_mix_both_branches():
    model = build_model("shufflenet_v2", input_size=32, num_classes=10)
    for unit in range(2, 9):
        sources = [layer.name for layer in _main_input_sources(model, unit)]
        # One new block of the previous unit's main branch and one block of the identity path.
        new = [name for name in sources if f"unit_{unit - 1}_main_conv2" in name]
        assert len(new) == 1 and len(sources) == 2, sources


def test_shufflenet_v2_ablation_never_mixes_and_keeps_every_weight():
    on = build_model("shufflenet_v2", input_size=32, num_classes=10)
    off = build_model("shufflenet_v2", input_size=32, num_classes=10, shuffle=False)
    assert on.count_params() == off.count_params()
    assert sorted(type(layer).__name__ for layer in on.layers) == sorted(type(layer).__name__ for layer in off.layers)
    for unit in range(2, 9):
        sources = [layer.name for layer in _main_input_sources(off, unit)]
        assert all(f"unit_{unit - 1}_main_conv2" in name for name in sources), sources
    # Without mixing, the stage output still holds the downsampling unit's identity blocks.
    stage = off.get_layer("stage_3_output")
    sources = [layer.name for layer in stage._inbound_nodes[0].inbound_layers]
    assert sum("unit_1_proj_conv" in name for name in sources) == 2


@pytest.mark.parametrize("shuffle", [True, False])
def test_first_identity_block_reaches_a_main_branch_only_with_shuffle(shuffle):
    model = build_model("shufflenet_v2", input_size=32, num_classes=10, shuffle=shuffle)
    fed = {layer.name for unit in range(2, 5)
           for layer in model.get_layer(f"stage_2_unit_{unit}_main_input")._inbound_nodes[0].inbound_layers}
    assert ("stage_2_unit_1_proj_conv_a_relu" in fed) == shuffle
