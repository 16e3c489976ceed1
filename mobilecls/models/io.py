"""Model files: load a .keras / .h5 model (float or QAT) and the class names of its run folder."""

import json
import os


def load_keras_model(path):
    """Load a float or QAT model file, .keras or .h5 (mobilecls layers and tfmot wrappers known).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a loadable Keras model.
    """
    from mobilecls._tf import keras, tfmot

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    from mobilecls.models.layers import CUSTOM_OBJECTS

    try:
        with tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS):
            return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; the user needs one message
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not a loadable Keras model (.keras or .h5): {reason}") from None


def class_names_beside(path):
    """Class names from the run folder's classes.json next to a model, or None."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(path)), "classes.json")
    if os.path.isfile(candidate):
        with open(candidate, encoding="utf-8") as handle:
            return list(json.load(handle))
    return None
