"""The documents: the README's pictures are shrunk copies of a run's figures (docs-figures) and the README shows
them; every relative link of README.md, config/README.md and docs/*.md reaches a file (and a heading of it);
docs/developer.md names every module of the package, and names none that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffmem.__main__ import main
from diffmem.results.readme_pictures import README_FIGURES, docs_figures

ROOT = Path(__file__).resolve().parents[2]


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


# ------------------------------------------------------------------------------------------- links
DOCUMENTS = [ROOT / "README.md", ROOT / "config" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)  # fenced code blocks: neither links nor headings
CODE = re.compile(r"`[^`\n]*`")  # inline code spans
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)|<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text in lower case, punctuation dropped, spaces to hyphens."""
    parts = re.split(r"(`[^`]*`)", heading)  # code spans keep their text, <name> included; tags outside go
    text = "".join(p[1:-1] if p.startswith("`") else re.sub(r"<[^>]+>", "", p) for p in parts)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).strip().lower()  # links keep their text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated heading gets -1, -2, ... as on GitHub)."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", prose(path.read_text()), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    """Targets of the Markdown links and HTML src/href of a document that are not URLs."""
    text = CODE.sub("", prose(path.read_text()))
    targets = [a or b for a, b in LINK.findall(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def broken_links(doc: Path) -> list[str]:
    """The relative links of ``doc`` that reach no file, or no heading of a Markdown file."""
    broken = []
    for target in relative_links(doc):
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest}")
    return broken


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = broken_links(doc)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_broken_links_are_found(tmp_path):
    (tmp_path / "b.md").write_text("# Title\n\n## A `code` heading\n\n```\n# not a heading\n```\n")
    (tmp_path / "a.md").write_text(
        '[ok](b.md) [ok](b.md#a-code-heading) [ok](#here) <img src="b.md"> [web](https://x.org/y)\n'
        "`[in code](gone.md)`\n\n```\n[in a block](gone.md)\n```\n\n## Here\n\n"
        '[no file](c.md) [no heading](b.md#not-a-heading) <img src="d.png">\n'
    )
    assert [b.split(":")[0] for b in broken_links(tmp_path / "a.md")] == ["c.md", "b.md#not-a-heading", "d.png"]


def test_slug_follows_github():
    assert slug("Checking results (`verify`)") == "checking-results-verify"
    assert slug("Precision and kernels (`train.precision`, `train.channels_last`)") == (
        "precision-and-kernels-trainprecision-trainchannels_last"
    )
    assert slug("The extended config: fair tests of data dimension and classes") == (
        "the-extended-config-fair-tests-of-data-dimension-and-classes"
    )
    assert slug("CPU default vs the paper") == "cpu-default-vs-the-paper"
    assert slug("`figures.<name>`: what each figure draws") == "figuresname-what-each-figure-draws"
    assert slug("A <b>bold</b> word") == "a-bold-word"


# ------------------------------------------------------------------------------------- module map
PACKAGE = ROOT / "src" / "diffmem"
DEVELOPER = ROOT / "docs" / "developer.md"
DOTTED = re.compile(r"(?<![\w./-])diffmem(?:\.\w+)+")


def package_modules() -> set[str]:
    """Dotted paths of every module file of the package (``__init__`` files excluded)."""
    return {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    }


def names_something(dotted: str) -> bool:
    """A module or package of the package, or a name defined at the top of one (``diffmem.io.read_json``)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = PACKAGE.parent.joinpath(*parts[:i])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not source.is_file():
            continue
        rest = parts[i:]
        if not rest:
            return True
        name = re.escape(rest[0])
        defined = rf"^(?:def|class|async def) {name}\b|^{name}\s*[:=]|^from \S+ import .*\b{name}\b|[\"']{name}[\"']"
        return len(rest) == 1 and re.search(defined, source.read_text(), re.M) is not None
    return False


def test_developer_map_names_every_module():
    named = set(DOTTED.findall(DEVELOPER.read_text()))
    missing = sorted(package_modules() - named)
    assert not missing, f"docs/developer.md: name these modules by their dotted path: {missing}"


def test_developer_map_names_only_what_exists():
    named = set(DOTTED.findall(DEVELOPER.read_text()))
    gone = sorted(n for n in named if not names_something(n))
    assert not gone, f"docs/developer.md names modules that do not exist: {gone}"
