"""Config errors that a hostile-user campaign found passing the plan and failing in a job (or as a Python
traceback): each is refused before any job, with a ``config error:`` (a ConfigError) naming the key.

Configs are the smoke config with an overlay, read and planned as the workflow does
(:func:`diffmem.plan.load.load_config`, :meth:`diffmem.plan.plan.Plan.build` without the data files).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from diffmem.errors import ConfigError
from diffmem.plan.load import load_config
from diffmem.plan.plan import Plan

SMOKE = Path(__file__).resolve().parents[2] / "config" / "smoke.yaml"


def refused(overlay: dict, tmp_path) -> str | None:
    """The ConfigError that refuses smoke + ``overlay`` before any job, or None when it plans (any other
    exception escapes: the workflow would print it as a traceback)."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    try:
        Plan.build(load_config([str(SMOKE), str(path)]), check_files=False)
    except ConfigError as e:
        return str(e)
    return None


def judge(overlay: dict, tmp_path, want: str | None) -> None:
    got = refused(overlay, tmp_path)
    if want is None:
        assert got is None, f"refused: {got}"
    else:
        assert got is not None, f"planned, but should be refused ({want})"
        assert re.search(want, got), got


def basic(**keys) -> dict:
    return {"experiments": {"basic": keys}}


@pytest.mark.parametrize(
    ("start", "want"),
    [
        ([2, 4, 16], None),
        ([2, 8, 10, 16], None),
        ([2, 5, 16], r"experiments\.basic value 'base': emm\.start: sizes \[5\] cannot be made.*multiples of 2"),
        ([2, 3, 7, 16], r"emm\.start: sizes \[3, 7\] cannot be made"),
    ],
)
def test_emm_start_holds_only_allowed_sizes(start, want, tmp_path):
    """Classes 2: only even sizes (the emm_round job refused [5] after the dry run)."""
    judge(basic(emm={"start": start}), tmp_path, want)
    judge({"emm": {"start": start}}, tmp_path, want and want.replace("basic", r"\w+"))


@pytest.mark.parametrize(("classes", "want"), [(1, None), (2, r"data\.classes=2 but data\.blend"),
                                               (3, r"data\.classes=3 but data\.blend")])  # fmt: skip
def test_a_blend_needs_one_class(classes, want, tmp_path):
    """The subset job refused classes != 1 with a blend only after the dry run."""
    blend = {"source": "digits", "alpha": 0.5, "class": 7}
    judge({"base": {"data": {"blend": blend, "classes": classes}}}, tmp_path, want)
    judge(basic(set={"data.blend": blend, "data.classes": classes}), tmp_path,
          want and rf"experiments\.basic value 'base': {want}")  # fmt: skip


@pytest.mark.parametrize(
    ("overlay", "want"),
    [
        ({"base": {"data": {"classes": 11}}}, r"experiments\.\w+ value .*: data\.classes=11 but the source has 10"),
        (basic(set={"data.classes": 11}), r"experiments\.basic value 'base': data\.classes=11"),
        (
            {"base": {"train": {"snapshots": {"every": {"unit": "images", "value": 12345}, "timing": "official"}}}},
            r"experiments\.\w+ value .*: train\.snapshots\.every: .*multiple of 50000 images, got 12345",
        ),
        ({"base": {"data": {"source": "patches"}}}, r"experiments\.\w+ value .*: data\.patches must be a mapping"),
    ],
)
def test_value_errors_of_a_value_are_config_errors(overlay, want, tmp_path):
    """They were ValueErrors, which escape the workflow's ``except ConfigError`` as a traceback."""
    judge(overlay, tmp_path, want)


def test_official_snapshots_at_whole_ticks_still_plan(tmp_path):
    snapshots = {"every": {"unit": "images", "value": 50_000}, "timing": "official"}
    judge({"base": {"train": {"snapshots": snapshots, "duration": {"unit": "images", "value": 100_000}}}}, tmp_path,
          None)  # fmt: skip


FIXED = {"random_labels": {"kind": "fixed", "experiments": ["random_labels"]}}  # values labelled 1 and 5


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({"group_by": {"1": "few", 5: "many"}}, None),
        ({"group_by": {"1": "few", "7": "many"}}, r"figures\.random_labels\.group_by names \['7'\]"),
        ({"x": {"1": 1, "5": 5}}, None),
        ({"x": {"1": 1, "nope": 5}}, r"figures\.random_labels\.x names \['nope'\]"),
        ({"reference": [{"value": 5, "size": 8, "ratio": 0.5}]}, None),
        ({"reference": [{"value": 100, "size": 8, "ratio": 0.5}]}, None),  # a number: stands at 100
        (
            {"reference": [{"value": "C100", "size": 8, "ratio": 0.5}]},
            r"figures\.random_labels\.reference\[\]\.value"
            r" names \['C100'\]",
        ),  # fmt: skip
        ({"x": {"1": 1, "5": 5, "C100": 100}, "reference": [{"value": "C100", "size": 8, "ratio": 0.5}]}, None),
        ({"x_scale": "category", "reference": [{"value": 100, "size": 8, "ratio": 0.5}]}, r"reference\[\]\.value"),
        ({"sizes": [4, 8]}, None),
        ({"sizes": [4, 16, 32]}, r"figures\.random_labels\.sizes names \|D\| \[16, 32\]"),
    ],
)
def test_figure_keys_name_values_and_sizes_its_experiments_have(extra, want, tmp_path):
    judge({"figures": {"random_labels": {**FIXED["random_labels"], **extra}}}, tmp_path, want)


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({"reference": [{"value": 8, "size": 4, "ratio": 0.5}]}, None),
        ({"reference": [{"value": 16, "size": 4, "ratio": 0.5}]}, r"figures\.data\.reference\[\]\.value names \[16\]"),
        ({"sizes": [4, 1234]}, None),  # an EMM search: its sizes are not known in advance
    ],
)
def test_figure_keys_of_a_sweep(extra, want, tmp_path):
    judge({"figures": {"data": extra}}, tmp_path, want)


def test_figure_sizes_of_an_epochs_figure(tmp_path):
    judge({"figures": {"epochs": {"sizes": [8]}}}, tmp_path, None)
    judge({"figures": {"epochs": {"sizes": [6]}}}, tmp_path, r"figures\.epochs\.sizes names \|D\| \[6\]")
