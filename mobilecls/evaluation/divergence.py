"""Where two models part: the first layer whose output differs, comparing intermediate tensors.

Keras models give every layer's output; .tflite files give every tensor when run without
delegates (XNNPACK fuses ops and keeps its intermediates to itself). Tensors are matched by
the Keras layer that produced them (``convert.layer_of_tensor``; the model's output is
"output"), so a QAT Keras model, its int8 file and the float model it came from can all be
compared with one another.
"""

import numpy as np

# Relative RMS error above which a layer counts as diverging: int8 rounding alone stays well below.
TOLERANCE = 0.1


def keras_layer_outputs(model, images):
    """{layer name: outputs (N, ...)} in the model's layer order (tfmot's "quant_" prefix dropped;
    the layer giving the model's output is "output")."""
    from mobilecls._tf import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = probe.predict(images.astype(np.float32), batch_size=len(images), verbose=0)
    if len(layers) == 1:
        outputs = [outputs]
    last = model.outputs[0]._keras_history.layer
    return {("output" if layer is last else layer.name.removeprefix("quant_")): np.asarray(value, np.float32)
            for layer, value in zip(layers, outputs, strict=True)}


def tflite_layer_outputs(content, images):
    """{layer name: dequantized outputs (N, ...)} in execution order, from an undelegated interpreter.

    When a layer became several ops, its last op's output is its output. A file that ends in
    the softmax mobilecls appends (and the uint8 conversion after it) has its logits as "output",
    comparable with a Keras model's output.
    """
    from mobilecls._tf import Interpreter, OpResolverType
    from mobilecls.export.convert import layer_of_tensor
    from mobilecls.runtime import quantize_input

    interpreter = Interpreter(model_content=bytes(content), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    sinks = {detail["index"] for detail in interpreter.get_output_details()}
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    keys, appended = {}, set()
    for op in interpreter._get_ops_details():
        inputs = [int(index) for index in op["inputs"]]
        if op["op_name"] == "SOFTMAX" or (op["op_name"] in ("QUANTIZE", "DEQUANTIZE") and inputs[0] in appended):
            appended.update(int(index) for index in op["outputs"])
            if op["op_name"] == "SOFTMAX":
                keys["output"] = inputs[0]
            continue
        for index in (int(index) for index in op["outputs"]):
            key = "output" if index in sinks else layer_of_tensor(tensors[index]["name"])
            if key is not None:
                keys[key] = index  # a later op of the same layer replaces an earlier one
    collected = {key: [] for key in keys}
    for image in images:
        interpreter.set_tensor(source["index"], quantize_input(image[None].astype(np.float32), source))
        interpreter.invoke()
        for key, index in keys.items():
            scale, zero = tensors[index]["quantization"]
            value = interpreter.get_tensor(index).astype(np.float32)
            collected[key].append((value - zero) * scale if scale else value)
    return {key: np.concatenate(values) for key, values in collected.items()}


def relative_error(reference, other):
    """RMS of the difference over RMS of ``reference`` (0 when equal)."""
    scale = float(np.sqrt(np.mean(np.square(reference))))
    difference = float(np.sqrt(np.mean(np.square(reference - other))))
    return difference / scale if scale > 0 else difference


def first_divergence(first, second, tolerance=TOLERANCE):
    """Compare two {layer: outputs} maps layer by layer, in ``first``'s order.

    Returns:
        A dict: layers (layer and relative error for every layer both hold with the same shape)
        and first_divergent_layer (the first above ``tolerance``, or None).
    """
    rows = [{"layer": name, "relative_error": relative_error(values, second[name])}
            for name, values in first.items() if name in second and second[name].shape == values.shape]
    diverging = next((row for row in rows if row["relative_error"] > tolerance), None)
    return {"layers": rows, "tolerance": tolerance,
            "first_divergent_layer": diverging["layer"] if diverging else None,
            "first_divergent_error": diverging["relative_error"] if diverging else None}
