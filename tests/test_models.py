"""Every registered model builds, has the right output and stable names, and validates input."""


import numpy as np
import pytest

import mobilecls
from mobilecls.models import build_model, list_models

ALL = list_models()


def test_registry_lists_the_six_families():
    assert ALL == ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
                   "shufflenet_v1", "shufflenet_v2"]
    assert mobilecls.list_models() == ALL


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size,classes", [(32, 10), (224, 1000)])
def test_builds_with_right_output_and_finite_values(name, size, classes, pixels):
    model = build_model(name, input_size=size, num_classes=classes)
    from mobilecls._tf import keras

    assert isinstance(model, keras.Model) and model._is_graph_network  # Functional
    out = model(pixels(2, size), training=False).numpy()
    assert out.shape == (2, classes)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_layer_names_are_stable(name):
    first = [layer.name for layer in build_model(name, input_size=32, num_classes=10).layers]
    second = [layer.name for layer in build_model(name, input_size=32, num_classes=10).layers]
    assert first == second
    assert first[1] == "stem" and first[-1] == "head_logits"


@pytest.mark.parametrize("name", ALL)
def test_raw_pixels_feed_a_stem_conv_whose_batchnorm_absorbs_normalisation(name, pixels):
    """conv(x / 127.5 - 1) = conv(x) / 127.5 - sum(W): a per-channel affine map, which the stem
    BatchNorm that follows absorbs; so the models take raw pixels with no normalisation op."""

    model = build_model(name, input_size=32, num_classes=10)
    assert [type(layer).__name__ for layer in model.layers[1:3]] == ["Conv2D", "BatchNormalization"]
    conv = model.get_layer("stem")
    images = pixels(2, 32)
    raw = conv(images).numpy()[:, 1:-1, 1:-1]
    normalised = conv(images / 127.5 - 1.0).numpy()[:, 1:-1, 1:-1]
    offset = conv.kernel.numpy().sum(axis=(0, 1, 2))
    np.testing.assert_allclose(normalised, raw / 127.5 - offset, atol=1e-4)
    assert model.get_layer("stem_bn").center and model.get_layer("stem_bn").scale


def test_cifar_layout_ends_at_4x4_and_imagenet_at_7x7():
    small = build_model("mobilenet_v2", input_size=32, num_classes=10)
    large = build_model("mobilenet_v2", input_size=224, num_classes=10)
    assert small.get_layer("last_conv").output_shape[1:3] == (4, 4)
    assert large.get_layer("last_conv").output_shape[1:3] == (7, 7)


def test_separable_false_replaces_each_pair_by_one_standard_conv():
    from mobilecls._tf import keras

    plain = build_model("mobilenet_v1", input_size=32, num_classes=10, separable=False)
    depthwise = [layer for layer in plain.layers
                 if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.trainable]
    assert depthwise == []
    conv = plain.get_layer("block_2_conv")
    assert conv.kernel_size == (3, 3) and conv.filters == 128


def test_mobilenet_v1_cifar_output_stride_16_ends_at_2x2_with_the_papers_macs():
    from mobilecls.models.profile import summarize

    # MobileNet paper eq. 1-3: conv Dk^2 M N Df^2, depthwise Dk^2 M Df^2, pointwise M N Df^2.
    side, channels, macs = 32, 32, 9 * 3 * 32 * 32 * 32
    for filters, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
                            (1024, 2), (1024, 1)):
        side //= stride
        macs += 9 * channels * side * side + channels * filters * side * side
        channels = filters
    macs += 1024 * 10
    model = build_model("mobilenet_v1", input_size=32, num_classes=10, cifar_output_stride=16)
    assert model.get_layer("block_13_pointwise").output_shape[1:3] == (2, 2)
    assert model.get_layer("block_2_depthwise").strides == (2, 2)
    summary = summarize("mobilenet_v1", width=1.0, input_size=32, num_classes=10, cifar_output_stride=16)
    assert summary["macs"] == macs == 46_354_432
    default = build_model("mobilenet_v1", input_size=32, num_classes=10)
    assert default.get_layer("block_13_pointwise").output_shape[1:3] == (4, 4)
    assert summary["params"] == default.count_params()


def test_width_rounds_channels_to_multiples_of_8_never_10_percent_down():
    from mobilecls.models.layers import make_divisible

    for value in range(4, 2000):
        rounded = make_divisible(value * 0.35)
        assert rounded % 8 == 0 and rounded >= 0.9 * value * 0.35
    model = build_model("mobilenet_v2", width=0.35, input_size=32, num_classes=10)
    assert model.get_layer("block_1_project").filters == 8  # 24 * 0.35 = 8.4


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "resnet50"}, "unknown model 'resnet50'; expected one of: mobilenet_v1"),
    ({"name": "mobilenet_v2", "groups": 3}, "mobilenet_v2 does not accept groups"),
    ({"name": "mobilenet_v2", "input_size": 100}, "input_size must be a multiple of 32"),
    ({"name": "shufflenet_v1", "groups": 5}, "groups must be one of 1, 2, 3, 4, 8, got 5"),
    ({"name": "mobilenet_v1", "width": 0}, "width must be > 0"),
    ({"name": "mobilenet_v1", "num_classes": 1}, "num_classes must be an integer >= 2"),
    ({"name": "mobilenet_v1", "cifar_output_stride": 32}, "cifar_output_stride must be 8 or 16, got 32"),
    ({"name": "mobilenet_v1", "cifar_output_stride": 16, "input_size": 224},
     "cifar_output_stride=16 needs the CIFAR layout: input_size < 96, got input_size 224"),
])
def test_bad_arguments_are_clear_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_model(**kwargs)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_shufflenet_v1_builds_for_every_group_count(groups, pixels):
    textbook = build_model("shufflenet_v1", groups=groups, input_size=32, num_classes=10, grouped_conv=True)
    assert textbook.get_layer("stage_3_unit_2_gconv1").groups == groups
    model = build_model("shufflenet_v1", groups=groups, input_size=32, num_classes=10)
    fused = model.get_layer("stage_3_unit_2_gconv1")  # Conv2D(groups) -> BatchNorm -> ReLU as one layer
    assert type(fused).__name__ == ("Conv2D" if groups == 1 else "GroupedPointwiseConvBN")
    assert getattr(fused, "groups", 1) == groups
    assert model(pixels(1, 32)).shape == (1, 10)
