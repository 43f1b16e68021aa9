"""The paper's published numbers and directions, as data shipped with the package.

- ``paper_points.csv``: every point of the four figures released with the paper's code, read off by eye
  (about +-2 percentage points; sizes exact), one row each (:func:`load_points`):

  ``panel``     data_dimension | conditioning_labels | conditioning_classes | skip_location | skip_resolution |
                unique_labels
  ``factor``    the config key(s) the panel varies, YAML (``data.resolution`` or ``[data.labels, ...]``)
  ``value``     the factor's value, YAML, one entry per key (``{one of: [...]}``: the figure does not say
                which of these values the point belongs to)
  ``label``     the value in words
  ``setting``   further settings the panel changes from the paper's basic setup, YAML mapping (or empty)
  ``size``      |D| (empty for an EMM read-off); ``epochs``: the training epoch of a point over training
  ``metric``    ratio (``number`` in percent) | emm (``number`` in images)
  ``low``/``high`` the read-off range where the figure gives a range, not a point
  ``source``    the figure file; ``note``: how the number was read (``|D| inferred`` and the like)

- ``paper_claims.yaml``: the paper's directions (memorization falls as |D| grows, wider nets raise it, ...),
  each tied to the config keys it varies (:func:`load_claims`; its header says how).

Reads only; imports nothing heavy.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

POINTS_FILE = "paper_points.csv"
CLAIMS_FILE = "paper_claims.yaml"
POINT_COLUMNS = ["panel", "factor", "value", "label", "setting", "size", "epochs", "metric", "number", "low", "high",
                 "source", "note"]  # fmt: skip
CLAIM_KINDS = ("order", "versus", "size", "training", "all")


@dataclass(frozen=True)
class PaperPoint:
    """One published point: ``keys`` and ``values`` (one per key) say what the panel varies; ``choices``
    holds several candidate ``values`` where the figure does not say which one the point is."""

    panel: str
    keys: tuple[str, ...]
    choices: tuple[tuple[Any, ...], ...]
    label: str
    setting: dict
    size: int | None
    epochs: int | None
    metric: str
    number: float
    low: float | None
    high: float | None
    source: str
    note: str

    @property
    def values(self) -> tuple[Any, ...]:
        """The factor's value (the first choice where the figure leaves several open)."""
        return self.choices[0]


@dataclass(frozen=True)
class Claim:
    """One direction of the paper (see ``paper_claims.yaml``)."""

    id: str
    claim: str
    paper: str
    source: str
    kind: str
    factor: str | None = None
    order: str | None = None
    direction: str = "up"
    more: Any = None
    less: Any = None
    where: dict = field(default_factory=dict)
    unless: dict = field(default_factory=dict)


def _text(name: str, path: str | Path | None) -> str:
    if path is not None:
        return Path(path).read_text()
    return resources.files("diffmem.results").joinpath(name).read_text()


def _number(text: str) -> float | None:
    return None if text.strip() == "" else float(text)


def _int(text: str) -> int | None:
    return None if text.strip() == "" else int(text)


def _point(row: dict[str, str], where: str) -> PaperPoint:
    factor = yaml.safe_load(row["factor"])
    keys = (factor,) if isinstance(factor, str) else tuple(factor)
    value = yaml.safe_load(row["value"])
    if isinstance(value, dict) and set(value) == {"one of"}:
        raw = list(value["one of"])
    else:
        raw = [value]
    choices = tuple(tuple(v) if len(keys) > 1 else (v,) for v in raw)
    if any(len(c) != len(keys) for c in choices):
        raise ValueError(f"{where}: value {row['value']!r} needs one entry per key of factor {row['factor']!r}")
    if row["metric"] not in ("ratio", "emm"):
        raise ValueError(f"{where}: metric must be ratio or emm, got {row['metric']!r}")
    return PaperPoint(
        panel=row["panel"],
        keys=keys,
        choices=choices,
        label=row["label"],
        setting=yaml.safe_load(row["setting"] or "{}") or {},
        size=_int(row["size"]),
        epochs=_int(row["epochs"]),
        metric=row["metric"],
        number=float(row["number"]),
        low=_number(row["low"]),
        high=_number(row["high"]),
        source=row["source"],
        note=row["note"],
    )


def load_points(path: str | Path | None = None) -> list[PaperPoint]:
    """Every published point, in the file's order (``path``: another file of the same columns; default
    the package's ``paper_points.csv``)."""
    reader = csv.DictReader(io.StringIO(_text(POINTS_FILE, path)))
    if reader.fieldnames != POINT_COLUMNS:
        raise ValueError(f"{path or POINTS_FILE}: columns {reader.fieldnames}, expected {POINT_COLUMNS}")
    return [_point(row, f"{path or POINTS_FILE} line {i + 2}") for i, row in enumerate(reader)]


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The paper's directions (``path``: another file of the same form; default the package's
    ``paper_claims.yaml``)."""
    out = []
    for i, entry in enumerate(yaml.safe_load(_text(CLAIMS_FILE, path)) or []):
        entry = dict(entry)
        entry["source"] = entry.pop("from", "")
        claim = Claim(**entry)
        if claim.kind not in CLAIM_KINDS:
            raise ValueError(f"claim {i} ({claim.id}): kind must be one of {CLAIM_KINDS}, got {claim.kind!r}")
        if claim.kind in ("order", "versus") and not claim.factor:
            raise ValueError(f"claim {claim.id}: kind {claim.kind} needs a factor")
        if claim.direction not in ("up", "down"):
            raise ValueError(f"claim {claim.id}: direction must be up or down, got {claim.direction!r}")
        out.append(claim)
    return out
