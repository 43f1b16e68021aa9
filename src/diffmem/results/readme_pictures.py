"""The README's pictures: small copies of a finished workflow run's figures.

``python -m diffmem docs-figures results/default docs/`` reads ``<results>/figures/<name>.png`` (drawn by the
workflow's ``figure`` rule) for each name in ``README_FIGURES``, shrinks it to at most ``max_width`` pixels
wide (256 colours) and writes ``<out>/<name>.png``. Nothing is redrawn or edited by hand: the README shows exactly what
the run drew, only smaller.
"""

from __future__ import annotations

import os
from pathlib import Path

# The figures the README shows: memorization ratio vs |D| with the EMM, conditioning, the optimum grid.
README_FIGURES = ("fig_basic", "fig_conditioning", "fig_optimum")


def docs_figures(
    results: str | os.PathLike,
    out: str | os.PathLike,
    names: tuple[str, ...] | list[str] = README_FIGURES,
    max_width: int = 900,
) -> list[Path]:
    """Write a copy of each ``<results>/figures/<name>.png``, at most ``max_width`` px wide, to ``<out>/``.

    Raises FileNotFoundError (naming every missing file) before writing anything when a figure is missing.
    Returns the paths written."""
    from PIL import Image

    if max_width < 1:
        raise ValueError(f"max_width must be >= 1, got {max_width}")
    src = [Path(results) / "figures" / f"{name}.png" for name in names]
    missing = [str(p) for p in src if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            "figures not found (run the workflow first, e.g. `make run` or `snakemake --cores all`): "
            + ", ".join(missing)
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in src:
        with Image.open(path) as im:
            rgba = im.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
        if img.width > max_width:
            height = max(1, round(img.height * max_width / img.width))
            img = img.resize((max_width, height), Image.Resampling.LANCZOS)
        # 256 colours, no dithering: a third of the bytes, no visible change for plots and digit grids
        img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        dest = out / path.name
        tmp = dest.with_name(f".{dest.name}.tmp")
        img.save(tmp, format="PNG", optimize=True)  # no metadata: same run, same bytes
        os.replace(tmp, dest)
        written.append(dest)
    return written
