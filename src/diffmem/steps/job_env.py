"""Small helpers the workflow scripts share: logging to the rule's log file (a result that cannot be written
said in one line), thread count."""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import sys
from pathlib import Path

from diffmem.io import ResultWriteError, not_writable


def script_logging(log_path: str | Path | None, name: str = "diffmem") -> logging.Logger:
    """Send log records (and uncaught errors) of a workflow script to its rule's ``log:`` file, and spare
    the script the interpreter's last garbage collection at exit (below)."""
    handlers: list[logging.Handler] = []
    sys.excepthook = _say_write_errors
    if log_path:
        try:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            fh = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the script
        except OSError as err:
            raise SystemExit(f"error: {not_writable(log_path, err)}") from None
        sys.stderr = fh
        handlers.append(logging.StreamHandler(fh))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    # The interpreter's shutdown ends with a garbage collection over every object of the modules loaded:
    # ~0.35 s CPU per job with torch, ~0.8 s with torch._dynamo (which torch.optim loads). gc.freeze() at
    # exit takes them out of its reach. A job's outputs are written and closed by then (atomic writes, with
    # blocks; the log is line-buffered), so nothing it writes depends on the collection it skips.
    atexit.unregister(gc.freeze)  # registered once, however often this is called
    atexit.register(gc.freeze)
    return logging.getLogger(name)


def _say_write_errors(kind, err, tb) -> None:
    """A result file that cannot be written ends the job with one line naming it (in the log and where
    Snakemake shows the job's errors), not a traceback; any other error as Python says it."""
    if not isinstance(err, ResultWriteError):
        sys.__excepthook__(kind, err, tb)
        return
    for stream in dict.fromkeys([sys.__stderr__, sys.stderr]):
        with contextlib.suppress(OSError, ValueError):  # the log may lie in the folder that refuses writes
            print(f"error: {err}", file=stream, flush=True)


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch (the rule's ``threads:``)."""
    try:
        import torch
    except ImportError:  # scoring and plotting do not need torch
        return
    torch.set_num_threads(max(1, int(n)))
