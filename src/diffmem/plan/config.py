"""From the workflow's YAML config to concrete runs.

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
from dataclasses import dataclass, field
from typing import Any

from diffmem import data as dmdata
from diffmem.data.cifar10 import check_path
from diffmem.data.sources import facts as source_facts
from diffmem.data.sources import known_sizes
from diffmem.errors import ConfigError
from diffmem.plan import identity, layout
from diffmem.plan import schema as validate
from diffmem.science.augment import augment_dim
from diffmem.science.netconfig import resolve_net_config


def set_key(d: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dict ``d``; the key must already exist (typos are errors)."""
    parts = dotted.split(".")
    cur = d
    for part in parts[:-1]:
        if not isinstance(cur, dict) or part not in cur:
            raise ConfigError(f"unknown config key {dotted!r} (no {part!r} there)")
        cur = cur[part]
    if not isinstance(cur, dict) or parts[-1] not in cur:
        known = ", ".join(sorted(cur)) if isinstance(cur, dict) else "-"
        raise ConfigError(f"unknown config key {dotted!r}; known keys there: {known}")
    if isinstance(value, dict) and isinstance(cur[parts[-1]], dict):
        # a mapping over a block changes only the keys it gives (set: {train: {lr: 0.1}} keeps the rest
        # of train); unknown keys it brings are refused by diffmem.plan.schema
        cur[parts[-1]] = merge(cur[parts[-1]], value)
    else:
        cur[parts[-1]] = copy.deepcopy(value)


def merge(block: dict, over: dict) -> dict:
    """``block`` with ``over`` merged in, recursively (a copy; mappings merge, anything else replaces)."""
    out = copy.deepcopy(block)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


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


def _factor_keys(exp: dict) -> list[str]:
    factor = exp.get("factor")
    if factor is None:
        return []
    return [factor] if isinstance(factor, str) else list(factor)


def resolve_settings(base: dict) -> dict:
    """Fill the settings that follow from others (net resolution, unless set, and channels from the data)."""
    s = copy.deepcopy(base)
    data, model = s["data"], s["model"]
    if data.get("labels") is True:  # YAML reads an unquoted `true` as a boolean
        data["labels"] = "true"
    side = int(data["resolution"])
    net_side = model.get("resolution")
    if net_side is not None and (int(net_side) < side or int(net_side) % side):
        raise ConfigError(
            f"model.resolution {net_side} must be a multiple of data.resolution {side} (the net trains on the "
            f"data enlarged by pixel repetition), or null for the data's side"
        )
    model["resolution"] = side if net_side is None else int(net_side)
    model["img_channels"] = source_facts(data["source"]).channels
    if data["labels"] == "none":
        model["label_dim"] = 0
    elif data["labels"] == "true":
        model["label_dim"] = int(data["classes"])
    elif data["labels"] == "random":
        if not data.get("label_classes"):
            raise ConfigError("data.labels=random needs data.label_classes (the number of random classes)")
        model["label_dim"] = int(data["label_classes"])
    elif data["labels"] == "unique":
        model["label_dim"] = None  # = |D|, filled per size by run_settings()
    else:
        raise ConfigError(f"data.labels must be none|true|random|unique, got {data['labels']!r}")
    if model["arch"] != "optimum":
        try:
            model["augment_dim"] = augment_dim(s.get("train", {}).get("augment"))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        s["model"] = canonical_model(model)
    return s


def canonical_model(model: dict) -> dict:
    """The network settings with every default filled in (embedding, skip mask, ...), so that two
    spellings of the same net (``embedding: null`` and ``positional``) give the same run id."""
    unique = model.get("label_dim") is None
    probe = {**model, "label_dim": 1 if unique else model["label_dim"]}
    try:
        resolved = resolve_net_config(probe)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"model settings are invalid: {e}") from None
    if unique:
        resolved["label_dim"] = None
    return resolved


def run_settings(value_settings: dict, size: int) -> dict:
    """Full settings of one run: a value's settings at training-set size ``size``."""
    s = copy.deepcopy(value_settings)
    s["data"]["size"] = int(size)
    if s["data"]["labels"] == "unique":
        s["model"]["label_dim"] = int(size)
    return s


