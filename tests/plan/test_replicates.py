"""Replicates: every value repeated over subset seeds."""

from __future__ import annotations

import math

import pytest

from diffmem import data
from diffmem.plan import config as dmc


# ---------------------------------------------------------------------------------------- replicates
def _config(**exp):
    cfg = dmc.load_config(["config/config.yaml"])
    cfg["experiments"] = {"res": {"factor": "data.resolution", "values": [8, 4], **exp}}
    cfg["figures"] = {}
    return cfg


def test_replicates_repeat_every_value_over_subset_seeds():
    plan = dmc.expand(_config(replicates=[0, 2]))["res"]
    assert [v.label for v in plan] == ["8_seed0", "8_seed2", "4_seed0", "4_seed2"]
    assert [v.group for v in plan] == ["8", "8", "4", "4"]
    assert [v.replicate for v in plan] == [0, 2, 0, 2]
    assert [v.settings["data"]["seed"] for v in plan] == [0, 2, 0, 2]
    assert len({v.run_id for v in plan}) == 4 and len({v.data_id for v in plan}) == 4
    base = dmc.expand(_config())["res"]
    assert base[0].run_id == plan[0].run_id and base[0].group == "8" and base[0].replicate is None  # seed 0 shared
    with pytest.raises(dmc.ConfigError, match=r"experiments\.res\.replicates"):
        dmc.expand(_config(replicates=[1], set={"data.seed": 3}))
    with pytest.raises(dmc.ConfigError, match=r"experiments\.res\.replicates"):
        dmc.expand(_config(replicates=[]))


def test_geometry_crowding_is_measured_not_assumed():
    """Known direction of the confound the issue names: area averaging pulls digits together."""
    spec = {"source": "digits", "classes": 10, "size": 30, "pick": "random", "resize": "area"}
    g8 = data.make_subset({**spec, "resolution": 8})["geometry"]
    g4 = data.make_subset({**spec, "resolution": 4})["geometry"]
    assert g4["nn_distance"] < g8["nn_distance"]
    assert math.isfinite(g8["nn_pair_ratio"]) and 0 < g8["nn_pair_ratio"] < 1
