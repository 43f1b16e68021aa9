"""Result files: atomic writers, and readers that name the file and the way out when it is damaged.

Writers write to a temporary file beside the target, then rename: a job killed half way leaves at most a
``.tmp-*`` file, never a half file under the final name that a later step (or Snakemake) would take as
complete; a write that fails for the folder's sake (read-only, immutable, full) raises
:class:`ResultWriteError`, which names the file and what to check. Files get the usual mode (``0666``
less the umask, as ``open()`` gives), so collaborators on a shared cluster can read results.

Readers (:func:`read_json`, :func:`read_npz`, :func:`torch_load`) turn a truncated or corrupt file into a
:class:`CorruptFileError` that names the path and what to delete so that the next ``snakemake`` run
rebuilds it (:func:`way_out`).

The manifest: every file written under a results folder (``results/<name>/``: the folder holding ``runs/``,
``subsets/`` or ``emm/``) gets a record of its size and SHA-256, taken from the bytes just before the
rename, in a hidden sidecar beside it (``.<file name>.sha256``, :func:`record_path`), which
``python -m diffmem verify`` (:mod:`diffmem.results.verify`) checks. One sidecar per file rather than one shared
``manifest.jsonl``: each file has exactly one writer (the job that owns it), so a sidecar is written by
that job alone, atomically (temporary file + rename, atomic on NFS and Lustre too), with no lock and no
shared file: concurrent jobs on different nodes cannot interleave, lose or tear records (``O_APPEND`` is
not atomic on NFS), deleting a folder deletes its records, and a rewrite replaces the record instead of
appending a second one. The old record goes first, the file's rename next, the new record last: a job
killed in between leaves a file without a record (verify checks its structure) or a record without a
file (verify reports it missing), never a record that wrongly calls a good file corrupt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import secrets
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class CorruptFileError(ValueError):
    """A result file is truncated or corrupt; the message names it and what to delete to rebuild it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        super().__init__(f"{self.path} is truncated or corrupt ({reason}). {way_out(self.path)}")


def way_out(path: str | os.PathLike) -> str:
    """What to delete so that the next ``snakemake`` run rebuilds a damaged file (from its name and the
    results layout, see :mod:`diffmem.plan.layout`)."""
    path = Path(path)
    rerun = "then run snakemake again"
    if path.name == "state.pt":
        return (
            f"It is the resumable state of an unfinished training: delete it and {rerun}; this run's "
            "training restarts from step 0 (same result, more time)."
        )
    if path.name.startswith("snapshot-") and path.parent.name == "train":
        summary = path.parent / "train.json"
        return (
            "Snapshots are not declared outputs, so deleting this file alone reruns nothing: delete the whole "
            f"training folder {path.parent} (its declared output is {summary}) and {rerun}; this run retrains "
            f"(if Snakemake says 'Nothing to be done', ask for it: snakemake --cores 1 {summary})."
        )
    if path.name == "train.json" and path.parent.name == "train":
        return (
            f"Delete the training folder {path.parent} and {rerun}; this run retrains "
            f"(if Snakemake says 'Nothing to be done', ask for it: snakemake --cores 1 {path})."
        )
    return (
        f"Delete it and {rerun}: the step that wrote it runs again (if Snakemake says 'Nothing to be done', "
        f"ask for the file: snakemake --cores 1 {path})."
    )


def _temp_beside(path: Path, suffix: str) -> Path:
    """Create an empty, unique temporary file next to ``path`` with the mode ``open()`` would give
    (``mkstemp`` makes 0600, and that mode would survive the rename)."""
    for _ in range(1000):
        tmp = path.parent / f".tmp-{path.name}-{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


RECORD_SUFFIX = ".sha256"
# Folders that make their parent a results folder (``results/<name>/``, see diffmem.plan.layout), and the ones
# in it whose files are written by Snakemake itself or hold times (never recorded, never verified).
RESULTS_MARKERS = ("runs", "subsets", "emm")
UNRECORDED_FOLDERS = ("logs", "benchmarks", ".snakemake", ".gpu-locks")