def run_record(settings: dict) -> dict:
    """What a run folder's ``run.json`` holds: the run's training identity and, in words, what it is."""
    rec = identity.train_identity(settings)
    d, m, t = rec["data"], rec["model"], rec["train"]
    net = (
        "closed-form optimal denoiser"
        if m["arch"] == "optimum"
        else (
            f"{m['arch']} ({m['model_channels']} channels, {m['num_blocks']} blocks/resolution, "
            f"{rec['diffusion']['precond']} preconditioning), {t['duration']['value']:g} {t['duration']['unit']} of "
            f"batch {t['batch']}, lr {t['lr']:g}, seed {t['seed']}"
        )
    )
    size = f"{d['size']} " if "size" in d else ""
    side = m.get("resolution", d["resolution"])
    enlarged = f"enlarged to {side}x{side} by pixel repetition " if side != d["resolution"] else ""
    rec["about"] = (
        f"{net}; trained on {size}{d['resolution']}x{d['resolution']} images of {d['source']} {enlarged}"
        f"({d['classes']} classes, labels {d['labels']}, subset seed {d['seed']})"
    )
    return rec


def sample_record(sample: dict) -> dict:
    """What a samples folder's ``sample.json`` holds: the sampler's identity and, in words, what it is."""
    rec = identity.sample_identity({"sample": sample})
    rec["about"] = (
        f"{rec['n']} samples per snapshot, EDM Heun with {rec['num_steps']} steps, sigma "
        f"{rec['sigma_min']:g}..{rec['sigma_max']:g}, rho {rec['rho']:g}, seeds {rec['seed']}.."
        f"{rec['seed'] + rec['n'] - 1}"
    )
    return rec


def job_options(config: dict) -> dict:
    """Settings that change no number (diffmem.plan.identity.OPERATIONAL), which jobs read from the config at
    run time rather than from their inputs, so changing them reruns nothing."""
    base = config["base"]
    return {
        "checkpoint_every": int(base["train"]["checkpoint_every"]),
        "sample_batch": int(base["sample"]["batch"]),
        "gpu": bool(config.get("gpu", False)),
        "gpus_per_run": int(config.get("gpus_per_run", 1)),
    }


def data_spec(config: dict, data_id: str, size: int) -> dict:
    """The full data settings of subset ``data_id`` (with where its files lie) at ``size``."""
    for vals in expand(config).values():
        for v in vals:
            if v.data_id == data_id:
                return {**data_settings(v.settings), "size": int(size)}
    raise ConfigError(f"no experiment of this config has data id {data_id}")


def data_settings(settings: dict) -> dict:
    """The part of the settings that decides the subset (without size)."""
    d = copy.deepcopy(settings["data"])
    d.pop("size", None)
    return d


def expand(config: dict) -> dict[str, list[Value]]:
    """All experiments -> their values, with resolved settings and ids. Raises ConfigError naming keys."""
    base = config["base"]
    emm_defaults = config["emm"]
    out: dict[str, list[Value]] = {}
    for fig in config.get("figures") or {}:
        validate.check_safe_name(fig, "figures")
    for name, exp in config["experiments"].items():
        validate.check_safe_name(name, "experiments")
        where = f"experiments.{name}"
        keys = _factor_keys(exp)
        values = exp.get("values", [None]) if keys else [None]
        labels = exp.get("labels")
        if labels is not None and len(labels) != len(values):
            raise ConfigError(f"{where}.labels has {len(labels)} entries but values has {len(values)}")
        if keys and not values:
            raise ConfigError(f"{where}.values is empty")
        mode = exp.get("mode", "emm")
        vals: list[Value] = []
        seen: set[str] = set()
        for i, v in enumerate(values):
            s = copy.deepcopy(base)
            for k, fixed in (exp.get("set") or {}).items():
                try:
                    set_key(s, k, fixed)
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
            named = f", label {labels[i]!r}" if labels is not None else ""
            validate.check_settings(
                s,
                where,
                [(k, f"{where}.set.{k}", fixed) for k, fixed in (exp.get("set") or {}).items()]
                + [(k, f"{where}.values[{i}] (factor {k}{named})", x) for k, x in zip(keys, parts, strict=True)],
            )
            # defaults inside what a value or set: gave (e.g. a blend block), so that two spellings of one
            # setting are one run
            _fill_defaults(s, validate.load_schema()["properties"]["base"])
            try:
                s = resolve_settings(s)
            except ConfigError as e:
                raise ConfigError(f"{where} value {v!r}: {e}") from None
            label = slug(labels[i]) if labels is not None else (slug(v) if keys else "base")
            named = f"{where}.{'labels' if labels is not None else 'values'}[{i}]"
            validate.check_safe_name(label, named, "safe_label")
            if label in seen:
                label = f"{label}_{i}"
            seen.add(label)
            display = str(labels[i]) if labels is not None else (_display(v) if keys else "base")
            val = Value(
                experiment=name,
                index=i,
                label=label,
                display=display,
                value=v,
                settings=s,
                run_id=identity.train_id(s),
                data_id=identity.data_id(s),
                sample_id=identity.sample_id(s),
                score_id=identity.score_id(s),
                mode=mode,
            )
            if mode == "sizes":
                if not exp.get("sizes"):
                    raise ConfigError(f"{where}: mode 'sizes' needs a non-empty 'sizes' list")
                val.sizes = [int(x) for x in exp["sizes"]]
            elif mode == "emm":
                val.emm = {**emm_defaults, **(exp.get("emm") or {})}
                validate.check_emm(val.emm, where)
            else:
                raise ConfigError(f"{where}.mode must be 'emm' or 'sizes', got {mode!r}")
            vals.extend(_replicates(val, exp.get("replicates"), keys, exp.get("set") or {}, where))
        out[name] = vals
    return out


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
        out.append(dataclasses.replace(
            val, label=f"{val.label}_seed{k}", settings=s, run_id=identity.train_id(s),
            data_id=identity.data_id(s), sample_id=identity.sample_id(s), score_id=identity.score_id(s),
            group=val.label, replicate=int(k), sizes=list(val.sizes), emm=dict(val.emm),
        ))  # fmt: skip
    return out


