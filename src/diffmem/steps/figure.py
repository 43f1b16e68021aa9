"""The figure step: one figure (PDF + PNG) drawn from its table and its spec."""

from __future__ import annotations

import logging
from pathlib import Path

from diffmem.results import figures

_log = logging.getLogger("diffmem")


def draw_figure_file(
    spec: dict, table_path: str | Path, pdf_path: str | Path, png_path: str | Path, log: logging.Logger = _log
) -> None:
    """Read the figure's table (CSV of :data:`diffmem.steps.table.TABLE_COLUMNS`; value labels stay text)
    and draw ``spec`` from it to ``pdf_path`` and ``png_path``."""
    import pandas as pd

    table = pd.read_csv(table_path, dtype={"value": str, "display": str})
    figures.draw_figure(spec, table, pdf_path, png_path)
    log.info("figure %s drawn from %d rows", spec["name"], len(table))
