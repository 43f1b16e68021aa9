"""A figure's table as the figures read it: cleaned after a CSV round trip, split into experiments and
their values (in config order, with colour and marker), with the thresholds it was made with.

The table has ``pipeline.TABLE_COLUMNS``: per value and size its ratio (``kind=size``), per snapshot
(``kind=snapshot``) and per EMM search its bounds (``kind=emm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from diffmem.plan.config import threshold_text
from diffmem.results.figures.style import MARKERS, colors

NUMERIC = (
    "size",
    "snapshot",
    "step",
    "images_seen",
    "epochs",
    "ratio",
    "ci_low",
    "ci_high",
    "n",
    "ratio_threshold",
    "emm_threshold",
    "emm_lower",
    "emm_upper",
    "search_lo",
    "search_hi",
    "seed",
    "nn_distance",
    "pair_distance",
    "nn_pair_ratio",
)
TEXT = ("figure", "experiment", "title", "value", "display", "kind", "emm_status", "non_monotone", "run_id",
        "memorized", "group", "levelled_off")  # fmt: skip


def clean_table(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as floats (a CSV round trip may leave strings), missing columns added."""
    t = table.copy()
    for col in (*TEXT, *NUMERIC):
        if col not in t.columns:
            t[col] = np.nan
    for col in NUMERIC:
        t[col] = pd.to_numeric(t[col], errors="coerce")
    t["_exp"] = t["experiment"].map(key)
    t["_val"] = t["value"].map(key)
    t["_open"] = t["levelled_off"].map(lambda x: str(x).strip().lower() == "no")
    return t


def key(x: Any) -> str:
    """A comparable form of a label: a CSV round trip turns "1e-05" into 1e-05 and "8" into 8."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, (bool, np.bool_)):
        return str(x)
    try:
        return repr(float(x))
    except (TypeError, ValueError):
        return str(x)


def truthy(x: Any) -> bool:
    """A yes/no cell as a bool (True, "True", 1, "yes"; NaN is False)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, float, np.number)):
        return not math.isnan(float(x)) and float(x) != 0
    return str(x).strip().lower() in ("true", "1", "yes")


def finite(x: Any) -> bool:
    """``x`` is a finite number (NaN, None and text are not)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass
class Val:
    """One value of an experiment: how it is drawn and its table rows."""

    label: str
    display: str
    color: str
    marker: str
    rows: pd.DataFrame
    grids: dict = field(default_factory=dict)  # size -> (samples grid, nearest-neighbour grid) paths
    group: str = ""  # the value a replicate repeats (its own label without replicates)
    seed: float | None = None  # data.seed
    first: bool = True  # the first replicate of its group (the one in the legend)


@dataclass
class Exp:
    """One experiment of a figure: its title, the factor it varies and its values in config order."""

    name: str
    title: str
    factor: str
    values: list[Val]

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(v.group for v in self.values))

    @property
    def replicated(self) -> bool:
        return len(self.groups) < len(self.values)

    @property
    def data_factor(self) -> bool:
        """The factor changes the data (classes, resolution, blend...): its geometry is drawn."""
        return any(k.strip().startswith("data.") for k in self.factor.split(","))


def experiments(spec: dict, table: pd.DataFrame) -> list[Exp]:
    """Experiments in spec order, each with its values in config order and their table rows."""
    names = list(spec.get("experiments") or [])
    if not names:
        names = list(dict.fromkeys(table["experiment"].dropna()))
    spec_values = spec.get("values") or []
    out = []
    for name in names:
        vals = [v for v in spec_values if v.get("experiment") == name]
        sub = table[table["_exp"] == key(name)]
        if not vals:  # a spec without values: take them from the table in order of appearance
            first = sub.drop_duplicates("_val")
            vals = [{"label": r.value, "display": r.display, "title": r.title} for r in first.itertuples()]
        title = next((v.get("title") for v in vals if v.get("title")), None)
        if title is None:
            title = next(iter(sub["title"].dropna()), name)
        factor = next((v.get("factor") for v in vals if v.get("factor")), None)
        factor = ", ".join(factor) if isinstance(factor, (list, tuple)) else (factor or "value")
        out.append(Exp(name=name, title=str(title), factor=str(factor), values=_values(vals, sub)))
    return out


def _values(vals: list[dict], sub: pd.DataFrame) -> list[Val]:
    """The values of one experiment with their rows of ``sub``; replicates share their group's colour."""
    groups = list(dict.fromkeys(str(v.get("group") or v.get("label")) for v in vals))
    palette = colors(len(groups))
    values: list[Val] = []
    for v in vals:
        rows = sub[sub["_val"] == key(v.get("label"))]
        display = v.get("display")
        if display is None or (isinstance(display, float) and math.isnan(display)):
            display = v.get("label")
        g = str(v.get("group") or v.get("label"))
        i = groups.index(g)
        values.append(
            Val(
                label=str(v.get("label")),
                display=str(display),
                color=palette[i],
                marker=MARKERS[i % len(MARKERS)],
                rows=rows,
                grids={int(k): tuple(p) for k, p in (v.get("grids") or {}).items()},
                group=g,
                seed=v.get("seed"),
                first=all(w.group != g for w in values),
            )
        )
    return values


def names(v: Val) -> tuple[str, str, str]:
    """Every name a config may give a value by (as :func:`key` forms): its label, display text and group."""
    return key(v.label), key(v.display), key(v.group)


def size_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``kind=size`` rows, one per size (the last where a size repeats), by size."""
    r = rows[(rows["kind"] == "size") & rows["size"].notna()]
    return r.sort_values("size").drop_duplicates("size", keep="last")


def exp_rows(exp: Exp) -> pd.DataFrame:
    """The table rows of every value of an experiment."""
    frames = [v.rows for v in exp.values if len(v.rows)]
    if frames:
        return pd.concat(frames)
    return pd.DataFrame({"kind": pd.Series(dtype=object), "size": pd.Series(dtype=float),
                         "nn_distance": pd.Series(dtype=float)})  # fmt: skip


@dataclass
class Thresholds:
    """The thresholds a table was made with."""

    ratio: float | None  # score.threshold: a sample is memorized when d1/d2 < ratio
    emm: float | None  # emm.threshold: a size passes when its memorization ratio >= emm

    @property
    def ratio_text(self) -> str:
        return threshold_text(self.ratio) if self.ratio is not None else "score.threshold"

    @property
    def emm_text(self) -> str:
        return f"{self.emm:.0%}" if self.emm is not None else "emm.threshold"


def thresholds(table: pd.DataFrame) -> Thresholds:
    """The thresholds the table was made with (the most common one where values differ)."""

    def mode(col: str) -> float | None:
        x = table[col].dropna()
        return float(x.mode().iloc[0]) if len(x) else None

    return Thresholds(ratio=mode("ratio_threshold"), emm=mode("emm_threshold"))
