"""Small helpers the workflow scripts share: logging to the rule's log file, thread count."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def script_logging(log_path: str | Path | None, name: str = "diffmem") -> logging.Logger:
    """Send log records (and uncaught errors) of a workflow script to its rule's ``log:`` file."""
    handlers: list[logging.Handler] = []
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        fh = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the script
        sys.stderr = fh
        handlers.append(logging.StreamHandler(fh))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    return logging.getLogger(name)


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch (the rule's ``threads:``)."""
    try:
        import torch
    except ImportError:  # scoring and plotting do not need torch
        return
    torch.set_num_threads(max(1, int(n)))
