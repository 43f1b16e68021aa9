"""From the config's experiments to their values: one :class:`Value` per setting an experiment asks for.

The config has three parts (see ``config/config.yaml`` and ``workflow/schemas/config.schema.yaml``):

- ``base``: the basic setup, one block per stage (data, model, diffusion, train, sample, score);
- ``emm``: the EMM search settings (bracket, tolerance, sizes per round, threshold);
- ``experiments``: each varies one factor of ``base`` (a dotted key such as ``train.weight_decay``, or a
  list of tied keys such as ``[train.batch, train.lr]``) over ``values``, optionally on top of fixed
  ``set:`` overrides, either with an EMM search (``mode: emm``) or at listed sizes (``mode: sizes``).

A *run* is one training run: the fully resolved settings plus the training-set size ``|D|``. Runs are
identified by what they compute (:mod:`diffmem.plan.identity`), not by the experiment that asked for them,
so the base value that appears in every sweep trains once, and a new sample count or threshold reuses
the trained models. Folders: :mod:`diffmem.plan.layout`.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from diffmem.errors import ConfigError
from diffmem.plan import identity
from diffmem.plan import schema as validate
from diffmem.plan.load import fill_defaults, set_key
from diffmem.plan.records import data_settings, resolve_settings


def slug(value: Any) -> str:
    """A path-safe label for an experiment value."""
    if isinstance(value, (list, tuple)):
        text = "-".join(slug(v) for v in value)
    elif isinstance(value, dict):
        text = "-".join(f"{k.split('.')[-1]}{slug(v)}" for k, v in value.items())
    elif value is None:
        text = "none"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    text = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")
    return text or "value"


@dataclass
class Value:
    """One value of one experiment: the settings it gives (without size) and how sizes are chosen."""

    experiment: str
    index: int
    label: str  # path-safe, unique within the experiment
    display: str  # human-readable, for legends
    value: Any
    settings: dict  # resolved settings without data.size
    run_id: str  # the training run's folder under runs/ (diffmem.plan.identity.train_id)
    data_id: str
    sample_id: str
    score_id: str
    mode: str  # "emm" | "sizes"
    sizes: list[int] = field(default_factory=list)  # mode "sizes"
    emm: dict = field(default_factory=dict)  # mode "emm": lo, hi, tolerance, per_round, threshold
    group: str = ""  # the label of the value it replicates (experiment key ``replicates``), else its own label
    replicate: int | None = None  # data.seed of a replicate, None without ``replicates``

    def __post_init__(self):
        self.group = self.group or self.label


def expand(config: dict) -> dict[str, list[Value]]:
    """All experiments -> their values, with resolved settings and ids. Raises ConfigError naming keys."""
    for fig in config.get("figures") or {}:
        validate.check_safe_name(fig, "figures")
    return {name: _experiment(name, exp, config) for name, exp in config["experiments"].items()}


def one_value(plan: dict[str, list[Value]], experiment: str, label: str | None = None) -> Value:
    """The value ``label`` of ``experiment`` (None: its only value); ConfigError naming what there is."""
    if experiment not in plan:
        raise ConfigError(f"--experiment {experiment!r} is not in the config; it has {', '.join(plan)}")
    chosen = [v for v in plan[experiment] if label in (None, v.label)]
    if len(chosen) != 1:
        have = ", ".join(v.label for v in plan[experiment])
        raise ConfigError(f"--value: experiment {experiment} has values {have}; name one")
    return chosen[0]


def value_settings(config: dict) -> Iterator[tuple[str, int, dict]]:
    """(experiment, index in its ``values``, resolved settings) of every value, without ids, so without
    reading a data file: what the data checks walk before ids hash the data (replicates differ in data.seed
    only and are not repeated)."""
    for name, exp in config["experiments"].items():
        keys = factor_keys(exp)
        for i, v in enumerate(exp.get("values", [None]) if keys else [None]):
            yield name, i, _value_settings(config["base"], exp, keys, i, v, f"experiments.{name}")


def data_spec(config: dict, data_id: str, size: int) -> dict:
    """The full data settings of subset ``data_id`` (with where its files lie) at ``size``."""
    for vals in expand(config).values():
        for v in vals:
            if v.data_id == data_id:
                return {**data_settings(v.settings), "size": int(size)}
    raise ConfigError(f"no experiment of this config has data id {data_id}")


def _experiment(name: str, exp: dict, config: dict) -> list[Value]:
    """The values of experiment ``name`` (replicates included), in the order of its ``values``."""
    validate.check_safe_name(name, "experiments")
    where = f"experiments.{name}"
    keys = factor_keys(exp)
    values = exp.get("values", [None]) if keys else [None]
    labels = exp.get("labels")
    if labels is not None and len(labels) != len(values):
        raise ConfigError(f"{where}.labels has {len(labels)} entries but values has {len(values)}")
    if keys and not values:
        raise ConfigError(f"{where}.values is empty")
    vals: list[Value] = []
    seen: dict[str, int] = {}  # label -> index of the value that has it
    for i, v in enumerate(values):
        s = _value_settings(config["base"], exp, keys, i, v, where)
        label, display = _names(exp, keys, i, v, where, seen)
        val = Value(experiment=name, index=i, label=label, display=display, value=v, settings=s,
                    mode=exp.get("mode", "emm"), **_ids(s))  # fmt: skip
        _sizes_or_search(val, exp, config["emm"], where)
        vals.extend(_replicates(val, exp.get("replicates"), keys, exp.get("set") or {}, where))
    named = {str(n) for v in vals for n in (v.display, v.label, v.group)}
    extra = sorted(set(exp["sizes"]) - named) if isinstance(exp.get("sizes"), dict) else []
    if extra:
        raise ConfigError(f"{where}.sizes names values that do not exist: {extra}")
    return vals


def factor_keys(exp: dict) -> list[str]:
    """The keys an experiment varies (``factor``: one dotted key or a list of tied ones); [] without one."""
    factor = exp.get("factor")
    if factor is None:
        return []
    return [factor] if isinstance(factor, str) else list(factor)


def _value_settings(base: dict, exp: dict, keys: list[str], i: int, v: Any, where: str) -> dict:
    """``base`` with the experiment's ``set:`` and value ``i`` (``v``) of its factor, checked against the
    schema, with its defaults and resolved (diffmem.plan.records.resolve_settings)."""
    fixed = exp.get("set") or {}
    s = copy.deepcopy(base)
    for k, x in fixed.items():
        try:
            set_key(s, k, x)
        except ConfigError as e:
            raise ConfigError(f"{where}.set: {e}") from None
    if len(keys) == 1:
        parts = [v]
    elif keys:
        if not isinstance(v, (list, tuple)) or len(v) != len(keys):
            raise ConfigError(
                f"{where}.values[{i}] must be a list of {len(keys)} values (one per key of factor {keys})"
            )
        parts = list(v)
    else:
        parts = []
    for k, part in zip(keys, parts, strict=True):
        try:
            set_key(s, k, part)
        except ConfigError as e:
            raise ConfigError(f"{where}.factor: {e}") from None
    labels = exp.get("labels")
    named = f", label {labels[i]!r}" if labels is not None else ""
    validate.check_settings(
        s,
        where,
        [(k, f"{where}.set.{k}", x) for k, x in fixed.items()]
        + [(k, f"{where}.values[{i}] (factor {k}{named})", x) for k, x in zip(keys, parts, strict=True)],
    )
    # defaults inside what a value or set: gave (e.g. a blend block), so that two spellings of one
    # setting are one run
    fill_defaults(s, validate.load_schema()["properties"]["base"])
    try:
        return resolve_settings(s)
    except ConfigError as e:
        raise ConfigError(f"{where} value {v!r}: {e}") from None


def _names(exp: dict, keys: list[str], i: int, v: Any, where: str, seen: dict[str, int]) -> tuple[str, str]:
    """Value ``i``'s label (path-safe, refused if ``seen`` has it or value ``i`` repeats an earlier one; it
    joins ``seen``) and its display name."""
    labels = exp.get("labels")
    label = slug(labels[i]) if labels is not None else (slug(v) if keys else "base")
    named = f"{where}.{'labels' if labels is not None else 'values'}[{i}]"
    validate.check_safe_name(label, named, "safe_label")
    text = identity.canonical_json
    same = [j for j in seen.values() if keys and text(exp["values"][j]) == text(v)]
    if same:  # one run twice
        raise ConfigError(f"{where}: values[{same[0]}] and values[{i}] are both {v!r}; give each value once")
    if label in seen:  # two values, one folder
        src, j = ("labels" if labels is not None else "values"), seen[label]
        raise ConfigError(f"{where}: {src}[{j}] {exp[src][j]!r} and {src}[{i}] {exp[src][i]!r} both give the "
                          f"label {label!r} (a folder name); give distinct {src}")  # fmt: skip
    seen[label] = i
    display = str(labels[i]) if labels is not None else (_display(v) if keys else "base")
    return label, display


def _ids(settings: dict) -> dict[str, str]:
    """The ids a value's settings give its subset, runs, samples and scores (diffmem.plan.identity)."""
    return {
        "run_id": identity.train_id(settings),
        "data_id": identity.data_id(settings),
        "sample_id": identity.sample_id(settings),
        "score_id": identity.score_id(settings),
    }


