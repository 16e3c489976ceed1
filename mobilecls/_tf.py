"""The one place that imports TensorFlow, tf_keras, tfmot and the LiteRT interpreter.

Everything else in mobilecls imports them from here, lazily (inside functions or in modules
that the CLI only imports when a command runs), so `mobilecls --help` starts instantly.

Importing this module also teaches tfmot's default 8-bit registries about mobilecls' own
small layers (the pieces of hard-swish and hard-sigmoid, the squeeze-excite product, the
frozen shortcut pooling): a layer that carries a ``mobilecls_quantize_output`` attribute is
quantized by tfmot like a built-in activation (its output gets a fake-quant node, or none when
the attribute is False), plus the weights named in ``mobilecls_quantize_weights`` (per output
channel, like a convolution's, when ``mobilecls_per_channel_weights`` is set). This is
what lets ``tfmot.quantization.keras.quantize_model`` accept every mobilecls model with no
``quantize_scope`` or ``quantize_annotate_layer`` at the call site.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def _native_stderr_silenced(silence):
    """Send what native code writes to file descriptor 2 to /dev/null while TensorFlow starts.

    Why: TensorFlow's start-up lines (``oneDNN custom operations are on``, ``Could not find cuda
    drivers``, ``failed call to cuInit`` on a CPU-only machine) are written by C++ before its
    log level applies, so TF_CPP_MIN_LOG_LEVEL cannot hide them; the terminal is kept for
    mobilecls' own output. Python exceptions still propagate.
    """
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# A user's own TF_CPP_MIN_LOG_LEVEL wins: then TensorFlow logs as that user asked.
_quiet = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

with _native_stderr_silenced(_quiet):
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as _registry,
    )

    tf.config.list_physical_devices()  # initialises the platforms (cuInit) now, while silenced

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
            config = (_registry.Default8BitConvQuantizeConfig if getattr(layer, "mobilecls_per_channel_weights", False)
                      else _registry.Default8BitQuantizeConfig)
            return config(weights, [], bool(getattr(layer, _QUANTIZE_ATTR)))
        return get_config(self, layer)

    mobilecls_supports._mobilecls = True
    cls.supports = mobilecls_supports
    cls.get_quantize_config = mobilecls_get_quantize_config


_teach_registry(_registry.Default8BitQuantizeRegistry)