def _display(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_display(x) for x in v)
    return str(v)


def allowed_sizes(settings: dict, load: bool = True) -> list[int] | None:
    """Training-set sizes the data settings can make (class-balanced: multiples of C up to C * min count).

    With ``load=False`` only sources whose class counts are known without loading images with numpy are
    answered (:func:`diffmem.data.sources.known_sizes`; None otherwise), so that parsing the workflow never
    loads data.
    """
    known = known_sizes(data_settings(settings))
    if known is not None or not load:
        return known

    return list(dmdata.allowed_sizes(data_settings(settings)))


def check_plan(config: dict, plan: dict[str, list[Value]]) -> None:
    """Checks that need more than the schema, run before any job: nets resolve, sizes can be made,
    figures name existing experiments of the right mode (nets are resolved by :func:`expand`)."""
    for name, vals in plan.items():
        for v in vals:
            where = f"experiments.{name} value {v.display!r}"
            lo_hi = (v.emm["lo"], v.emm["hi"]) if v.mode == "emm" else None
            if lo_hi and lo_hi[0] >= lo_hi[1]:
                raise ConfigError(f"{where}: emm.lo={lo_hi[0]} must be < emm.hi={lo_hi[1]}")
            allowed = allowed_sizes(v.settings, load=False)
            if allowed is None:
                continue
            wanted = v.sizes if v.mode == "sizes" else []
            bad = [s for s in wanted if s not in set(allowed)]
            if bad:
                raise ConfigError(
                    f"{where}: sizes {bad} cannot be made from data {v.settings['data']['source']} with "
                    f"classes={v.settings['data']['classes']}; allowed: multiples of "
                    f"{allowed[0]} up to {allowed[-1]}"
                )
            if lo_hi and not any(lo_hi[0] <= s <= lo_hi[1] for s in allowed):
                raise ConfigError(
                    f"{where}: no allowed size inside emm bracket [{lo_hi[0]}, {lo_hi[1]}]; "
                    f"allowed: {allowed[0]}..{allowed[-1]}"
                )
    for fig, spec in config.get("figures", {}).items():
        for exp in spec["experiments"]:
            if exp not in plan:
                raise ConfigError(f"figures.{fig}.experiments names {exp!r}, not in experiments")
            modes = {v.mode for v in plan[exp]}
            if spec["kind"] in ("epochs", "optimum") and modes != {"sizes"}:
                raise ConfigError(f"figures.{fig}: kind {spec['kind']} needs experiments with mode: sizes")


