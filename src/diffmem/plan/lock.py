"""One writer per results tree: an exclusive lock on ``results/<name>/.diffmem.lock``, whatever the working
directory.

Snakemake locks its working directory (``.snakemake/locks``), not the results: two processes started from
different directories whose ``results:`` name one folder would each remove what the other is writing (a job's
outputs are removed before it runs, incomplete ones when Snakemake starts). The workflow's main process takes
this lock while it reads the workflow (``workflow/rules/common.smk``), before any job runs, and holds it until
it exits, however it exits: it is an ``flock`` on an open file, which the kernel drops with the process (a
killed Snakemake leaves no stale lock; the file stays, and holds who took it last, for the next message). A
dry run (``-n``) and the Snakemake inside each cluster job neither take nor wait for it. ``python -m diffmem
verify --fix`` takes it too (it removes files). On NFS, Linux carries an ``flock`` to the server as a POSIX
lock, so processes on other nodes see it; Lustre needs its ``flock`` mount option.

Taking the lock also tries a write into the folder and its top-level folders, so that a read-only or
immutable (``chattr +i``) results tree is named before Snakemake fails inside on a file of it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import tempfile
from pathlib import Path

from diffmem.io import not_writable

try:
    import fcntl
except ImportError:  # not on Windows: no lock there
    fcntl = None

LOCK_FILE = ".diffmem.lock"
_held: dict[str, int] = {}  # resolved results folder -> the open file holding its lock


class ResultsLockError(RuntimeError):
    """The results folder is in use by another process, or cannot be written; the message says which."""


def lock_path(results: str | os.PathLike) -> Path:
    """The lock file of a results folder."""
    return Path(results) / LOCK_FILE


def _probe(folder: Path) -> None:
    """Create and remove a temporary file in ``folder`` (named like io's temporary files: a probe left by a
    killed process is a stale file to verify)."""
    fd, name = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
    os.close(fd)
    os.unlink(name)


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "a process that did not say who it is"


def hold(results: str | os.PathLike) -> Path:
    """Take the results folder's lock for the rest of this process (a second call is a no-op); raise
    :class:`ResultsLockError` naming the holder when another process has it, or the file when the folder
    cannot be written. Returns the lock file."""
    results = Path(results)
    path = lock_path(results)
    key = str(results.resolve())
    if key in _held:
        return path
    try:
        results.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by the jobs (PEP 446)
    except OSError as err:
        raise ResultsLockError(not_writable(path, err)) from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ResultsLockError(
            f"{results}/ is in use by another process ({_holder(path)}): two workflows writing one results "
            "folder remove each other's files. Wait until it ends (or stop it), then run again; a dry run (-n) "
            f"needs no lock. (The lock is an flock on {path}, dropped when its process ends.)"
        ) from None
    except OSError as err:
        os.close(fd)
        why = err.strerror or err
        raise ResultsLockError(f"cannot lock {path}: {why} (on NFS, is the lock daemon running?)") from None
    for folder in [results, *sorted(p for p in results.iterdir() if p.is_dir() and p.name != ".snakemake")]:
        try:
            _probe(folder)
        except OSError as err:
            os.close(fd)
            raise ResultsLockError(not_writable(folder / "<a new file>", err)) from None
    try:
        when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        about = f"pid {os.getpid()} on {socket.gethostname()}, working directory {os.getcwd()}, since {when}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, about.encode(), 0)
    except OSError as err:
        os.close(fd)
        raise ResultsLockError(not_writable(path, err)) from None
    _held[key] = fd
    return path


def release(results: str | os.PathLike) -> None:
    """Drop this process's lock of a results folder (a process that ends drops it anyway)."""
    fd = _held.pop(str(Path(results).resolve()), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def holding(results: str | os.PathLike):
    """The lock for the time of a ``with`` block (unless this process held it before)."""
    before = str(Path(results).resolve()) in _held
    hold(results)
    try:
        yield
    finally:
        if not before:
            release(results)
