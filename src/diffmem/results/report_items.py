"""Items of the Snakemake report besides the figures: tables as HTML, and per EMM search the sample and
nearest-neighbour grids of the two runs at its bracket's ends (the largest |D| still memorized, the
smallest not). Captions live in workflow/report/*.rst."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from diffmem.io import atomic_path, read_json
from diffmem.science import emm

_CSS = (
    "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse}"
    " th,td{border:1px solid #ccc;padding:2px 6px;text-align:right} th{background:#f2f2f2}"
    " tr:nth-child(even){background:#fafafa}"
)


def table_html(csv_path: str | Path, out_path: str | Path, title: str = "") -> None:
    """A CSV table as one self-contained HTML page (empty cells stay empty; floats to 4 significant digits)."""
    import pandas as pd

    table = pd.read_csv(csv_path)
    body = table.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.4g}", border=0)
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h3>{html.escape(title)}</h3>"
        f"<p>{html.escape(Path(csv_path).name)}: {len(table)} rows</p>{body}</body></html>\n"
    )
    with atomic_path(out_path) as tmp:
        Path(tmp).write_text(page)


def bracket_ends(result: dict) -> list[tuple[str, int]]:
    """[("lower", |D|), ("upper", |D|)] of an EMM result, leaving out an end the search did not find."""
    if not result.get("evaluated"):
        return []
    lower, upper = emm.bounds(result)
    return [(name, s) for name, s in (("lower", lower), ("upper", upper)) if s is not None]


def emm_grids(emm_path: str | Path, files: dict[str, Any], out_path: str | Path, about: dict) -> None:
    """One PNG: per bracket end a row title (|D|, ratio, verdict), its sample grid and its nearest-neighbour
    grid. ``files``: ``samples_<size>``, ``nearest_<size>``, ``scores_<size>`` paths."""
    import matplotlib
    import matplotlib.image as mpimg
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from diffmem.results.figures import STYLE

    result = read_json(emm_path)
    ends = bracket_ends(result)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(8, 1.0 + 3.2 * max(1, len(ends))), layout="constrained")
        FigureCanvasAgg(fig)
        fig.suptitle(f"{about.get('title', about['experiment'])}: {about.get('display', about['value'])}")
        if not ends:
            ax = fig.add_subplot()
            ax.axis("off")
            ax.text(0.5, 0.5, f"no bracket (EMM status {result.get('status')})", ha="center", va="center")
        subs = fig.subfigures(len(ends), 1, squeeze=False)[:, 0] if ends else []
        for sub, (end, size) in zip(subs, ends, strict=True):
            sc = read_json(files[f"scores_{size}"])
            verdict = "memorized" if emm.passes(sc["ratio"], result["threshold"]) else "not memorized"
            what = "largest |D| memorized" if end == "lower" else "smallest |D| not memorized"
            sub.suptitle(f"|D| = {size} ({what}): ratio {sc['ratio']:.3f}, {verdict}", fontsize=10)
            axes = sub.subplots(2, 1, height_ratios=[1, 0.6])
            labels = {"samples": "samples", "nearest": "samples / nearest training image"}
            for ax, (key, label) in zip(axes, labels.items(), strict=True):
                img = mpimg.imread(str(files[f"{key}_{size}"]))
                ax.imshow(img, interpolation="nearest", cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
                ax.set_title(label, fontsize=9)
                ax.axis("off")
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, format="png", dpi=150)