def record_path(path: str | os.PathLike) -> Path:
    """The manifest record (size and SHA-256 at writing) of a result file: ``.<name>.sha256`` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}{RECORD_SUFFIX}"


def is_record(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return name.startswith(".") and name.endswith(RECORD_SUFFIX) and not name.startswith(".tmp-")


def recorded_file(record: str | os.PathLike) -> Path:
    """The result file a record describes (the inverse of :func:`record_path`)."""
    record = Path(record)
    return record.parent / record.name[1 : -len(RECORD_SUFFIX)]


def results_root(path: str | os.PathLike) -> Path | None:
    """The results folder (``results/<name>/``) a file lies in: the nearest folder above it that holds
    ``runs/``, ``subsets/`` or ``emm/``; None for files elsewhere (docs/, tests' temporary files)."""
    path = Path(path).absolute()
    for folder in path.parents:
        if any((folder / m).is_dir() for m in RESULTS_MARKERS):
            rel = path.relative_to(folder).parts
            return None if rel[0] in UNRECORDED_FOLDERS else folder
    return None


def file_digest(path: str | os.PathLike) -> dict[str, Any]:
    """Size in bytes and SHA-256 (hex) of a file, as a manifest record holds them."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def read_record(record: str | os.PathLike) -> dict[str, Any] | None:
    """A record's {size, sha256}; None when it is unreadable (then the file counts as unrecorded)."""
    try:
        rec = json.loads(Path(record).read_text())
        return rec if isinstance(rec.get("size"), int) and isinstance(rec.get("sha256"), str) else None
    except (OSError, ValueError, AttributeError):
        return None


def _write_record(record: Path, digest: dict[str, Any]) -> None:
    tmp = _temp_beside(record, "")
    try:
        tmp.write_text(json.dumps(digest) + "\n")
        os.replace(tmp, record)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class ResultWriteError(OSError):
    """A result file could not be written (a read-only, immutable or full folder); the message names the file
    and what to check. An :class:`OSError`, with the errno of the failure."""

    def __init__(self, path: str | os.PathLike, err: OSError):
        self.path = Path(path)
        super().__init__(not_writable(self.path, err))
        self.errno, self.strerror, self.filename = err.errno, err.strerror, str(self.path)

    def __str__(self) -> str:
        return self.args[0]


def not_writable(path: str | os.PathLike, err: OSError) -> str:
    """Why a file could not be written, and what to look at (the message of :class:`ResultWriteError`)."""
    folder = Path(path).parent
    return (
        f"cannot write {path}: {err.strerror or err} (errno {err.errno}). Is its folder (or the file) read-only, "
        f"immutable or full? Check with: ls -ld {folder}; lsattr -d {folder}; df -h {folder} (chattr -i undoes an "
        "immutable flag), then run snakemake again"
    )


@contextlib.contextmanager
def _naming(path: Path):
    """Turn an OSError of writing ``path`` (about a file beside it: its temporary file, its record; or about its
    folder or one above) into a :class:`ResultWriteError`; an error about another file (one the caller reads
    while it writes) passes unchanged."""
    try:
        yield
    except ResultWriteError:
        raise
    except OSError as err:
        name = err.filename
        about = Path(os.fsdecode(name)).absolute() if isinstance(name, (str, bytes, os.PathLike)) else None
        target = path.absolute()
        if about is not None and about.parent != target.parent and about not in target.parents:
            raise
        raise ResultWriteError(path, err) from err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success (and record its
    size and SHA-256 in the manifest when it lies in a results folder). A write that fails for the folder's
    sake (read-only, immutable, full) raises :class:`ResultWriteError` naming ``path``."""
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(path, suffix if suffix is not None else path.suffix)
    try:
        with _naming(path):
            yield Path(tmp)
            record = record_path(path) if results_root(path) is not None else None
            digest = file_digest(tmp) if record is not None else None
            if record is not None:
                record.unlink(missing_ok=True)  # never a stale record over the new bytes
            os.replace(tmp, path)
            if record is not None:
                _write_record(record, digest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _default(o: Any):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a truncated or corrupt one raises :class:`CorruptFileError` naming it."""
    text = Path(path).read_bytes()
    try:
        return json.loads(text.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptFileError(path, f"not valid JSON: {e}") from None


def write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Save arrays with ``np.savez_compressed``, atomically (byte-reproducible: its zip entries carry a
    fixed 1980 date, not the time of writing; tests/package/test_io.py checks it)."""
    import numpy as np

    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (read at once, no pickle); a truncated or corrupt file raises
    :class:`CorruptFileError` naming it."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as e:
        raise CorruptFileError(path, f"not a readable npz: {type(e).__name__}: {e}") from None


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` a state dict (tensors, numbers, strings only), atomically."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # through a file object: torch names the archive's root folder after a *path* (here the random
        # temporary name), which would make identical checkpoints differ byte for byte
        torch.save(obj, fh)


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint written by :func:`torch_save` without unpickling code; a truncated or corrupt
    file (or one holding code) raises :class:`CorruptFileError` naming it."""
    import torch

    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        if isinstance(e, torch.OutOfMemoryError) or "CUDA" in str(e):
            raise  # the file is fine, the device is not
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CorruptFileError(path, f"torch.load: {reason}") from None
