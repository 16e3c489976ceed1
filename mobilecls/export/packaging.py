"""A converted graph -> a .tflite file that app clients run as it is; and the same for old files.

What "as it is" means: MediaPipe Tasks' ImageClassifier and the TFLite Task Library need
standard TFLite Metadata (``mobilecls.export.metadata``), uint8 or float32 tensors (not int8), and
give meaningful scores only when the graph ends in a softmax. ``package`` makes a freshly
converted graph so; ``upgrade_file`` makes an existing mobilecls file so (its Keras model may be
gone), with the same edits, and checks that top-1 does not change.
"""

import os

import numpy as np

from mobilecls.errors import RunFailed
from mobilecls.export import metadata, tflite_edit
from mobilecls.files import read_tflite, write_atomically

DEFAULT_DESCRIPTION = "Image classifier: RGB image in, one score per class out."


def general_info(model_name, mode, num_classes, input_size, author=None, license=None):
    """The standard metadata's name / description / version / author / licence for a mobilecls file."""
    from importlib import metadata as package_metadata

    try:
        version = f"mobilecls {package_metadata.version('mobilecls')}"
    except package_metadata.PackageNotFoundError:
        version = None
    size = "x".join(str(int(side)) for side in input_size)
    return {"name": model_name, "description": f"{model_name} ({mode}), {size} RGB input, {num_classes} classes. "
            + DEFAULT_DESCRIPTION, "version": version, "author": author, "license": license}


def package(content, class_names, general, provenance, softmax=True, uint8_io=True):
    """``content`` (a converted classifier ending in logits) made ready for app clients.

    Args:
        content: .tflite bytes from the converter.
        class_names: the output's class names, in order.
        general: name / description / version / author / license for the metadata.
        provenance: JSON-ready dict for the ``mobilecls`` metadata buffer.
        softmax: append a softmax so the output is probabilities (else the logits stay).
        uint8_io: turn int8 input/output into uint8 (what MediaPipe and the Task Library take).

    Returns:
        The new .tflite bytes, with standard metadata.
    """
    if softmax:
        content = tflite_edit.append_softmax(content)
    if uint8_io:
        content = tflite_edit.int8_io_to_uint8(content)
    return metadata.write_metadata(content, class_names, softmax, general, provenance)


def top1_kept(before, after):
    """Per image: is the class ``before`` ranks first still ranked first (a tie counts) by ``after``?

    An int8 softmax has 256 levels, so two close classes can get the same probability: then the
    original winner is still a winner, though argmax may name the other one.
    """
    winners = before.argmax(axis=1)
    return after[np.arange(len(after)), winners] >= after.max(axis=1)


def upgrade_file(path, out=None, class_names=None, images=None, softmax=True, uint8_io=True, author=None,
                 license=None):
    """Give an existing mobilecls .tflite file standard metadata, a softmax and uint8 I/O.

    Steps already done are skipped (a file that ends in a softmax keeps it), so running it twice
    changes nothing but the metadata. Per-channel hybrid dense weights (FULLY_CONNECTED version
    12, TF >= 2.17 dynamic-range files) are stored as float so runtimes before 2.17 load the file.
    Top-1 is checked on ``images`` (default: 64 seeded random pixel images) before the file is
    replaced: every image keeps its top-1 class (a tie counts), or 99.9 % of them when dense
    weights were made float; the write is atomic.

    Args:
        path: the .tflite file.
        out: where to write (default: ``path`` itself, replaced atomically).
        class_names: the class names; default those stored in the file's metadata.
        images: (N, H, W, 3) pixels 0..255 to check top-1 on.
        softmax, uint8_io: as in ``package``.
        author, license: for the standard metadata; default what the file has.

    Returns:
        dict: path, ops added (softmax, uint8_io), io types, top-1 agreement, min runtime.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a TFLite classifier, no class names, or top-1 changed on some image.
    """
    from mobilecls.export.convert import check_graph, inspect_tflite

    original = read_tflite(path)
    try:
        known = metadata.read_metadata(original) or {}
        names = list(class_names or known.get("class_names") or [])
        if not names:
            raise ValueError("has no class names in its metadata; pass them (--classes FILE.json)")
        ends_in_softmax = tflite_edit.output_op(original) == "SOFTMAX"
        content, dense_changed = tflite_edit.float_dense_weights(original)  # runtimes < 2.17 (dynamic files)
        if softmax and not ends_in_softmax:
            content = tflite_edit.append_softmax(content)
        types = tflite_edit.io_types(content)
        if uint8_io and "int8" in types:
            content = tflite_edit.int8_io_to_uint8(content)
        report = inspect_tflite(content)
        mode = known.get("mode")
        check_graph(report, mode)
        interpreter_shape = report.input_shape
        provenance = {key: value for key, value in known.items() if key in
                      ("mode", "qat", "source", "producer", "io", "input_size", "input", "range_quantile",
                       "mirror_average", "shift_average")}
        provenance.update({"io": report.input_dtype, "upgraded_from": os.path.basename(path)})
        provenance.pop("input", None)
        general = general_info(known.get("name") or os.path.splitext(os.path.basename(path))[0], mode or "unknown",
                               len(names), interpreter_shape[1:3], author or known.get("author"),
                               license or known.get("license"))
        content = metadata.write_metadata(content, names, softmax or ends_in_softmax, general, provenance)
    except (ValueError, RunFailed) as error:  # a file that breaks its mode's promises is bad input here
        raise ValueError(f"{path}: {error}") from None
    if images is None:
        images = np.random.default_rng(0).integers(0, 256, (64, *interpreter_shape[1:]), dtype=np.uint8)
    from mobilecls.runtime import predict_tflite

    kept = top1_kept(predict_tflite(original, images), predict_tflite(content, images))
    agreement = float(np.mean(kept))
    # The softmax and I/O edits are exact (every top-1 kept); float dense weights are more exact
    # than the hybrid kernel's int8 activations, so an image at a near-tie may flip (1 in 1,000 allowed).
    required = 0.999 if dense_changed else 1.0
    if agreement < required:
        raise ValueError(f"{path}: the upgraded file changes top-1 on {int(np.sum(~kept))} of "
                         f"{len(images)} images (at most {1 - required:.1%} allowed); not written")
    write_atomically(out or path, content)
    return {"path": os.fspath(out or path), "softmax_added": bool(softmax and not ends_in_softmax),
            "float_dense_ops": dense_changed,
            "io": [report.input_dtype, report.output_dtype], "top1_agreement": agreement, "images": len(images),
            "partitions": report.partitions, "min_runtime_version": metadata.min_runtime_version(content),
            "size_bytes": len(content)}
