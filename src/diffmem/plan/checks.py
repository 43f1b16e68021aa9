"""Checks of a plan that need more than the schema, run before any job: the sizes a value asks for can be
made from its data, EMM brackets hold an allowed size, settings that must agree do (sigma_min < sigma_max,
a batch the GPUs of a run share evenly), figures name experiments of the right mode (:func:`check_plan`),
and every data file the plan reads holds what its source expects (:func:`check_data`, skipped in a dry run;
run before ids hash the data)."""

from __future__ import annotations

from pathlib import Path

from diffmem import data as dmdata
from diffmem.data.cifar10 import check_path
from diffmem.data.folder import check_folder
from diffmem.data.sources import class_counts, known_sizes, sizes_of_counts
from diffmem.errors import ConfigError
from diffmem.plan.bounds import check_snapshots, run_where
from diffmem.plan.expand import Value, expand, factor_keys, value_settings
from diffmem.plan.figure_specs import check_figure
from diffmem.plan.records import data_settings, run_settings
from diffmem.science import schedule


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
    """Checks that need more than the schema, run before any job: nets resolve, sizes can be made, the
    training schedule can be planned, figures name existing experiments of the right mode and values, sizes
    their experiments have (nets are resolved by :func:`expand`). A ValueError raised while checking a value
    (data or science code judging a setting) becomes a ConfigError naming the experiment and value."""
    for vals in plan.values():
        for v in vals:
            try:
                _check_sizes(v)
                _check_pairs(config, v)
                _check_schedule(v)
            except ConfigError:
                raise
            except ValueError as e:
                raise ConfigError(f"experiments.{v.experiment} value {v.display!r}: {e}") from None
    for fig, spec in config.get("figures", {}).items():
        for exp in spec["experiments"]:
            if exp not in plan:
                raise ConfigError(f"figures.{fig}.experiments names {exp!r}, not in experiments")
            modes = {v.mode for v in plan[exp]}
            if spec["kind"] in ("epochs", "optimum") and modes != {"sizes"}:
                raise ConfigError(f"figures.{fig}: kind {spec['kind']} needs experiments with mode: sizes")
        check_figure(fig, spec, plan)


def _check_sizes(v: Value) -> None:
    """A value's listed sizes can be made from its data, and its EMM bracket holds one that can."""
    where = f"experiments.{v.experiment} value {v.display!r}"
    lo_hi = (v.emm["lo"], v.emm["hi"]) if v.mode == "emm" else None
    if lo_hi and lo_hi[0] >= lo_hi[1]:
        raise ConfigError(f"{where}: emm.lo={lo_hi[0]} must be < emm.hi={lo_hi[1]}")
    allowed = allowed_sizes(v.settings, load=False)
    if allowed is not None:
        d = v.settings["data"]
        _check_allowed(where, v.sizes if v.mode == "sizes" else [], lo_hi, allowed,
                       f"data {d['source']} with classes={d['classes']}", v.emm.get("start"))  # fmt: skip


def _check_schedule(v: Value) -> None:
    """The training schedule (steps, snapshots) can be planned at every size the value plans: its listed
    sizes, or its EMM bracket's ends and ``emm.start`` (science.schedule raises ValueError naming the key)."""
    if v.settings["model"].get("arch") == "optimum":
        return  # no training
    sizes = v.sizes if v.mode == "sizes" else [v.emm["lo"], v.emm["hi"], *(v.emm.get("start") or [])]
    largest = max(int(n) for n in sizes)  # the most snapshots: counted first, never 10^9 snapshot steps listed
    check_snapshots(run_settings(v.settings, largest), run_where(v, largest))
    for n in sorted(set(sizes)):
        schedule.training_plan(v.settings["train"], int(n))


