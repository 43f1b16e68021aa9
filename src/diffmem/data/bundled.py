"""Data files that ship inside installed packages (scikit-learn's digits and photographs), found
without importing the package that holds them."""

from __future__ import annotations

from pathlib import Path


def sklearn_file(*parts: str) -> Path:
    """A data file bundled with scikit-learn (``sklearn/<parts>``), found without importing scikit-learn
    (whose import costs a job about a second); ValueError naming what is missing otherwise."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("data.source digits/patches needs scikit-learn installed (its bundled data files)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise ValueError(f"scikit-learn's bundled file is missing: {path}")
    return path
