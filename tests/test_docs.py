"""docs-figures: the README's pictures are shrunk copies of a run's figures, and the README shows them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffmem.__main__ import main
from diffmem.results.readme_pictures import README_FIGURES, docs_figures

ROOT = Path(__file__).resolve().parents[1]


def fake_run(tmp_path: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    """Figures like matplotlib's: RGBA, a few colours (a white page, lines)."""
    results = tmp_path / "results" / "default"
    (results / "figures").mkdir(parents=True)
    rng = np.random.default_rng(0)
    colours = np.array([[255, 255, 255, 255], [0, 114, 178, 255], [230, 159, 0, 255], [0, 0, 0, 255]], np.uint8)
    for name, (w, h) in sizes.items():
        img = colours[rng.integers(0, len(colours), (h, w))]
        Image.fromarray(img, mode="RGBA").save(results / "figures" / f"{name}.png")
    return results


def test_shrinks_wide_figures_and_keeps_small_ones(tmp_path):
    results = fake_run(tmp_path, {"fig_basic": (1800, 600), "fig_conditioning": (400, 300), "fig_optimum": (901, 10)})
    written = docs_figures(results, tmp_path / "docs", max_width=900)
    assert [p.name for p in written] == [f"{n}.png" for n in README_FIGURES]
    sizes = {p.stem: Image.open(p).size for p in written}
    assert sizes == {"fig_basic": (900, 300), "fig_conditioning": (400, 300), "fig_optimum": (900, 10)}
    # a copy, not a redraw: a small figure keeps its pixels
    a = np.asarray(Image.open(results / "figures" / "fig_conditioning.png").convert("RGB"))  # 4 colours
    b = np.asarray(Image.open(tmp_path / "docs" / "fig_conditioning.png").convert("RGB"))
    assert np.array_equal(a, b)


def test_same_run_same_bytes(tmp_path):
    results = fake_run(tmp_path, {n: (1200, 400) for n in README_FIGURES})
    first = [p.read_bytes() for p in docs_figures(results, tmp_path / "a")]
    second = [p.read_bytes() for p in docs_figures(results, tmp_path / "b")]
    assert first == second


def test_missing_figure_writes_nothing_and_names_it(tmp_path):
    results = fake_run(tmp_path, {"fig_basic": (100, 100)})
    with pytest.raises(FileNotFoundError, match="fig_conditioning.png.*fig_optimum.png"):
        docs_figures(results, tmp_path / "docs")
    assert not (tmp_path / "docs").exists()


def test_command_line(tmp_path, capsys):
    results = fake_run(tmp_path, {"fig_basic": (1000, 500), "fig_epochs": (50, 50)})
    assert (
        main(
            [
                "docs-figures",
                str(results),
                str(tmp_path / "docs"),
                "--figures",
                "fig_basic,fig_epochs",
                "--max-width",
                "500",
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "docs" / "fig_basic.png").size == (500, 250)
    assert "fig_epochs.png" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["docs-figures", str(tmp_path / "nowhere"), str(tmp_path / "docs")])


def test_readme_shows_the_committed_figures():
    readme = (ROOT / "README.md").read_text()
    shown = set(re.findall(r"docs/(\w+)\.png", readme))
    assert set(README_FIGURES) <= shown, f"README must show docs/<name>.png for {sorted(set(README_FIGURES) - shown)}"
    for name in shown:
        path = ROOT / "docs" / f"{name}.png"
        assert path.is_file(), f"README shows {path}, which is missing (python -m diffmem docs-figures)"
        assert Image.open(path).width <= 900
