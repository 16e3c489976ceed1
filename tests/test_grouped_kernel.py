"""The compiled grouped 1x1 convolution op: the same values and gradients as TensorFlow's ops."""

import subprocess
import sys

import numpy as np
import pytest

from mobilecls._tf import keras, tf
from mobilecls.models import build_model, grouped_kernel


def split_reference(x, kernel, groups):
    """The textbook grouped 1x1 convolution from TensorFlow ops (slices, products, concat)."""
    outputs = kernel.shape[1] // groups
    return tf.concat([tf.matmul(part, kernel[:, g * outputs:(g + 1) * outputs])
                      for g, part in enumerate(tf.split(x, groups, axis=-1))], -1)


@pytest.fixture(scope="module")
def library():
    found = grouped_kernel.library()
    assert found is not None, "the op library must build on the test machine (g++ is required)"
    return found


# (groups, Cin, Cout, pixels): ShuffleNetV1's shapes (g=3 stage 2: 240 -> 60 -> 240; g=8: 384 -> 96
# -> 384), both paths of the op (inner dimension below and above 16), odd and tiny pixel counts.
SHAPES = [(3, 240, 60, 1000), (3, 60, 240, 513), (8, 384, 96, 777), (8, 96, 384, 300),
          (1, 24, 30, 33), (2, 4, 6, 1), (4, 64, 8, 0)]