def _check_pairs(config: dict, v: Value) -> None:
    """Settings that must agree with each other (the schema judges one key at a time): the sampler's noise
    range, and a training batch that the GPUs of a run share evenly."""
    where = f"experiments.{v.experiment} value {v.display!r}"
    lo, hi = v.settings["sample"]["sigma_min"], v.settings["sample"]["sigma_max"]
    if not lo < hi:
        raise ConfigError(f"{where}: sample.sigma_min={lo} must be < sample.sigma_max={hi}")
    gpus, batch = int(config.get("gpus_per_run", 1)) if config.get("gpu") else 1, int(v.settings["train"]["batch"])
    if batch % gpus and v.settings["model"]["arch"] != "optimum":
        raise ConfigError(f"{where}: train.batch={batch} must be a multiple of gpus_per_run={gpus} (each GPU of a "
                          f"run trains on train.batch / gpus_per_run images)")  # fmt: skip
    d = v.settings["data"]
    if d.get("blend") and d.get("classes") not in (None, 1):
        raise ConfigError(f"{where}: data.classes={d['classes']} but data.blend blends one class; set data.classes: 1 "
                          f"(data.blend.class picks it)")  # fmt: skip


def _check_allowed(
    where: str, wanted: list[int], lo_hi: tuple | None, allowed: list[int], made_from: str, start: list | None = None
) -> None:
    """Every size of ``wanted`` is in ``allowed``, an EMM bracket ``lo_hi`` holds one that is, and every size
    of its ``start`` grid is one (the emm_round job would refuse it after the dry run)."""
    for key, sizes in (("sizes", wanted), ("emm.start: sizes", start or [])):
        bad = sorted({int(s) for s in sizes} - set(allowed))
        if bad:
            raise ConfigError(
                f"{where}: {key} {bad} cannot be made from {made_from}; allowed: multiples of "
                f"{allowed[0]} up to {allowed[-1]}"
            )
    if lo_hi and not any(lo_hi[0] <= s <= lo_hi[1] for s in allowed):
        raise ConfigError(
            f"{where}: no allowed size inside emm bracket [{lo_hi[0]}, {lo_hi[1]}]; "
            f"allowed: {allowed[0]}..{allowed[-1]}"
        )


def check_data(config: dict) -> None:
    """Open every data file the plan reads and check it holds what its source expects: the CIFAR-10 tarball
    streamed to its end (its md5 when verified), a dataset zip's labels and count, every image of an image
    folder (its header), for the main and the blended source. Runs before any job (not in a dry run, which
    must work without the data) and before ids hash the files (a folder such as ``/etc`` is refused at its
    first file that is not an image, not read whole); each distinct file once. Then every value's sizes can
    be made from the images per class the files hold. ConfigError naming the config key the path came from,
    the file, and what was expected."""
    checked: dict[tuple, list[int] | None] = {}  # file -> images per class, when the file says
    for name, i, settings in value_settings(config):
        where = f"experiments.{name}.values[{i}]" if factor_keys(config["experiments"][name]) else f"experiments.{name}"
        for key, src in _files(data_settings(settings)).items():
            if (ident := _ident(src, key)) not in checked:
                checked[ident] = _check_source(src, *ident[2:], _path_key(config, name, i, key), where)
    if any(c is not None for c in checked.values()):  # the files passed: ids may hash them now
        for vals in expand(config).values():
            for v in vals:
                d = data_settings(v.settings)
                _check_sizes_held(v, d, {key: checked[_ident(src, key)] for key, src in _files(d).items()})


def _files(d: dict) -> dict[str, dict]:
    """The sources of data settings ``d`` that read files, by key (data, data.blend)."""
    both = {"data": d, "data.blend": d.get("blend")}
    return {key: src for key, src in both.items() if src and src["source"] in ("cifar10", "folder")}


def _ident(src: dict, key: str) -> tuple:
    """What one check covers: the source, its resolved path, and its (verify_md5, download)."""
    return (src["source"], _resolved(src.get("path")), *_file_flags(src, blend=key != "data"))


def _file_flags(src: dict, blend: bool) -> tuple[bool, bool]:
    """(verify_md5, download) of a main or blended source, with the defaults its loader uses."""
    from diffmem.data.subsets import BLEND_DEFAULTS, SPEC_DEFAULTS  # numpy

    flags = {**(BLEND_DEFAULTS if blend else SPEC_DEFAULTS), **src}
    return bool(flags["verify_md5"]), bool(flags["download"])


