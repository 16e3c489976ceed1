"""Atomic file writes: a temporary file in the same folder, renamed into place."""

import contextlib
import gzip
import json
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, content):
    """Write ``content`` (bytes or str) to ``path`` so it is never seen half-written.

    The folder is created if needed; a failure leaves ``path`` as it was and no temporary file.
    The file gets the usual permissions (0666 minus the umask), not the 0600 of a temp file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".mobilecls-", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
        os.chmod(handle.name, 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise


def write_json(path, values):
    """``write_atomically`` of ``values`` as indented JSON."""
    write_atomically(path, json.dumps(values, indent=2))


def read_tflite(path):
    """The bytes of a .tflite file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a TFLite flatbuffer (no TFL3 identifier).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    with open(path, "rb") as handle:
        content = handle.read()
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError(f"{path} is not a TFLite file (no TFL3 identifier)")
    return content


def gzip_size(content):
    """Bytes of ``content`` after gzip -9 (what a file costs to download and store compressed)."""
    return len(gzip.compress(bytes(content), compresslevel=9, mtime=0))
