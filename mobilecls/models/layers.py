"""Building blocks shared by the model families.

Every layer here is either a built-in tf_keras layer or a small weightless layer that carries
``mobilecls_quantize_output`` (read by the registry extension in ``mobilecls._tf``) and
``get_prunable_weights`` (read by tfmot's pruning wrapper), so quantize_model and
prune_low_magnitude accept the whole model as it is.
"""

import contextlib

from mobilecls._tf import keras, tf
from mobilecls.models import grouped_kernel

layers = keras.layers

_exporting = [False]


@contextlib.contextmanager
def exporting():
    """Inside this, mobilecls layers trace the graph a .tflite file should hold.

    Some layers compute their function one way to train fast on a CPU and trace another, the
    same function, for the converter (see ``GroupedPointwiseConvBN``). ``mobilecls.export.convert``
    enters this around the converter's tracing; Keras training and inference never do.
    """
    previous, _exporting[0] = _exporting[0], True
    try:
        yield
    finally:
        _exporting[0] = previous


def is_exporting():
    """True inside ``exporting()``."""
    return _exporting[0]


def make_divisible(value, divisor=8, min_value=None):
    """Round ``value`` to the nearest multiple of ``divisor``, never more than 10 % down."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def check_common(name, width, input_size, num_classes, dropout):
    """Validate the keywords every builder shares; raises ValueError naming the bad one."""
    if not width > 0:
        raise ValueError(f"{name}: width must be > 0, got {width!r}")
    if not isinstance(input_size, int) or input_size < 32 or input_size % 32:
        raise ValueError(f"{name}: input_size must be a multiple of 32 (>= 32), got {input_size!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")


def is_cifar_layout(input_size):
    """Inputs below 96 pixels use the CIFAR stem (stride 8 in all instead of 32)."""
    return input_size < 96


class _Weightless(layers.Layer):
    """A layer with no weights: nothing to prune, output quantized like an activation."""

    mobilecls_quantize_output = True

    def get_prunable_weights(self):
        return []


class _FrozenDepthwise(layers.DepthwiseConv2D):
    """A depthwise convolution with constant, non-trainable weights, never pruned.

    Why not AveragePooling2D: under QAT the constant weights get fake-quantized like any
    convolution, so the converter emits one int8 DEPTHWISE_CONV_2D, which the XNNPACK delegate
    runs; int8 AVERAGE_POOL_2D is not delegated and would split the graph.
    """

    mobilecls_quantize_output = True
    mobilecls_quantize_weights = ("depthwise_kernel",)
    kernel, weight, bias = 1, 1.0, None

    def __init__(self, **kwargs):
        for fixed in ("kernel_size", "use_bias", "trainable", "depthwise_initializer", "bias_initializer"):
            kwargs.pop(fixed, None)
        kwargs.setdefault("padding", "same")
        super().__init__(self.kernel, use_bias=self.bias is not None, trainable=False,
                         depthwise_initializer=keras.initializers.Constant(self.weight),
                         bias_initializer=keras.initializers.Constant(self.bias or 0.0), **kwargs)

    def get_prunable_weights(self):
        return []


@keras.utils.register_keras_serializable("mobilecls")
class AveragePooling3x3(_FrozenDepthwise):
    """3x3 average pooling counting the zero padding (PyTorch's AvgPool2d(3, s, 1) default)."""

    kernel, weight, bias = 3, 1 / 9, None


@keras.utils.register_keras_serializable("mobilecls")
class ShiftedReLU6(_Weightless):
    """relu6(x + 3), the numerator of hard-sigmoid and hard-swish."""

    def call(self, inputs):
        return tf.nn.relu6(inputs + 3.0)


@keras.utils.register_keras_serializable("mobilecls")
class ConstantScale(_Weightless):
    """x * factor for a fixed scalar factor."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.utils.register_keras_serializable("mobilecls")
class Product(_Weightless):
    """Elementwise product of two tensors, broadcasting (e.g. a 1x1xC gate over HxWxC)."""

    def call(self, inputs):
        first, second = inputs
        return first * second


@keras.utils.register_keras_serializable("mobilecls")
class GroupedPointwiseConvBN(layers.Layer):
    """1x1 ``Conv2D(groups=g, use_bias=False)`` -> BatchNorm -> ReLU (or none) as one layer.

    Why: TensorFlow's CPU kernel for ``Conv2D(groups>1)`` trains very slowly (ShuffleNetV1 g=3
    built with it trained at a sixth of ShuffleNetV2's images/s). This layer computes each
    group as a matrix product over the pixels (split, g products, concatenate: fewer CPU
    seconds than one einsum or g convolutions, docs/benchmarks.md), in training and in Keras
    inference, and traces a real grouped convolution inside ``exporting()``, so the .tflite
    file holds what the textbook graph's does (one grouped CONV_2D with BatchNorm and ReLU
    folded in).

    Its weights are the textbook layers' own, in their order and shapes: the kernel
    (1, 1, Cin/g, Cout) as ``Conv2D(groups=g)`` holds it, then the BatchNorm's gamma, beta,
    moving mean and moving variance. Why the BatchNorm and ReLU live inside: tfmot folds a
    BatchNorm and ReLU only into the built-in convolution right before them; here QAT
    fake-quantizes the kernel per output channel (tfmot's convolution weight quantizer) and
    the layer's output after the activation, which is what tfmot does to the textbook's
    Conv2D -> BatchNorm -> ReLU. Pruning prunes the kernel.

    A float32 training step with the compiled op (``grouped_kernel``) runs the product, the
    BatchNorm with the batch's statistics and the ReLU as one op, forward and backward, and
    updates the moving averages as Keras' BatchNorm does; everything else (inference, a
    frozen layer, a symbolic training flag, other dtypes) feeds the products to the Keras
    BatchNorm sublayer.
    """

    mobilecls_quantize_output = True
    mobilecls_quantize_weights = ("kernel",)
    mobilecls_per_channel_weights = True

    def __init__(self, filters, groups, activation=None, epsilon=1e-3, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        if activation not in (None, "relu"):
            raise ValueError(f"activation must be relu or None, got {activation!r}")
        if filters % groups:
            raise ValueError(f"{filters} filters are not divisible by {groups} groups")
        self.filters, self.groups, self.activation = int(filters), int(groups), activation
        self.bn = layers.BatchNormalization(epsilon=epsilon, momentum=momentum, name="bn")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ValueError(f"{self.name}: {channels} input channels are not divisible by {self.groups} groups")
        self.kernel = self.add_weight("kernel", (1, 1, channels // self.groups, self.filters),
                                      initializer="glorot_uniform", trainable=True)
        self.bn.build((*input_shape[:-1], self.filters))
        super().build(input_shape)

    def _group_products(self, inputs):
        """Each group as a matrix product over the pixels.

        With the compiled op (``grouped_kernel``) each group's channel block is read and written
        in place; without it (or for other dtypes than float32), TensorFlow's ops split the
        input, run g products and concatenate them.
        """
        kernel = self.kernel[0, 0]
        pixels = tf.reshape(inputs, (-1, inputs.shape[-1]))
        if inputs.dtype == tf.float32 and grouped_kernel.library() is not None:
            result = grouped_kernel.grouped_matmul(pixels, kernel, self.groups)
        else:
            result = grouped_kernel.split_matmul(pixels, kernel, self.groups)
        return self._as_images(result, inputs)

    def _as_images(self, pixels, inputs):
        """(pixels, filters) back to the inputs' batch and spatial shape."""
        return tf.reshape(pixels, tf.concat([tf.shape(inputs)[:-1], [self.filters]], 0))

    def _trains_in_one_op(self, inputs, training):
        """Whether this call is a float32 training step the compiled op can take whole: training
        is decided (a Python truth value, as Keras' fit and ``model(x, training=True)`` give) and
        the BatchNorm trainable (frozen, by ``trainable=False`` on this layer or on the BatchNorm
        as QAT does, it normalises with its moving statistics and keeps them)."""
        if training is None:
            training = keras.backend.learning_phase()
        return (isinstance(training, (bool, int)) and bool(training) and self.bn.trainable
                and inputs.dtype == tf.float32 and grouped_kernel.library() is not None)

    def _train_in_one_op(self, inputs):
        """Product, batch-statistics BatchNorm and ReLU in the compiled op, and the moving averages
        updated as Keras' fused BatchNorm does (momentum; the batch's unbiased variance)."""
        pixels = tf.reshape(inputs, (-1, inputs.shape[-1]))
        y, mean, variance = grouped_kernel.grouped_conv_batch_norm(
            pixels, self.kernel[0, 0], self.bn.gamma, self.bn.beta, self.groups, self.bn.epsilon,
            self.activation == "relu")
        count = tf.cast(tf.shape(pixels)[0], tf.float32)
        unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
        for average, batch in ((self.bn.moving_mean, mean), (self.bn.moving_variance, unbiased)):
            average.assign_sub((average - batch) * (1.0 - self.bn.momentum))
        return self._as_images(y, inputs)

    def call(self, inputs, training=None):
        if is_exporting():
            x = tf.nn.conv2d(inputs, self.kernel, 1, "VALID")  # the kernel's depth makes it grouped
        elif self._trains_in_one_op(inputs, training):
            return self._train_in_one_op(inputs)
        else:
            x = self._group_products(inputs)
        x = self.bn(x, training=training)
        return tf.nn.relu(x) if self.activation == "relu" else x

    def compute_output_shape(self, input_shape):
        return tf.TensorShape((*input_shape[:-1], self.filters))

    def get_prunable_weights(self):
        return [self.kernel]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "groups": self.groups,
                "activation": self.activation, "epsilon": self.bn.epsilon, "momentum": self.bn.momentum}


