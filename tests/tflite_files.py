"""Small classifiers and .tflite files for the metadata, upgrade and client tests."""

import json

import numpy as np

NAMES = ["blob", "checkerboard", "circle", "cross", "diagonal_stripes", "horizontal_stripes", "ring", "square",
         "triangle", "vertical_stripes"]  # the synthetic set's classes, so --data synthetic matches


def confident_model(seed=0):
    """A tiny untrained ShuffleNetV2 whose head is scaled up, so its classes are far apart.

    Untrained, every class gets ~0.1 and an int8 softmax (256 levels) ties them all; a trained
    model's probabilities are spread, and so are these. Its weights depend on ``seed`` alone, not on
    which tests ran before in the process (with pytest-xdist that order changes from run to run).
    """
    from mobilecls._tf import keras
    from mobilecls.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("shufflenet_v2", width=0.5, input_size=32, num_classes=10)
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    rng = np.random.default_rng(seed)
    head.set_weights([kernel * 40 + rng.normal(0, 0.05, kernel.shape).astype(np.float32), bias])
    return model


def save_run(folder, model):
    """``model`` as ``folder/best.keras`` with the run's ``classes.json`` beside it."""
    model.save(folder / "best.keras")
    (folder / "classes.json").write_text(json.dumps(NAMES))
    return folder / "best.keras"


def with_legacy_metadata(content, info):
    """``content`` with only the old JSON "mobilecls" metadata buffer (files written before issue 15)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(info).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = b"mobilecls", len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def opcode_versions(content):
    """{op name: [versions]} of a .tflite file's operator codes."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    versions = {}
    for code in model.operatorCodes:
        versions.setdefault(names[max(code.builtinCode, code.deprecatedBuiltinCode)], []).append(code.version)
    return versions