_HOW_TO_READ = {
    "sweep": (
        "Left: memorization ratio (share of generated samples whose distance d1 to the nearest training image "
        "is below {ratio_threshold} of the distance d2 to the second nearest, d1/d2 < {ratio_threshold}) against "
        "the training-set size |D| on a log axis, with its 95% Wilson interval; the dashed line is the EMM "
        "threshold ({emm_threshold}), and the strip above marks each value's EMM bracket. Right: the EMM of each "
        "value (the largest |D| whose ratio is still >= {emm_threshold}) as a bracket; higher EMM means more "
        "memorization."
    ),
    "epochs": (
        "Memorization ratio of each snapshot against the number of training images seen, one line per "
        "training-set size (and value), with 95% Wilson intervals; a sample is memorized when "
        "d1/d2 < {ratio_threshold}, and the dashed line is the EMM threshold ({emm_threshold})."
    ),
    "optimum": (
        "Samples (left) and the same samples above their nearest training images (middle) for each run, "
        "and the memorization ratio of each run (right, d1/d2 < {ratio_threshold}): the closed-form optimal "
        "denoiser copies its training set; a trained model copies it only below its EMM."
    ),
}


def threshold_text(x: float) -> str:
    """A threshold as a reader writes it: 1/3 for 0.333..., 0.25 for 0.25, 90% is the caller's choice."""
    from fractions import Fraction

    f = Fraction(float(x)).limit_denominator(12)
    if f.denominator > 1 and f.numerator < 10 and abs(float(f) - float(x)) < 1e-9 and len(f"{float(x):g}") > 4:
        return f"{f.numerator}/{f.denominator}"
    return f"{float(x):g}"


def figure_caption(
    name: str, fig: dict, experiments: dict, *, ratio_threshold: float | None, emm_threshold: float | None
) -> str:
    """What a figure varies and how to read it (for the HTML report), unless the config gives a caption.

    ``ratio_threshold`` (score.threshold, d1/d2) and ``emm_threshold`` (emm.threshold): the settings the
    figure's runs use; None where its values differ (the caption then names the setting)."""
    if fig.get("caption"):
        return fig["caption"]
    parts = [f"{fig.get('title', name)}" + (f" (paper {fig['paper']})" if fig.get("paper") else "") + "."]
    for exp in fig["experiments"]:
        spec = experiments[exp]
        title = spec.get("title", exp)
        factor = spec.get("factor")
        fixed = ", ".join(f"{k}={v}" for k, v in (spec.get("set") or {}).items())
        if factor:
            keys = factor if isinstance(factor, str) else " + ".join(factor)
            shown = spec.get("labels") or spec.get("values")
            text = f"{title}: varies {keys} over {', '.join(str(x) for x in shown)}"
        else:
            text = f"{title}: the base settings"
        if fixed:
            text += f" (with {fixed})"
        if spec.get("mode") == "sizes":
            text += f" at |D| = {', '.join(str(x) for x in spec['sizes'])}"
        parts.append(text + "; everything else as in the base config.")
    parts.append(
        _HOW_TO_READ[fig["kind"]].format(
            ratio_threshold="score.threshold" if ratio_threshold is None else threshold_text(ratio_threshold),
            emm_threshold="emm.threshold" if emm_threshold is None else f"{emm_threshold:.0%}",
        )
    )
    return " ".join(parts)


def check_data(plan: dict[str, list[Value]]) -> None:
    """Files the data settings need exist (run before any job, but not in a dry run, which must work
    without the data): the CIFAR-10 tarball or folder, image folders, for the main and blended source."""
    from pathlib import Path

    seen = set()
    for vals in plan.values():
        for v in vals:
            d = v.settings["data"]
            where = f"experiments.{v.experiment} value {v.display!r}"
            for key, src in (("data", d), ("data.blend", d.get("blend") or None)):
                if not src or src["source"] not in ("cifar10", "folder"):
                    continue
                path, source = src.get("path"), src["source"]
                if (source, path) in seen:
                    continue
                seen.add((source, path))
                download = src.get("download", d.get("download"))
                if source == "cifar10" and download and not (path and Path(path).exists()):
                    continue  # the job downloads it
                if not path:
                    raise ConfigError(f"{where}: {key}.path is required for source {source}")
                if not Path(path).exists():
                    hint = (
                        "the official cifar-10-python.tar.gz (or set data.download: true on a machine online)"
                        if source == "cifar10"
                        else "a folder with one sub-folder of images per class"
                    )
                    raise ConfigError(f"{where}: {key}.path {path!r} does not exist; expected {hint}")
                if source == "folder" and not Path(path).is_dir():
                    raise ConfigError(
                        f"{where}: {key}.path {path!r} is not a folder; expected a folder with one sub-folder "
                        "of images per class"
                    )
                if source == "cifar10":  # cheap: found where the loader looks, gzip tar of cifar-10-batches-py/
                    try:
                        check_path(path)
                    except (ValueError, OSError) as e:
                        raise ConfigError(f"{where}: {key}.path {path!r} is not CIFAR-10: {e}") from None