# Class name -> class, for formats that store bare class names (legacy .h5, used for QAT models).
CUSTOM_OBJECTS = {cls.__name__: cls for cls in (AveragePooling3x3, ShiftedReLU6, ConstantScale, Product,
                                                GroupedPointwiseConvBN)}


# Why hard-sigmoid and hard-swish are several small layers and not one: each layer's output
# gets its own fake-quant node under QAT, so every intermediate tensor has an int8 range and
# the converter emits int8 ADD/MUL ops; a single layer would leave float ops between its
# input and output. The order (x / 6) * relu6(x + 3) also keeps the converter from fusing
# HARD_SWISH, which the XNNPACK delegate does not run in int8 (it would split the graph).
def hard_sigmoid(x, name):
    """relu6(x + 3) / 6 from built-in-quantizable pieces."""
    return ConstantScale(1 / 6, name=f"{name}_sixth")(ShiftedReLU6(name=f"{name}_relu6")(x))


def hard_swish(x, name):
    """x * relu6(x + 3) / 6 as (x / 6) * relu6(x + 3)."""
    sixth = ConstantScale(1 / 6, name=f"{name}_sixth")(x)
    return Product(name=f"{name}_product")([sixth, ShiftedReLU6(name=f"{name}_relu6")(x)])


def channel_shuffle(x, groups, name):
    """Channel shuffle of the study's eq. (7) from static shapes and built-in layers.

    Reshape (H, W, g, C/g) -> Permute -> Reshape (H, W, C): input channel i lands at output
    index floor(i / (C/g)) + (i mod (C/g)) * g. Reshape and Permute pass through QAT.
    """
    height, width, channels = x.shape[1:]
    if channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels are not divisible by {groups} groups")
    x = layers.Reshape((height, width, groups, channels // groups), name=f"{name}_reshape")(x)
    x = layers.Permute((1, 2, 4, 3), name=f"{name}_permute")(x)
    return layers.Reshape((height, width, channels), name=f"{name}_flatten")(x)


def _pad(x, kernel, stride, explicit_padding, name):
    """"same" padding, or for a strided conv with ``explicit_padding`` a ZeroPadding2D of
    kernel // 2 on every side + "valid" (TF's "same" pads (0, 1) at stride 2; XNNPACK's sparse
    inference wants 1 on each side)."""
    if explicit_padding and stride > 1:
        return layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x), "valid"
    return x, "same"


def conv_bn(x, filters, kernel, stride=1, groups=1, activation="relu", name="conv", explicit_padding=False):
    """Conv (no bias) -> BatchNorm -> activation ('relu', 'relu6', 'hswish' or None)."""
    x, padding = _pad(x, kernel, stride, explicit_padding, name)
    x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, groups=groups,
                      use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.9, name=f"{name}_bn")(x)
    return activate(x, activation, name)


