"""The one style of every figure: palette, markers, rc settings, the canvas, the frame and saving.

Figures are drawn on the Agg canvas without pyplot, so nothing global changes; PDF and PNG are written
atomically and carry no date or version stamp, so the same table gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import matplotlib
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from diffmem.io import atomic_path

#: Okabe & Ito's colour-blind-safe palette (yellow last: it reads poorly on white).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
MARKERS = ["o", "s", "D", "^", "v", "P", "X", "<", ">", "h", "*"]

#: One style for every figure.
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "legend.title_fontsize": 8.5,
    "legend.frameon": True,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "0.85",
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
    "figure.facecolor": "white",
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": "0.88",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "errorbar.capsize": 3,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.15,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text
}


def colors(n: int) -> list[str]:
    """``n`` distinct colours: the palette (without its yellow) or, for more, viridis steps."""
    if n <= len(PALETTE) - 1:
        return PALETTE[:n]
    cmap = matplotlib.colormaps["viridis"]  # perceptually uniform, colour-blind safe
    return [matplotlib.colors.to_hex(cmap(0.9 * i / max(n - 1, 1))) for i in range(n)]


def styled_figure(spec: dict, draw: Callable[[Figure], list[str] | None]) -> Figure:
    """A constrained-layout Figure on the Agg canvas, drawn by ``draw(fig)`` (which returns footnotes)
    in :data:`STYLE` and framed by :func:`decorate`; ``spec["footnotes"]`` (the figure step's, not a config
    key) follow the drawer's."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(layout="constrained")
        FigureCanvasAgg(fig)
        notes = (draw(fig) or []) + list(spec.get("footnotes") or [])
        decorate(fig, spec, notes)
    return fig


def decorate(fig: Figure, spec: dict, notes: list[str]) -> None:
    """Suptitle, the paper figure it reproduces, and footnotes below the panels."""
    fig.suptitle(spec.get("title") or spec.get("name") or "")
    if spec.get("paper"):
        paper = str(spec["paper"])
        paper = paper if paper.lower().startswith("paper") else f"paper {paper}"
        fig.text(0.995, 1.0, paper, ha="right", va="bottom", fontsize=8.5, color="0.35", style="italic")
    if notes:
        fig.text(0.005, -0.005, "\n".join(notes), ha="left", va="top", fontsize=8, color="0.25")


def save(fig: Figure, pdf_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    """Write ``fig`` as PDF and PNG, atomically, in :data:`STYLE`."""
    with matplotlib.rc_context(STYLE), atomic_path(pdf_path) as tmp_pdf, atomic_path(png_path) as tmp_png:
        # no date (PDF) and no version stamp (PNG): the same run gives the same bytes
        fig.savefig(tmp_pdf, format="pdf", metadata={"CreationDate": None})
        fig.savefig(tmp_png, format="png", metadata={"Software": None})
