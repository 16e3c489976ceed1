"""The one place that imports TensorFlow, tf_keras, tfmot and the LiteRT interpreter.

Everything else in mobilecls imports them from here, lazily (inside functions or in modules
that the CLI only imports when a command runs), so `mobilecls --help` starts instantly.

Importing this module also teaches tfmot's default 8-bit registries about mobilecls' own
small layers (the pieces of hard-swish and hard-sigmoid, the squeeze-excite product, the
frozen shortcut pooling): a layer that carries a ``mobilecls_quantize_output`` attribute is
quantized by tfmot like a built-in activation (its output gets a fake-quant node, or none when
the attribute is False), plus the weights named in ``mobilecls_quantize_weights``. This is
what lets ``tfmot.quantization.keras.quantize_model`` accept every mobilecls model with no
``quantize_scope`` or ``quantize_annotate_layer`` at the call site.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_registry as _registry,
)

__all__ = ["tf", "keras", "tfmot", "Interpreter", "OpResolverType"]

_QUANTIZE_ATTR = "mobilecls_quantize_output"


def _teach_registry(cls):
    supports, get_config = cls.supports, cls.get_quantize_config
    if getattr(supports, "_mobilecls", False):
        return

    def mobilecls_supports(self, layer):
        return hasattr(layer, _QUANTIZE_ATTR) or supports(self, layer)

    def mobilecls_get_quantize_config(self, layer):
        if hasattr(layer, _QUANTIZE_ATTR):
            weights = list(getattr(layer, "mobilecls_quantize_weights", ()))
            return _registry.Default8BitQuantizeConfig(weights, [], bool(getattr(layer, _QUANTIZE_ATTR)))
        return get_config(self, layer)

    mobilecls_supports._mobilecls = True
    cls.supports = mobilecls_supports
    cls.get_quantize_config = mobilecls_get_quantize_config


_teach_registry(_registry.Default8BitQuantizeRegistry)