def _resolved(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _check_source(src: dict, verify_md5: bool, download: bool, key: str, where: str) -> list[int] | None:
    """Check one cifar10 or folder source's files (``key``: the config key that gave its path; ``where``: the
    first value that reads it); the images per class they hold when the files say (a folder, a zip)."""
    path, source, used = src.get("path"), src["source"], f"data of {where}"
    file = Path(path).expanduser() if path else None  # as diffmem.data.load_source reads it
    if source == "cifar10" and download and not (file and file.exists()):
        return None  # the job downloads it
    if not file:
        raise ConfigError(f"{where}: {key} is required for source {source}")
    if not file.exists():
        hint = (
            "the official cifar-10-python.tar.gz (or set data.download: true on a machine online)"
            if source == "cifar10"
            else "a folder with one sub-folder of images per class"
        )
        raise ConfigError(f"{key} {path!r} does not exist ({used}); expected {hint}")
    if source == "folder" and not file.is_dir():
        raise ConfigError(
            f"{key} {path!r} is not a folder ({used}); expected a folder with one sub-folder of images per class"
        )
    try:
        return check_path(str(file), verify_md5=verify_md5) if source == "cifar10" else check_folder(file)
    except (ValueError, OSError) as e:
        what = "CIFAR-10" if source == "cifar10" else "an image folder"
        raise ConfigError(f"{key} {path!r} is not {what} ({used}): {e}") from None


def _path_key(config: dict, name: str, i: int, key: str) -> str:
    """The config key that gave value ``i`` of experiment ``name`` its ``<key>.path`` (``key``: data or
    data.blend): the value's factor, else the experiment's ``set:``, else ``base``."""
    exp, target = config["experiments"][name], f"{key}.path"
    keys = factor_keys(exp)
    if keys:
        parts = [exp["values"][i]] if len(keys) == 1 else list(exp["values"][i])
        for j, (k, part) in enumerate(zip(keys, parts, strict=True)):
            if (inside := _sets(k, part, target)) is not None:
                return f"experiments.{name}.values[{i}]{f'[{j}]' if len(keys) > 1 else ''}{inside}"
    for k, x in (exp.get("set") or {}).items():
        if (inside := _sets(k, x, target)) is not None:
            return f"experiments.{name}.set.{k}{inside}"
    return f"base.{target}"


def _sets(k: str, x, target: str) -> str | None:
    """Whether setting dotted key ``k`` to ``x`` sets dotted key ``target``: '' when ``k`` is ``target``,
    '.<rest>' when ``x`` is a mapping holding it at ``<rest>``, else None."""
    if k == target:
        return ""
    if not target.startswith(k + "."):
        return None
    rest = target[len(k) + 1 :]
    for part in rest.split("."):
        if not isinstance(x, dict) or part not in x:
            return None
        x = x[part]
    return f".{rest}"


def _check_sizes_held(v: Value, d: dict, held: dict) -> None:
    """Value ``v``'s sizes (and EMM bracket) can be made from the images per class its files hold (``held``:
    by key, data or data.blend, None where the file does not say; then the source's known counts)."""
    if all(c is None for c in held.values()):
        return
    blend = d.get("blend")
    main = held.get("data") or class_counts(d, compute=False)
    other = (held.get("data.blend") or class_counts({**d, **blend}, compute=False)) if blend else None
    if main is None or (blend and other is None):
        return
    allowed = sizes_of_counts(d, main, other)
    if not allowed:
        return  # a blend class that is not there: make_subset names it
    lo_hi = (v.emm["lo"], v.emm["hi"]) if v.mode == "emm" and v.emm["lo"] < v.emm["hi"] else None
    per_class = "; ".join(f"{c}" for c in (main, other) if c is not None)
    _check_allowed(f"experiments.{v.experiment} value {v.display!r}", v.sizes if v.mode == "sizes" else [], lo_hi,
                   allowed, f"the images per class its data holds ({per_class})", v.emm.get("start"))  # fmt: skip
