"""Edits of a converted .tflite graph: a softmax at the output, uint8 instead of int8 I/O.

Both produce what the TFLite converter itself emits for a Keras model ending in a Softmax layer
with ``inference_input_type = inference_output_type = tf.uint8``: an int8 SOFTMAX (output scale
1/256, zero point -128) before the edge ops, a QUANTIZE uint8 -> int8 after the input and a
QUANTIZE int8 -> uint8 before the output (zero point + 128, same scale, so nothing is rounded).
Doing it on the flatbuffer lets ``mobilecls upgrade`` fix files whose Keras model is gone, and
``quantize`` uses the same code, so new and upgraded files are built alike.

The edits go through TensorFlow's flatbuffer object API, which drops anything appended after
the flatbuffer (the zip of TFLite Metadata's associated files): write metadata last.
"""

import numpy as np

EDGE_OPS = ("QUANTIZE", "DEQUANTIZE")
# What TFLite's int8 / uint8 / int16 SOFTMAX kernels require of their output (fixed range [0, 1)).
_SOFTMAX_OUTPUT = {"INT8": (1 / 256, -128), "UINT8": (1 / 256, 0), "INT16": (1 / 32768, 0)}
# SOFTMAX op versions by input type (tensorflow/lite/tools/versioning/op_version.cc).
_SOFTMAX_VERSION = {"FLOAT32": 1, "UINT8": 1, "INT8": 2, "INT16": 3}


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def _load(content):
    from tensorflow.lite.tools import flatbuffer_utils

    content = bytes(content)
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError("not a TFLite file (no TFL3 identifier)")
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    if len(model.subgraphs) != 1 or len(model.subgraphs[0].inputs) != 1 or len(model.subgraphs[0].outputs) != 1:
        raise ValueError("expected a classifier: one subgraph with one input and one output")
    return model


def _save(model):
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _type_name(tensor_type):
    schema = _schema()
    return next(name for name, value in vars(schema.TensorType).items() if value == tensor_type)


def _op_name(model, op):
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next(name for name, number in vars(schema.BuiltinOperator).items() if number == value)


def _opcode_index(model, name, version):
    """Index of the operator code ``name``/``version``, added when the file has none."""
    schema = _schema()
    value = getattr(schema.BuiltinOperator, name)
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == value and code.version == version:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = value, min(value, 127), version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _drop_unused_opcodes(model):
    """Remove operator codes no op uses: a runtime refuses a file listing an op version it lacks."""
    used = sorted({op.opcodeIndex for subgraph in model.subgraphs for op in subgraph.operators})
    new_index = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[old] for old in used]
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            op.opcodeIndex = new_index[op.opcodeIndex]


def _quantization(scale, zero_point):
    schema = _schema()
    params = schema.QuantizationParametersT()
    params.scale = np.array([scale], np.float32)
    params.zeroPoint = np.array([zero_point], np.int64)
    return params


def _new_tensor(subgraph, like, name, tensor_type=None, quantization=None):
    schema = _schema()
    tensor = schema.TensorT()
    tensor.shape = np.array(like.shape, np.int32)
    tensor.shapeSignature = None if like.shapeSignature is None else np.array(like.shapeSignature, np.int32)
    tensor.type = like.type if tensor_type is None else tensor_type
    tensor.buffer = 0  # buffer 0 is the empty one: an activation, not a constant
    tensor.name = name.encode()
    tensor.quantization = quantization
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _operator(opcode_index, inputs, outputs, options_type=0, options=None):
    schema = _schema()
    op = schema.OperatorT()
    op.opcodeIndex = opcode_index
    op.inputs, op.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _retarget_signatures(model, kind, old, new):
    for signature in model.signatureDefs or []:
        for entry in getattr(signature, kind) or []:
            if entry.tensorIndex == old:
                entry.tensorIndex = new


def _producer(subgraph, tensor):
    return next((op for op in subgraph.operators if tensor in list(op.outputs)), None)


def _trailing_edge_ops(model, subgraph):
    """The QUANTIZE/DEQUANTIZE ops between the last compute op and the graph output, last first."""
    chain, tensor = [], subgraph.outputs[0]
    while (op := _producer(subgraph, tensor)) is not None and _op_name(model, op) in EDGE_OPS:
        chain.append(op)
        tensor = op.inputs[0]
    return chain, tensor


def output_op(content):
    """The op that computes the output scores (the edge QUANTIZE/DEQUANTIZE ops skipped), e.g. SOFTMAX."""
    model = _load(content)
    subgraph = model.subgraphs[0]
    _, tensor = _trailing_edge_ops(model, subgraph)
    op = _producer(subgraph, tensor)
    return None if op is None else _op_name(model, op)


