"""diffmem.plan.settings_factory: run settings outside the workflow, from the schema's defaults."""

from __future__ import annotations

import pytest

from diffmem.plan import config as dmc
from diffmem.plan.settings_factory import BLOCKS, run_settings, schema_defaults


def test_defaults_are_what_a_config_without_base_gets(tmp_path):
    """The factory's defaults are the workflow's: a config that sets nothing in base reads the same."""
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nexperiments: {basic: {title: B, factor: null, values: [null]}}\n")
    cfg = dmc.load_config([str(path)])
    assert schema_defaults() == {name: cfg["base"][name] for name in BLOCKS}


def test_a_block_updates_key_by_key_and_a_key_replaces_its_whole_value():
    s = run_settings(train={"lr": 0.5, "ema": {"mode": "decay", "decay": 0.0}}, data={"source": "test"})
    d = schema_defaults()
    assert s["train"]["lr"] == 0.5 and s["train"]["batch"] == d["train"]["batch"]
    assert s["train"]["ema"] == {"mode": "decay", "decay": 0.0}  # no rampup merged in from the default
    assert s["data"] == {**d["data"], "source": "test"} and s["sample"] == d["sample"]
    s["train"]["betas"].append(1.0)  # every call a fresh copy
    assert run_settings()["train"]["betas"] == d["train"]["betas"]
    with pytest.raises(ValueError, match="unknown blocks"):
        run_settings(trian={})