def depthwise_bn(x, kernel, stride=1, activation="relu", name="dw", explicit_padding=False):
    """Depthwise conv (no bias) -> BatchNorm -> activation."""
    x, padding = _pad(x, kernel, stride, explicit_padding, name)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.9, name=f"{name}_bn")(x)
    return activate(x, activation, name)


def activate(x, activation, name):
    """Apply a named activation as its own layer (``None`` leaves ``x`` linear)."""
    if activation is None:
        return x
    if activation == "relu":
        return layers.ReLU(name=f"{name}_relu")(x)
    if activation == "relu6":
        return layers.ReLU(6.0, name=f"{name}_relu6")(x)
    if activation == "hswish":
        return hard_swish(x, name=f"{name}_hswish")
    raise ValueError(f"activation must be relu, relu6, hswish or None, got {activation!r}")


def squeeze_excite(x, reduced, name):
    """Squeeze-excite (MobileNetV3): GAP -> 1x1 ReLU -> 1x1 hard-sigmoid -> scale."""
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    gate = layers.Conv2D(reduced, 1, name=f"{name}_reduce")(gate)
    gate = layers.ReLU(name=f"{name}_reduce_relu")(gate)
    gate = layers.Conv2D(x.shape[-1], 1, name=f"{name}_expand")(gate)
    gate = hard_sigmoid(gate, name=f"{name}_hsigmoid")
    return Product(name=f"{name}_scale")([x, gate])


def classifier_head(x, num_classes, dropout, name="head"):
    """Global average pool -> dropout -> dense logits (softmax is left to the loss)."""
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, name=f"{name}_logits")(x)


def model_input(input_size, batch_size=None):
    """The model input: RGB pixels 0..255, float32.

    Why there is no normalisation layer: every model starts with convolution -> BatchNorm,
    and conv(x / 127.5 - 1) followed by BatchNorm is conv(x) followed by BatchNorm with other
    statistics (the scale and offset fold into the convolution), so the stem's BatchNorm is the
    normalisation; the only difference is that "same" padding pads with black (pixel 0).
    A separate layer would cost its own pass over the image: a 1x1 depthwise convolution
    over 224x224x3 int8 pixels took 9 % of MobileNetV2's latency here, and with raw pixels the
    int8 input (scale 1, zero point -128) feeds the first convolution directly.
    """
    return keras.Input((input_size, input_size, 3), batch_size=batch_size, name="pixels")