def _sizes_or_search(val: Value, exp: dict, emm_defaults: dict, where: str) -> None:
    """Fill ``val.sizes`` (mode ``sizes``) or ``val.emm`` (mode ``emm``: the defaults with the experiment's
    ``emm:`` over them)."""
    if val.mode == "sizes":
        val.sizes = _listed_sizes(exp.get("sizes"), (val.display, val.label), where)
    elif val.mode == "emm":
        val.emm = {**emm_defaults, **(exp.get("emm") or {})}
        validate.check_emm(val.emm, where)
    else:
        raise ConfigError(f"{where}.mode must be 'emm' or 'sizes', got {val.mode!r}")


def _replicates(val: Value, seeds: list | None, keys: list[str], fixed: dict, where: str) -> list[Value]:
    """``val`` repeated over the subset seeds ``seeds`` (experiment key ``replicates``; data.seed as a
    replicate axis): each replicate has its own subsets, runs and EMM search, label ``<label>_seed<k>``, and
    the value's label as its ``group``. Without ``replicates``: ``[val]``."""
    if seeds is None:
        return [val]
    if "data.seed" in keys or "data.seed" in fixed or "seed" in (fixed.get("data") or {}):
        raise ConfigError(f"{where}.replicates repeats over data.seed, which the experiment also sets; "
                          "use one or the other")  # fmt: skip
    if (
        not seeds
        or len(set(seeds)) != len(seeds)
        or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in seeds)
    ):
        raise ConfigError(f"{where}.replicates={seeds!r}; allowed: a non-empty list of distinct data.seed "
                          "values (integers >= 0)")  # fmt: skip
    out = []
    for k in seeds:
        s = copy.deepcopy(val.settings)
        s["data"]["seed"] = int(k)
        out.append(
            dataclasses.replace(
                val, label=f"{val.label}_seed{k}", settings=s, group=val.label, replicate=int(k),
                sizes=list(val.sizes), emm=dict(val.emm), **_ids(s),
            )
        )  # fmt: skip
    return out


def _display(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_display(x) for x in v)
    return str(v)


def _listed_sizes(sizes: list | dict | None, names: tuple[str, str], where: str) -> list[int]:
    """The sizes of one value in mode ``sizes``: ``sizes`` is one list for every value, or a mapping from each value's
    label (as written in ``labels:``, or its folder-safe form) to its own list (a panel whose curves the paper
    measured at different sizes)."""
    if isinstance(sizes, dict):
        key = next((str(n) for n in names if str(n) in sizes), None)
        if key is None:
            raise ConfigError(f"{where}.sizes has no entry for value {names[0]!r} (entries: {sorted(sizes)})")
        sizes = sizes[key]
    if not sizes:
        raise ConfigError(f"{where}: mode 'sizes' needs a non-empty 'sizes' list (for value {names[0]!r})")
    return [int(x) for x in sizes]
