"""Figures of the workflow, drawn from a figure's table (``pipeline.figure_table``) and its spec.

One entry point, :func:`draw_figure` (:func:`build_figure` without saving), dispatches on ``spec["kind"]``:

- :mod:`~diffmem.results.figures.sweep` (``"sweep"``): memorization ratio vs |D| per value and the EMM
  of each value;
- :mod:`~diffmem.results.figures.epochs` (``"epochs"``): memorization ratio vs training images seen, one
  line per (value, size);
- :mod:`~diffmem.results.figures.optimum` (``"optimum"``): sample grids beside their nearest training
  images, with the runs' ratios;
- :mod:`~diffmem.results.figures.fixed` (``"fixed"``): memorization ratio vs a factor's value at fixed
  |D|, one series per |D| (numeric or labelled, grouped positions; the paper's points as open markers).

Beside them:

- :mod:`~diffmem.results.figures.style`: the one style (:data:`STYLE`, :data:`PALETTE`), the canvas and
  saving as PDF + PNG;
- :mod:`~diffmem.results.figures.tables`: a figure's table cleaned and split into experiments and values;
- :mod:`~diffmem.results.figures.axes`: axis labels and pieces every kind draws with.
"""

from __future__ import annotations

import os

import pandas as pd
from matplotlib.figure import Figure

from diffmem.results.figures.axes import (
    EMM_LABEL,
    GEOMETRY_LABEL,
    IMAGES_LABEL,
    NOT_LEVELLED_NOTE,
    RATIO_LABEL,
    REPLICATE_NOTE,
    SIZE_LABEL,
)
from diffmem.results.figures.epochs import draw_epochs
from diffmem.results.figures.fixed import draw_fixed
from diffmem.results.figures.optimum import draw_optimum
from diffmem.results.figures.style import MARKERS, PALETTE, STYLE, save, styled_figure
from diffmem.results.figures.sweep import draw_sweep
from diffmem.results.figures.tables import clean_table, exp_rows
from diffmem.results.figures.tables import key as _key
from diffmem.results.figures.tables import truthy as _truthy

#: kind -> draw(fig, spec, cleaned table) -> footnotes
DRAWERS = {"sweep": draw_sweep, "epochs": draw_epochs, "optimum": draw_optimum, "fixed": draw_fixed}
KINDS = tuple(DRAWERS)

__all__ = ["EMM_LABEL", "GEOMETRY_LABEL", "IMAGES_LABEL", "KINDS", "MARKERS", "NOT_LEVELLED_NOTE", "PALETTE",
           "RATIO_LABEL", "REPLICATE_NOTE", "SIZE_LABEL", "STYLE", "_key", "_truthy", "build_figure",
           "draw_figure", "exp_rows"]  # fmt: skip


def draw_figure(spec: dict, table: pd.DataFrame, pdf_path: str | os.PathLike, png_path: str | os.PathLike) -> Figure:
    """Draw the figure ``spec`` (a config figure entry plus its values, see ``get_figure_spec``) from
    ``table`` (``pipeline.TABLE_COLUMNS``), write it to ``pdf_path`` and ``png_path``, return it."""
    fig = build_figure(spec, table)
    save(fig, pdf_path, png_path)
    return fig


def build_figure(spec: dict, table: pd.DataFrame) -> Figure:
    """The matplotlib Figure of ``spec`` drawn from ``table``, not saved (see :func:`draw_figure`)."""
    kind = spec.get("kind")
    if kind not in DRAWERS:
        known = ", ".join(KINDS)
        raise ValueError(f"figure {spec.get('name', '?')!r}: unknown kind {kind!r}; known: {known}")
    table = clean_table(table)
    return styled_figure(spec, lambda fig: DRAWERS[kind](fig, spec, table))
