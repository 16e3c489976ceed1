"""A run folder's manifest (``state.json``): what a resumed `fit` may trust.

Every file of a run is written atomically (a temporary file renamed into place), and after each
epoch ``state.json`` is written last, naming the epochs done, the history rows, the best epoch
and the SHA-256 of every file resuming needs. A kill at any moment therefore leaves either the
previous manifest with its files intact, or the new one: files of an unfinished epoch are not in
the manifest and are removed when the run resumes, and ``history.csv`` is rewritten from it.
"""

import csv
import io
import os

from mobilecls.files import remove_temporaries, sha256, write_atomically, write_json

MANIFEST = "state.json"
HISTORY = "history.csv"


def new_state(plan=None):
    """The manifest of a run that has not finished an epoch yet."""
    return {"epochs_done": 0, "history": [], "best": None, "files": {}, "epoch_seconds": [], "plan": plan,
            "finished": False}


def read(folder):
    """The manifest of ``folder`` (every run folder has one from the moment it exists).

    Raises:
        ValueError: no manifest (a run of an older mobilecls, whose checkpoints cannot be
            resumed exactly and must not be deleted), or one that is not JSON.
    """
    import json

    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise ValueError(f"cannot resume {folder}: it has no {MANIFEST} (a run made by mobilecls before "
                         "resumable manifests); finish it with that version or start a new run")
    with open(path, encoding="utf-8") as handle:
        try:
            state = json.load(handle)
        except ValueError:
            raise ValueError(f"{path} is not valid JSON; the run folder {folder} was changed by hand") from None
    missing = set(new_state()) - set(state)
    if missing:
        raise ValueError(f"{path} lacks {', '.join(sorted(missing))}; not a manifest written by mobilecls fit")
    return state


def commit(folder, state):
    """Write ``history.csv`` and then the manifest (the commit point of an epoch)."""
    write_atomically(os.path.join(folder, HISTORY), history_csv(state["history"]))
    write_json(os.path.join(folder, MANIFEST), state)


def record(folder, state, relative_path):
    """Note the checksum of ``folder/relative_path`` in ``state`` (written with the next commit)."""
    state["files"][relative_path] = sha256(os.path.join(folder, relative_path))


def history_csv(rows):
    """The history as CSV: ``epoch`` (from 0) first, then the logged values in name order."""
    if not rows:
        return ""
    keys = ["epoch", *sorted(key for key in rows[0] if key != "epoch")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def damaged_files(folder, state):
    """Files named in the manifest that are missing or differ from their recorded checksum."""
    return sorted(path for path, digest in state["files"].items()
                  if not os.path.isfile(os.path.join(folder, path)) or sha256(os.path.join(folder, path)) != digest)


def remove_unrecorded(folder, state, subfolders=("checkpoints", "state")):
    """Delete temporaries and the files of an epoch that was not committed, so they cannot mislead."""
    remove_temporaries(folder)
    for subfolder in subfolders:
        path = os.path.join(folder, subfolder)
        if not os.path.isdir(path):
            continue
        remove_temporaries(path)
        for name in os.listdir(path):
            if f"{subfolder}/{name}" not in state["files"]:
                os.unlink(os.path.join(path, name))