@pytest.mark.parametrize("groups,cin,cout,pixels", SHAPES)
def test_values_and_gradients_equal_the_split_ops(library, groups, cin, cout, pixels):
    rng = np.random.default_rng(groups * 1000 + cin)
    x = tf.constant(rng.standard_normal((pixels, cin)), tf.float32)
    kernel = tf.constant(rng.standard_normal((cin // groups, cout)), tf.float32)
    weights = tf.constant(rng.standard_normal((pixels, cout)), tf.float32)  # a loss that weighs every output
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = grouped_kernel.grouped_matmul(x, kernel, groups)
        reference = split_reference(x, kernel, groups)
        loss_ours, loss_reference = tf.reduce_sum(ours * weights), tf.reduce_sum(reference * weights)
    assert ours.shape == (pixels, cout)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-4)
    for ours_grad, reference_grad in zip(tape.gradient(loss_ours, [x, kernel]),
                                         tape.gradient(loss_reference, [x, kernel]), strict=True):
        assert ours_grad.shape == reference_grad.shape
        np.testing.assert_allclose(ours_grad, reference_grad, rtol=1e-4, atol=1e-3)


def batch_norm_reference(x, kernel, gamma, beta, groups, epsilon, relu):
    """The textbook training layer from TensorFlow ops: grouped product, batch moments, BatchNorm, ReLU."""
    z = split_reference(x, kernel, groups)
    mean, variance = tf.nn.moments(z, axes=[0])
    y = tf.nn.batch_normalization(z, mean, variance, beta, gamma, epsilon)
    return (tf.nn.relu(y) if relu else y), mean, variance


# Pixel counts around the op's chunks (32 rows for the statistics, 256 for the backward pass).
@pytest.mark.parametrize("groups,cin,cout,pixels,relu", [(3, 240, 60, 1000, True), (3, 60, 240, 513, False),
                                                          (8, 384, 96, 777, True), (8, 96, 384, 300, True),
                                                          (2, 4, 6, 1, True), (1, 24, 30, 33, False)])
def test_fused_batch_norm_values_and_gradients_equal_the_textbook_ops(library, groups, cin, cout, pixels, relu):
    rng = np.random.default_rng(groups * 1000 + cout)
    x = tf.constant(rng.standard_normal((pixels, cin)) + 0.5, tf.float32)  # a mean to subtract
    kernel = tf.constant(rng.standard_normal((cin // groups, cout)), tf.float32)
    gamma = tf.constant(rng.uniform(0.5, 1.5, cout), tf.float32)
    beta = tf.constant(rng.normal(0, 0.5, cout), tf.float32)
    weights = tf.constant(rng.standard_normal((pixels, cout)), tf.float32)
    inputs = [x, kernel, gamma, beta]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        ours = grouped_kernel.grouped_conv_batch_norm(x, kernel, gamma, beta, groups, 1e-3, relu)
        reference = batch_norm_reference(x, kernel, gamma, beta, groups, 1e-3, relu)
        loss_ours, loss_reference = tf.reduce_sum(ours[0] * weights), tf.reduce_sum(reference[0] * weights)
    if relu and pixels > 100:
        assert 0.2 < np.mean(ours[0].numpy() == 0) < 0.8  # the ReLU cuts part of every layer
    for name, value, expected in zip(("y", "mean", "variance"), ours, reference, strict=True):
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4, err_msg=name)
    for name, ours_grad, reference_grad in zip(("dx", "dkernel", "dgamma", "dbeta"), tape.gradient(loss_ours, inputs),
                                               tape.gradient(loss_reference, inputs), strict=True):
        scale = np.abs(reference_grad).max() + 1e-6
        np.testing.assert_allclose(ours_grad / scale, reference_grad / scale, atol=2e-4, err_msg=name)


def textbook_layers(groups, filters):
    return [keras.layers.Conv2D(filters, 1, groups=groups, use_bias=False),
            keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.9), keras.layers.ReLU()]


def test_the_layer_trains_like_conv2d_groups_batchnorm_relu(library):
    """A training call: the same output, gradients and moving statistics as the textbook layers."""
    from mobilecls.models.layers import GroupedPointwiseConvBN

    rng = np.random.default_rng(1)
    images = tf.constant(rng.standard_normal((4, 6, 6, 24)) + 1.0, tf.float32)
    ours, textbook = GroupedPointwiseConvBN(12, 3, activation="relu"), textbook_layers(3, 12)
    ours.build(images.shape)
    x = images
    for layer in textbook:
        x = layer(x)  # builds them
    weights = [rng.standard_normal((1, 1, 8, 12)), rng.uniform(0.5, 1.5, 12), rng.normal(0, 0.3, 12),
               rng.normal(0, 0.3, 12), rng.uniform(0.5, 1.5, 12)]
    ours.set_weights(weights)
    textbook[0].set_weights(weights[:1])
    textbook[1].set_weights(weights[1:])

    def textbook_call(x, training):
        for layer in textbook:
            x = layer(x, training=training)
        return x

    with tf.GradientTape(persistent=True) as tape:
        y_ours, y_textbook = ours(images, training=True), textbook_call(images, True)
        weights_of_loss = images[..., :12]
        loss_ours, loss_textbook = tf.reduce_sum(y_ours * weights_of_loss), tf.reduce_sum(y_textbook * weights_of_loss)
    np.testing.assert_allclose(y_ours, y_textbook, rtol=1e-4, atol=1e-4)
    assert 0.2 < np.mean(y_ours.numpy() == 0) < 0.8
    for ours_grad, textbook_grad in zip(tape.gradient(loss_ours, ours.trainable_weights),
                                        tape.gradient(loss_textbook, textbook[0].trainable_weights
                                                      + textbook[1].trainable_weights), strict=True):
        np.testing.assert_allclose(ours_grad, textbook_grad, rtol=1e-4, atol=1e-3)
    # moving mean and variance moved (momentum 0.9) to the same values
    np.testing.assert_allclose(ours.get_weights()[3:], textbook[1].get_weights()[2:], rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours.get_weights()[3], weights[3])
    # frozen, it normalises with the moving statistics even when called with training=True
    ours.trainable = False
    np.testing.assert_allclose(ours(images, training=True), textbook_call(images, False), rtol=1e-4, atol=1e-4)


def test_each_group_reads_only_its_own_channels(library):
    """Group 1's outputs depend on input block 1 alone: a hand-made case, not a comparison."""
    x = np.zeros((2, 6), np.float32)
    x[:, 2:4] = [[1, 2], [3, 4]]  # only the second of three blocks is non-zero
    kernel = np.arange(12, dtype=np.float32).reshape(2, 6)  # (Cin / g = 2, Cout = 6)
    y = grouped_kernel.grouped_matmul(tf.constant(x), tf.constant(kernel), 3).numpy()
    expected = np.zeros((2, 6), np.float32)
    expected[:, 2:4] = x[:, 2:4] @ kernel[:, 2:4]
    np.testing.assert_array_equal(y, expected)


def test_bad_shapes_are_refused_with_what_was_expected(library):
    with pytest.raises(tf.errors.InvalidArgumentError, match="not divisible by 3 groups"):
        library.mobilecls_grouped_matmul(tf.zeros((4, 6)), tf.zeros((2, 7)), groups=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="input has 5 channels, the kernel expects 6"):
        library.mobilecls_grouped_matmul(tf.zeros((4, 5)), tf.zeros((2, 6)), groups=3)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="rank|matrix"):
        library.mobilecls_grouped_matmul(tf.zeros((4, 2, 6)), tf.zeros((2, 6)), groups=3)
    def fused(x, gamma):
        return grouped_kernel.grouped_conv_batch_norm(x, tf.zeros((2, 6)), gamma, tf.zeros(6), 3, 1e-3, True)

    with pytest.raises(tf.errors.InvalidArgumentError, match="gamma must be a vector of the 6 output channels"):
        fused(tf.zeros((4, 6)), tf.ones(5))
    with pytest.raises(tf.errors.InvalidArgumentError, match="input has 9 channels, the kernel expects 6"):
        fused(tf.zeros((4, 9)), tf.ones(6))
    gradient = library.mobilecls_grouped_conv_batch_norm_grad
    arguments = dict(x=tf.zeros((4, 6)), kernel=tf.zeros((2, 6)), gamma=tf.ones(6), beta=tf.zeros(6),
                     mean=tf.zeros(6), variance=tf.ones(6), groups=3, epsilon=1e-3, relu=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"dy and z must be \(4, 6\)"):
        gradient(dy=tf.zeros((4, 5)), z=tf.zeros((4, 6)), **arguments)
    with pytest.raises(tf.errors.InvalidArgumentError, match="variance must be a vector of the 6 output channels"):
        gradient(dy=tf.zeros((4, 6)), z=tf.zeros((4, 6)), **{**arguments, "variance": tf.ones(3)})


def test_shufflenet_v1_trains_the_same_with_and_without_the_op(library):
    """One training step's loss and gradients of a ShuffleNetV1 g=3 with the op and with the split ops."""
    keras.utils.set_random_seed(0)  # some initialisations amplify rounding through small-batch BatchNorms
    model = build_model("shufflenet_v1", width=0.25, groups=3, input_size=32, num_classes=10)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)), tf.float32)
    labels = tf.constant([0, 3, 7, 9, 1, 2, 5, 8])

    def step():
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    graph = tf.function(step)
    loss_ours, gradients_ours = graph()
    with grouped_kernel.split_products():
        loss_split, gradients_split = tf.function(step)()
    traced = graph.get_concrete_function().graph.as_graph_def()
    assert sum(node.op == "MobileclsGroupedConvBatchNorm" for node in traced.node) == len(
        [layer for layer in model.layers if type(layer).__name__ == "GroupedPointwiseConvBN"])
    np.testing.assert_allclose(loss_ours, loss_split, rtol=1e-5)
    # Measured: every gradient within 6e-5 of the split ops' (relative norm). A kernel followed
    # by BatchNorm has gradients that are zero but for rounding (no mean direction): both small.
    for variable, ours, split in zip(model.trainable_variables, gradients_ours, gradients_split, strict=True):
        reference = np.linalg.norm(split)
        if reference > 1e-3:
            assert np.linalg.norm(ours - split) / reference < 1e-3, variable.name
        else:
            assert np.linalg.norm(ours) < 1e-3, variable.name


