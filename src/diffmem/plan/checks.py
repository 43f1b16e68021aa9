"""Checks of a plan that need more than the schema, run before any job: the sizes a value asks for can be
made from its data, EMM brackets hold an allowed size, figures name experiments of the right mode
(:func:`check_plan`), and the data files exist (:func:`check_data`, skipped in a dry run)."""

from __future__ import annotations

from pathlib import Path

from diffmem import data as dmdata
from diffmem.data.cifar10 import check_path
from diffmem.data.sources import known_sizes
from diffmem.errors import ConfigError
from diffmem.plan.expand import Value
from diffmem.plan.records import data_settings


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
    for vals in plan.values():
        for v in vals:
            _check_sizes(v)
    for fig, spec in config.get("figures", {}).items():
        for exp in spec["experiments"]:
            if exp not in plan:
                raise ConfigError(f"figures.{fig}.experiments names {exp!r}, not in experiments")
            modes = {v.mode for v in plan[exp]}
            if spec["kind"] in ("epochs", "optimum") and modes != {"sizes"}:
                raise ConfigError(f"figures.{fig}: kind {spec['kind']} needs experiments with mode: sizes")


def _check_sizes(v: Value) -> None:
    """A value's listed sizes can be made from its data, and its EMM bracket holds one that can."""
    where = f"experiments.{v.experiment} value {v.display!r}"
    lo_hi = (v.emm["lo"], v.emm["hi"]) if v.mode == "emm" else None
    if lo_hi and lo_hi[0] >= lo_hi[1]:
        raise ConfigError(f"{where}: emm.lo={lo_hi[0]} must be < emm.hi={lo_hi[1]}")
    allowed = allowed_sizes(v.settings, load=False)
    if allowed is None:
        return
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


def check_data(plan: dict[str, list[Value]]) -> None:
    """Files the data settings need exist (run before any job, but not in a dry run, which must work
    without the data): the CIFAR-10 tarball or folder, image folders, for the main and blended source."""
    seen = set()
    for vals in plan.values():
        for v in vals:
            d = v.settings["data"]
            where = f"experiments.{v.experiment} value {v.display!r}"
            for key, src in (("data", d), ("data.blend", d.get("blend") or None)):
                if not src or src["source"] not in ("cifar10", "folder"):
                    continue
                if (src["source"], src.get("path")) in seen:
                    continue
                seen.add((src["source"], src.get("path")))
                _check_source(src, src.get("download", d.get("download")), key, where)


def _check_source(src: dict, download, key: str, where: str) -> None:
    """One cifar10 or folder source's files (``key``: data or data.blend) are where it says."""
    path, source = src.get("path"), src["source"]
    if source == "cifar10" and download and not (path and Path(path).exists()):
        return  # the job downloads it
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
            f"{where}: {key}.path {path!r} is not a folder; expected a folder with one sub-folder of images per class"
        )
    if source == "cifar10":  # cheap: found where the loader looks, gzip tar of cifar-10-batches-py/
        try:
            check_path(path)
        except (ValueError, OSError) as e:
            raise ConfigError(f"{where}: {key}.path {path!r} is not CIFAR-10: {e}") from None
