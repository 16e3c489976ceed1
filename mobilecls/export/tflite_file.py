"""What a .tflite file says about itself, read from its flatbuffer without TensorFlow.

The zoo index must describe each shipped file from the file itself (its tensors), not from its
name, and must be quick to check in the test suite, so this reads the TFLite schema with the
``flatbuffers`` reader that ai-edge-litert ships (no interpreter, no TensorFlow import).
"""

import json

import numpy as np

_COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_PRUNABLE_OPS = ("CONV_2D", "FULLY_CONNECTED")  # tfmot does not prune depthwise kernels
_NUMPY = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8,
          "INT16": np.int16, "INT32": np.int32, "INT64": np.int64}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _names(enum):
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


def _op_name(model, op, builtin_names):
    code = model.OperatorCodes(op.OpcodeIndex())
    # Codes above 127 live in BuiltinCode (the deprecated int8 field saturates at 127).
    return builtin_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")


def _weights(model, subgraph, tensor_index, type_names, producers):
    """The constant values behind ``tensor_index`` (through the DEQUANTIZE of fp16 weights), or None."""
    tensor = subgraph.Tensors(tensor_index)
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    if isinstance(data, int) or data.size == 0:  # no buffer: an activation, or made by an op
        if tensor_index in producers:
            return _weights(model, subgraph, producers[tensor_index], type_names, {})
        return None
    return np.frombuffer(data.tobytes(), _NUMPY.get(type_names[tensor.Type()], np.uint8))


def read_facts(content):
    """Mode, I/O, input shape, weight sparsity and metadata of a .tflite file's content.

    The mode comes from the tensors: int16 activations -> int16x8; int8 activations -> int8;
    int8 weights under float activations -> dynamic; float16 weights -> fp16; else fp32.

    Args:
        content: the bytes of a .tflite file.

    Returns:
        dict with ``mode``, ``io`` ({"input": dtype, "output": dtype, "input_quantization":
        [scale, zero_point] or None}), ``input_shape``, ``num_classes``, ``ops`` (count),
        ``sparsity`` (fraction of zero weights in CONV_2D / FULLY_CONNECTED kernels) and
        ``metadata`` (the "mobilecls" metadata dict, or None; ``metadata_names``: every entry).

    Raises:
        ValueError: ``content`` is not a TFLite flatbuffer.
    """
    content = bytes(content)
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError("not a TFLite file (no TFL3 identifier)")
    schema = _schema()
    builtin_names, type_names = _names(schema.BuiltinOperator), _names(schema.TensorType)
    model = schema.Model.GetRootAsModel(content, 0)
    subgraph = model.Subgraphs(0)

    def dtype(index):
        return type_names[subgraph.Tensors(index).Type()].lower()

    source, sink = subgraph.Tensors(subgraph.Inputs(0)), subgraph.Tensors(subgraph.Outputs(0))
    quantization = source.Quantization()
    input_quantization = None
    if quantization is not None and quantization.ScaleLength():
        input_quantization = [float(quantization.Scale(0)), int(quantization.ZeroPoint(0))]

    activation_types, weight_types, fp16_weights = set(), set(), False
    producers = {}  # weight tensor made by DEQUANTIZE (fp16) -> the stored tensor it reads
    zeros = total = 0
    for position in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(position)
        name = _op_name(model, op, builtin_names)
        if name == "DEQUANTIZE" and dtype(op.Inputs(0)) == "float16":
            fp16_weights = True
            producers[op.Outputs(0)] = op.Inputs(0)
        if name not in _COMPUTE_OPS:
            continue
        activation_types.add(dtype(op.Outputs(0)))
        weight_types.add(dtype(op.Inputs(1)))
        if name in _PRUNABLE_OPS:
            values = _weights(model, subgraph, op.Inputs(1), type_names, producers)
            if values is not None:
                zeros, total = zeros + int(np.count_nonzero(values == 0)), total + values.size
    if "int16" in activation_types:
        mode = "int16x8"
    elif activation_types & {"int8", "uint8"}:
        mode = "int8"
    elif weight_types & {"int8", "uint8"}:
        mode = "dynamic"
    elif fp16_weights or "float16" in weight_types:
        mode = "fp16"
    else:
        mode = "fp32"

    metadata, metadata_names = None, []
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        metadata_names.append(entry.Name().decode("utf-8"))
        if entry.Name() == b"mobilecls":
            metadata = json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode("utf-8"))
    return {"mode": mode,
            "io": {"input": type_names[source.Type()].lower(), "output": type_names[sink.Type()].lower(),
                   "input_quantization": input_quantization},
            "input_shape": [int(d) for d in source.ShapeAsNumpy()],
            "num_classes": int(sink.ShapeAsNumpy()[-1]),
            "ops": subgraph.OperatorsLength(),
            "sparsity": round(zeros / total, 4) if total else 0.0,
            "metadata": metadata, "metadata_names": metadata_names}