def append_softmax(content):
    """``content`` with a SOFTMAX (beta 1) on its logits, so the file outputs probabilities.

    In a quantized graph the softmax is quantized too (int8 in, int8 out with scale 1/256 and
    zero point -128, as TFLite's kernel requires) and goes before the edge ops that convert the
    output, whose quantization is moved to the softmax's range.

    Raises:
        ValueError: not a TFLite classifier, or its output is a softmax already.
    """
    schema = _schema()
    model = _load(content)
    subgraph = model.subgraphs[0]
    chain, logits = _trailing_edge_ops(model, subgraph)
    producer = _producer(subgraph, logits)
    if producer is not None and _op_name(model, producer) == "SOFTMAX":
        raise ValueError("the graph already ends in a SOFTMAX (its output is probabilities)")
    source = subgraph.tensors[logits]
    kind = _type_name(source.type)
    if kind not in _SOFTMAX_VERSION:
        raise ValueError(f"cannot add a softmax to {kind} logits; expected one of {', '.join(_SOFTMAX_VERSION)}")
    quantization = _quantization(*_SOFTMAX_OUTPUT[kind]) if kind != "FLOAT32" else None
    probabilities = _new_tensor(subgraph, source, "probabilities" if not chain else "probabilities_quantized",
                                quantization=quantization)
    options = schema.SoftmaxOptionsT()
    options.beta = 1.0
    softmax = _operator(_opcode_index(model, "SOFTMAX", _SOFTMAX_VERSION[kind]), [logits], [probabilities],
                        schema.BuiltinOptions.SoftmaxOptions, options)
    if chain:
        first = chain[-1]  # the edge op that read the logits now reads the probabilities
        first.inputs = np.array([probabilities], np.int32)
        subgraph.operators.insert(subgraph.operators.index(first), softmax)
        for op in chain:  # moved to the softmax's fixed range: scale 1/256
            out = subgraph.tensors[op.outputs[0]]
            out_kind = _type_name(out.type)
            if out_kind in _SOFTMAX_OUTPUT:
                out.quantization = _quantization(*_SOFTMAX_OUTPUT[out_kind])
    else:
        subgraph.operators.insert(subgraph.operators.index(producer) + 1 if producer else 0, softmax)
        _retarget_signatures(model, "outputs", logits, probabilities)
        subgraph.outputs = np.array([probabilities], np.int32)
    return _save(model)


def int8_io_to_uint8(content):
    """``content`` with uint8 input and output where it has int8 ones (same scale, zero point + 128).

    A QUANTIZE op converts at each end: exact, since only the zero point moves. MediaPipe and
    the Task Library take uint8 or float32 tensors, not int8. Float I/O is left as it is.
    """
    schema = _schema()
    model = _load(content)
    subgraph = model.subgraphs[0]
    quantize = _opcode_index(model, "QUANTIZE", 1)
    (source,), (sink,) = subgraph.inputs, subgraph.outputs
    if subgraph.tensors[source].type == schema.TensorType.INT8:
        tensor = subgraph.tensors[source]
        scale, zero = float(tensor.quantization.scale[0]), int(tensor.quantization.zeroPoint[0])
        new = _new_tensor(subgraph, tensor, tensor.name.decode() + "_uint8", schema.TensorType.UINT8,
                          _quantization(scale, zero + 128))
        subgraph.operators.insert(0, _operator(quantize, [new], [source]))
        _retarget_signatures(model, "inputs", source, new)
        subgraph.inputs = np.array([new], np.int32)
    if subgraph.tensors[sink].type == schema.TensorType.INT8:
        tensor = subgraph.tensors[sink]
        scale, zero = float(tensor.quantization.scale[0]), int(tensor.quantization.zeroPoint[0])
        new = _new_tensor(subgraph, tensor, tensor.name.decode() + "_uint8", schema.TensorType.UINT8,
                          _quantization(scale, zero + 128))
        subgraph.operators.append(_operator(quantize, [sink], [new]))
        _retarget_signatures(model, "outputs", sink, new)
        subgraph.outputs = np.array([new], np.int32)
    return _save(model)


def io_types(content):
    """(input type, output type) of a classifier file, e.g. ("uint8", "uint8")."""
    model = _load(content)
    subgraph = model.subgraphs[0]
    return tuple(_type_name(subgraph.tensors[index].type).lower()
                 for index in (subgraph.inputs[0], subgraph.outputs[0]))


def float_dense_weights(content):
    """``content`` with the per-channel int8 weights of hybrid FULLY_CONNECTED ops stored as float32.

    TF >= 2.17's dynamic-range files quantize dense weights per channel (FULLY_CONNECTED version
    12), which runtimes before 2.17 refuse. Dequantizing those weights (exact: float = scale *
    (q - zero point) per row) gives a plain float FULLY_CONNECTED (version 1) that every runtime
    runs with the same outputs; it costs 3 bytes per dense weight (a classifier head is small).
    The converter's ``min_runtime_version`` entry, now too strict, is dropped.

    Returns:
        (new content, number of ops changed); ``content`` itself when none qualifies.
    """
    schema = _schema()
    model = _load(content)
    subgraph = model.subgraphs[0]
    changed = 0
    for op in subgraph.operators:
        if _op_name(model, op) != "FULLY_CONNECTED" or model.operatorCodes[op.opcodeIndex].version != 12:
            continue
        weights = subgraph.tensors[op.inputs[1]]
        activations = subgraph.tensors[op.inputs[0]]
        quant = weights.quantization
        if (weights.type != schema.TensorType.INT8 or activations.type != schema.TensorType.FLOAT32
                or quant is None or quant.scale is None or len(quant.scale) < 2):
            continue
        buffer = model.buffers[weights.buffer]
        rows = np.asarray(buffer.data, np.uint8).view(np.int8).reshape(tuple(weights.shape)).astype(np.float32)
        axis = int(quant.quantizedDimension)
        shape = [1] * rows.ndim
        shape[axis] = -1
        zero = np.asarray(quant.zeroPoint if quant.zeroPoint is not None else 0, np.float32).reshape(shape)
        real = (rows - zero) * np.asarray(quant.scale, np.float32).reshape(shape)
        buffer.data = np.frombuffer(real.astype(np.float32).tobytes(), np.uint8)
        weights.type, weights.quantization = schema.TensorType.FLOAT32, None
        op.opcodeIndex = _opcode_index(model, "FULLY_CONNECTED", 1)
        if op.builtinOptions is not None:
            op.builtinOptions.asymmetricQuantizeInputs = False
        changed += 1
    if not changed:
        return content, 0
    _drop_unused_opcodes(model)
    model.metadata = [entry for entry in model.metadata or [] if entry.name != b"min_runtime_version"]
    return _save(model), changed
