"""Standard TFLite Metadata in mobilecls files, as MediaPipe Tasks and the TFLite Task Library read it.

A file carries two metadata buffers:
- ``TFLITE_METADATA``: the TFLite Metadata schema (``M001``): name, description, version,
  author, licence; the input as an RGB image with NormalizationOptions and its value range; the
  output as a classification tensor with the class names in an associated ``labels.txt``
  (TENSOR_AXIS_LABELS) and, when the output is a softmax, the range [0, 1] of probabilities. The
  labels file is packed, as the metadata populator does it, in a zip archive appended to the
  flatbuffer. Everything a client needs is here.
- ``mobilecls``: provenance only (mode, I/O types, QAT, source file, producer), JSON.

Written with the ``flatbuffers`` package and the schema's generated code
(``mobilecls.export._metadata_schema_fb``); checked against MediaPipe's own reader and ImageClassifier
in ``tests/test_clients.py``.
"""

import io
import json
import struct
import zipfile

import numpy as np

from mobilecls.export import _metadata_schema_fb as fb

STANDARD_NAME = "TFLITE_METADATA"
PROVENANCE_NAME = "mobilecls"
LABELS_FILE = "labels.txt"
_IDENTIFIER = b"M001"
# The oldest metadata parser that reads every field written here (none newer than the schema's
# first release); MediaPipe's populator computes the same for these files (tested).
MIN_PARSER_VERSION = "1.0.0"
_PIXEL_RANGE = (0.0, 255.0)


def input_contract(input_type):
    """(mean, std, description) of the input: value = (pixel - mean) / std, pixels RGB 0..255.

    float32 and uint8 inputs take the pixels as they are; an int8 input takes pixel - 128
    (its quantization is scale 1, zero point -128, so the stored value is the pixel shifted).
    """
    if input_type == "int8":
        return 128.0, 1.0, "RGB image, int8: value = pixel - 128 (pixels 0..255)"
    if input_type in ("uint8", "float32"):
        return 0.0, 1.0, f"RGB image, {input_type}: value = pixel (0..255, not normalised)"
    raise ValueError(f"input type must be float32, uint8 or int8, got {input_type!r}")


def _model_object(content):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(content))


def _check_tflite(content):
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError("not a TFLite file (no TFL3 identifier)")


def _tensor_type_name(model, index):
    from tensorflow.lite.python import schema_py_generated as schema

    value = model.subgraphs[0].tensors[index].type
    return next(name for name, number in vars(schema.TensorType).items() if number == value).lower()


def _metadata_buffer(class_names, input_type, probabilities, general):
    mean, std, input_description = input_contract(input_type)
    image = fb.TensorMetadataT()
    image.name, image.description = "image", input_description
    image.content = fb.ContentT()
    image.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    image.content.contentProperties = fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = fb.ColorSpaceType.RGB
    normalization = fb.ProcessUnitT()
    normalization.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    normalization.options = fb.NormalizationOptionsT()
    normalization.options.mean, normalization.options.std = [mean], [std]
    image.processUnits = [normalization]
    image.stats = fb.StatsT()  # the range of the values the tensor takes
    image.stats.min = [(_PIXEL_RANGE[0] - mean) / std]
    image.stats.max = [(_PIXEL_RANGE[1] - mean) / std]

    scores = fb.TensorMetadataT()
    scores.name = "probability" if probabilities else "logits"
    scores.description = (f"Probabilities of the {len(class_names)} classes (softmax, sum 1)" if probabilities
                          else f"Logits of the {len(class_names)} classes (no softmax: not probabilities)")
    scores.content = fb.ContentT()
    scores.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    scores.content.contentProperties = fb.FeaturePropertiesT()
    scores.stats = fb.StatsT()
    if probabilities:
        scores.stats.min, scores.stats.max = [0.0], [1.0]
    labels = fb.AssociatedFileT()
    labels.name, labels.description = LABELS_FILE, "Class names, one per line, in output order"
    labels.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    scores.associatedFiles = [labels]

    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], [scores]
    model = fb.ModelMetadataT()
    model.name, model.description = general.get("name"), general.get("description")
    model.version, model.author, model.license = general.get("version"), general.get("author"), general.get("license")
    model.subgraphMetadata = [subgraph]
    model.minParserVersion = MIN_PARSER_VERSION
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), _IDENTIFIER)
    return bytes(builder.Output())


