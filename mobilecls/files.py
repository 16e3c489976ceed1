"""Atomic file writes: a temporary file in the same folder, renamed into place; the cache folder."""

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

TEMPORARY_PREFIX = ".mobilecls-"
DEFAULT_CACHE = Path.home() / ".cache" / "mobilecls"


def cache_folder():
    """$MOBILECLS_CACHE (default ~/.cache/mobilecls), or None when it says off ('', off, 0, none)."""
    setting = os.environ.get("MOBILECLS_CACHE")
    if setting is not None and setting.strip().lower() in ("", "off", "0", "none"):
        return None
    return Path(setting) if setting else DEFAULT_CACHE


def _before_rename(temporary, path):
    """Called with every complete temporary file just before it replaces ``path``.

    Does nothing; the fault-injection tests replace it to kill the process at that moment.
    """


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
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=TEMPORARY_PREFIX, suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
        os.chmod(handle.name, 0o666 & ~_umask())
        _before_rename(handle.name, path)
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise


@contextlib.contextmanager
def replacing(path):
    """A temporary path beside ``path`` (same suffix) that replaces ``path`` when the block succeeds.

    For writers that insist on a file name rather than bytes (Keras ``model.save`` needs a
    ``.keras`` suffix, ``save_weights`` ``.weights.h5``, matplotlib picks the format from it).
    A failure or a kill inside the block leaves ``path`` as it was; a failure removes the
    temporary file (a kill leaves a hidden ``.mobilecls-*`` file that ``remove_temporaries`` clears).
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = name[name.index("."):] if "." in name else ""
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX, suffix=suffix)
    os.close(handle)
    os.unlink(temporary)  # writers such as h5py refuse or append to an existing file
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        _before_rename(temporary, path)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def staging_folder(path):
    """A temporary folder beside ``path`` that becomes ``path`` when the block succeeds.

    ``path`` must be absent or an empty folder. A failure removes the staging folder, so
    ``path`` is either complete or untouched; a staging folder of ``path`` left by a killed
    process is removed first.
    """
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    for stale in os.listdir(parent):  # left by an earlier attempt that was killed while staging
        if stale.startswith(f".{name}{TEMPORARY_PREFIX}"):
            shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{name}{TEMPORARY_PREFIX}")
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        _before_rename(staging, path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_temporaries(folder):
    """Delete the temporary files a killed writer left in ``folder`` (not recursive)."""
    for name in os.listdir(folder):
        if name.startswith(TEMPORARY_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))


def sha256(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_file(path, option):
    """Refuse an output file path that cannot be written, before any work is done.

    Raises:
        ValueError: ``path`` is a folder, or its folder is a file or not writable.
    """
    if os.path.isdir(path):
        raise ValueError(f"{option} {path} is a folder; give a file path")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # write_atomically creates missing folders
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option} {path}: {parent} is not writable")


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