def test_without_a_compiler_the_layer_falls_back_and_says_why(tmp_path):
    """A fresh process with no compiler and an empty cache: a warning naming the compiler, same outputs."""
    script = """
import warnings, numpy as np
from mobilecls._tf import keras, tf
from mobilecls.models import build_model, grouped_kernel
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = build_model("shufflenet_v1", width=0.25, groups=3, input_size=32, num_classes=10)
    model(tf.zeros((1, 32, 32, 3)), training=True)
assert grouped_kernel.library() is None
print([str(w.message) for w in caught if "grouped 1x1" in str(w.message)][0])
"""
    env = {"MOBILECLS_CACHE": str(tmp_path), "CXX": "no-such-compiler", "PATH": "/usr/bin:/bin",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no C++ compiler 'no-such-compiler' on PATH" in result.stdout
    assert not list(tmp_path.rglob("*.so")) and not list(tmp_path.rglob(".mobilecls-*"))


def test_the_library_is_keyed_by_the_cache_folder_and_the_source(monkeypatch, tmp_path):
    monkeypatch.setenv("MOBILECLS_CACHE", str(tmp_path))
    path = grouped_kernel.library_path()
    assert path.parent == tmp_path / "ops" and path.name.startswith("grouped_matmul-") and path.suffix == ".so"
    source = tmp_path / "other.cc"
    source.write_text(grouped_kernel.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(grouped_kernel, "SOURCE", source)
    assert grouped_kernel.library_path() != path


def test_a_failing_compiler_or_a_broken_library_is_named_and_leaves_no_file(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "false")  # on PATH, exits 1 with no output
    with pytest.raises(grouped_kernel.KernelUnavailable, match="false could not build grouped_matmul.cc"):
        grouped_kernel.build(tmp_path / "ops.so")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("MOBILECLS_CACHE", str(tmp_path))
    path = grouped_kernel.library_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a shared library")
    with pytest.raises(grouped_kernel.KernelUnavailable, match="TensorFlow could not load"):
        grouped_kernel._load()