def write_metadata(content, class_names, probabilities, general, provenance=None):
    """``content`` with standard TFLite Metadata (and the ``mobilecls`` provenance buffer).

    Any metadata and labels the file had are replaced; other metadata (the converter's
    ``min_runtime_version``) is kept.

    Args:
        content: a .tflite classifier: one RGB image input (float32, uint8 or int8), one score output.
        class_names: the names of the outputs, in order.
        probabilities: whether the output is a softmax (probabilities) rather than logits.
        general: dict with name, description, version, author, license (None where unknown).
        provenance: JSON-ready dict for the ``mobilecls`` buffer (mode, io, source, ...).

    Raises:
        ValueError: not a TFLite file, or the class names do not match the output.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    content = bytes(content)
    _check_tflite(content)
    model = _model_object(content)  # drops an appended zip of old associated files
    subgraph = model.subgraphs[0]
    outputs = int(subgraph.tensors[subgraph.outputs[0]].shape[-1])
    if len(class_names) != outputs or any(not name or "\n" in name for name in class_names):
        raise ValueError(f"class_names must be {outputs} non-empty one-line names (the model's outputs), "
                         f"got {len(class_names)}")
    input_type = _tensor_type_name(model, subgraph.inputs[0])
    entries = {STANDARD_NAME.encode(): _metadata_buffer(class_names, input_type, probabilities, general)}
    if provenance is not None:
        entries[PROVENANCE_NAME.encode()] = json.dumps(provenance, sort_keys=True).encode("utf-8")
    kept = []
    for entry in model.metadata or []:
        if entry.name in entries:
            model.buffers[entry.buffer].data = None  # emptied, not removed: buffer indices must not move
        else:
            kept.append(entry)
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        kept.append(entry)
    model.metadata = kept
    packed = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    with zipfile.ZipFile(packed, "a") as archive:  # appended after the flatbuffer, as the populator does
        archive.writestr(LABELS_FILE, "\n".join(class_names))
    return packed.getvalue()


def _metadata_entries(content):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(content, 0)
    entries = {}
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        entries[entry.Name().decode()] = bytes(model.Buffers(entry.Buffer()).DataAsNumpy())
    return entries


def read_metadata(content):
    """What a .tflite file says about itself, or None when it carries no metadata.

    From the standard metadata: ``class_names`` (its labels file), ``probabilities`` (the output
    is a softmax), ``name``, ``description``, ``version``, ``author``, ``license``,
    ``normalization`` ({"mean", "std"}), ``min_parser_version``; merged with the ``mobilecls``
    provenance (``mode``, ``io``, ``qat``, ``source``, ...). Files written before the standard
    metadata have the class names in the ``mobilecls`` buffer only; they are read from there.

    Raises:
        ValueError: ``content`` is not a TFLite flatbuffer, or its labels file is missing.
    """
    content = bytes(content)
    _check_tflite(content)
    try:
        entries = _metadata_entries(content)
        provenance = json.loads(entries[PROVENANCE_NAME].decode("utf-8")) if PROVENANCE_NAME in entries else None
        if STANDARD_NAME not in entries:
            return provenance
        buffer = entries[STANDARD_NAME]
        if buffer[4:8] != _IDENTIFIER:
            raise ValueError(f"the {STANDARD_NAME} buffer is not TFLite Metadata (no M001 identifier)")
        meta = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(buffer, 0))
    except (struct.error, IndexError, UnicodeDecodeError, json.JSONDecodeError):  # offsets past the end: cut short
        raise ValueError("truncated or damaged TFLite file (its tables point past the end)") from None
    (subgraph,) = meta.subgraphMetadata
    (image,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    label_file = next((f.name.decode() for f in scores.associatedFiles or []
                       if f.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS), None)
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = archive.read(label_file).decode("utf-8").split("\n")
    except (zipfile.BadZipFile, KeyError, TypeError):
        raise ValueError(f"the metadata names a labels file {label_file!r} that the file does not pack") from None
    normalization = next((unit.options for unit in image.processUnits or []
                          if unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions), None)
    decode = lambda value: value.decode("utf-8") if isinstance(value, bytes) else value  # noqa: E731
    result = dict(provenance or {})
    result.update({
        "name": decode(meta.name), "description": decode(meta.description), "version": decode(meta.version),
        "author": decode(meta.author), "license": decode(meta.license),
        "min_parser_version": decode(meta.minParserVersion), "class_names": names,
        "probabilities": bool(scores.stats is not None and scores.stats.max is not None
                              and list(scores.stats.max) == [1.0]),
        "normalization": None if normalization is None else {"mean": [float(v) for v in normalization.mean],
                                                             "std": [float(v) for v in normalization.std]},
    })
    return result


def min_runtime_version(content):
    """The oldest TFLite runtime the converter says runs the file ("min_runtime_version"), or None."""
    value = _metadata_entries(bytes(content)).get("min_runtime_version")
    return None if value is None else value.rstrip(b"\0 ").decode("ascii")