def _fill_defaults(node: Any, schema: dict) -> None:
    """Set the schema's defaults of missing keys, recursively (as Snakemake's validate does), also inside
    a mapping that a ``oneOf`` allows (e.g. ``data.blend``: null or a block)."""
    if not isinstance(node, dict):
        return
    if schema.get("type") != "object":
        for branch in schema.get("oneOf") or schema.get("anyOf") or []:
            if branch.get("type") == "object":
                _fill_defaults(node, branch)
        return
    for key, sub in (schema.get("properties") or {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            _fill_defaults(node[key], sub)


def load_config(paths: list[str]) -> dict:
    """A config as the workflow sees it: YAML files layered in order (later keys win, blocks merge),
    validated against the workflow's schema with its defaults filled in."""
    import yaml
    from jsonschema import Draft202012Validator

    cfg: dict = {}
    for path in paths:
        with open(path) as fh:
            cfg = merge(cfg, yaml.safe_load(fh) or {})
    schema = validate.load_schema()
    errors = sorted(Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise ConfigError(f"{'.'.join(map(str, e.path)) or 'config'}: {e.message}")
    _fill_defaults(cfg, schema)
    return cfg


def retype_overrides(overrides: dict, cfg: dict) -> None:
    """`--config 'base={train: {lr: 0.001}}'`: Snakemake reads a nested VALUE with YAML's BaseLoader,
    which keeps every scalar inside it a string ('0.001'). Read those leaves as --configfile would
    (YAML scalars: numbers, booleans, null), where the merged config still holds the string."""
    import yaml

    def walk(over, cur):
        items = over.items() if isinstance(over, dict) else enumerate(over)
        for key, leaf in items:
            if isinstance(cur, dict) and key not in cur or isinstance(cur, list) and key >= len(cur):
                continue
            if not isinstance(cur, (dict, list)):
                return
            if isinstance(leaf, (dict, list)):
                walk(leaf, cur[key])
            elif isinstance(leaf, str) and cur[key] == leaf:
                try:
                    cur[key] = yaml.safe_load(leaf) if leaf.strip() else leaf
                except yaml.YAMLError:
                    pass

    for key, value in overrides.items():
        if isinstance(value, (dict, list)) and key in cfg:
            walk(value, cfg[key])


def figure_spec(config: dict, plan: dict[str, list[Value]], name: str, results) -> dict:
    """A figure's config entry plus, per experiment value, where its results lie under ``results``
    (the ``results/<name>`` folder; file names from :mod:`diffmem.plan.layout`) and its caption."""
    from pathlib import Path

    results = Path(results)
    fig = dict(config["figures"][name])
    fig["name"] = name
    values = []
    for exp in fig["experiments"]:
        spec = config["experiments"][exp]
        for v in plan[exp]:
            values.append(
                {
                    "experiment": exp,
                    "title": spec.get("title", exp),
                    "factor": spec.get("factor"),
                    "label": v.label,
                    "display": v.display,
                    "group": v.group,  # the value a replicate repeats (experiment key replicates)
                    "seed": v.settings["data"]["seed"],
                    "mode": v.mode,
                    "run_id": v.run_id,
                    "emm": str(results / layout.emm_result(exp, v.label)) if v.mode == "emm" else None,
                    "scores": {
                        str(s): str(results / layout.memorization(v.run_id, s, v.sample_id, v.score_id))
                        for s in v.sizes
                    },
                    # (samples grid, nearest-neighbour grid) per size, drawn by kind optimum
                    "grids": {
                        str(s): [
                            str(results / layout.sample_files(v.run_id, s, v.sample_id)["grid"]),
                            str(results / layout.score_files(v.run_id, s, v.sample_id, v.score_id)["nearest"]),
                        ]
                        for s in v.sizes
                    },
                    "ratio_threshold": v.settings["score"]["threshold"],
                    "emm_threshold": v.emm.get("threshold", config["emm"]["threshold"]),
                }
            )
    fig["values"] = values
    ratio_thr = {v["ratio_threshold"] for v in values}
    emm_thr = {v["emm_threshold"] for v in values}
    fig["caption"] = figure_caption(
        name,
        fig,
        config["experiments"],
        ratio_threshold=ratio_thr.pop() if len(ratio_thr) == 1 else None,
        emm_threshold=emm_thr.pop() if len(emm_thr) == 1 else None,
    )
    return fig
