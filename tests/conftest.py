"""Shared by every test: the checkout's root, the venv's snakemake, and ``tests/`` on ``sys.path``.

The tests are laid out like the package's wings (``tests/science``, ``tests/data``, ``tests/plan``,
``tests/training``, ``tests/results``, ``tests/steps``) plus ``tests/workflow`` (the workflow run end to end,
Slurm, profiles, environments, make) and ``tests/package`` (import direction, documents, the command line).
``tests/runs.py`` holds the tiny training runs several wings share (``from runs import ...``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

if str(TESTS) not in sys.path:  # `from runs import ...` from any wing's folder
    sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="session")
def root() -> Path:
    """The checkout's root (where Snakefile, config/ and workflow/ lie)."""
    return ROOT


@pytest.fixture(scope="session")
def snakemake_bin() -> Path:
    """The snakemake of the interpreter running the tests."""
    return SNAKEMAKE
