"""What the command line's subcommands call in the library (issue 20: ``__main__`` only parses and prints):
describe-net's KEY=VALUE parsing, count-activations' merge, schedule's choice of a value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffmem.__main__ import main
from diffmem.errors import ConfigError
from diffmem.plan import config as dmc
from diffmem.plan import memory
from diffmem.plan.expand import one_value
from diffmem.science import activations
from diffmem.science.netconfig import NET_DEFAULTS, parse_assignments

ROOT = Path(__file__).resolve().parents[2]


def test_assignments_split_lists_and_keep_other_values_as_text():
    got = parse_assignments(["channel_mult=1, 2", "attn_resolutions=", " skip = 1,0,1", "dropout=0.1", "arch=ncsnpp"])
    assert got == {"channel_mult": ["1", "2"], "attn_resolutions": [], "skip": ["1", "0", "1"], "dropout": "0.1",
                   "arch": "ncsnpp"}  # fmt: skip
    assert set(parse_assignments([f"{k}=1" for k in NET_DEFAULTS])) == set(NET_DEFAULTS)  # every net key
    for items, msg in ((["num_blocks"], "expected KEY=VALUE"), (["=3"], "expected KEY=VALUE"),
                       (["widht=3"], "unknown key 'widht'"), (["dropout=0", "dropout=1"], "given twice")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            parse_assignments(items)


def test_update_counts_adds_only_the_nets_it_lacks(tmp_path, monkeypatch):
    calls = []

    def count_nets(models, key, log=print):
        calls.append(len(models))
        return [{"net": m, "bytes_per_image": 1.0, "n_params": 1} for m in {key(m): m for m in models}.values()]

    monkeypatch.setattr(activations, "count_nets", count_nets)
    a = {**NET_DEFAULTS, "model_channels": 32}
    b = {**NET_DEFAULTS, "model_channels": 16}
    out = tmp_path / "counts.json"
    assert memory.update_counts([a, a], out) == (1, 1)
    assert memory.update_counts([a, b], out) == (1, 2)  # a is known: only b is counted
    doc = json.loads(out.read_text())
    assert doc["about"] == memory.COUNTS_ABOUT and calls == [2, 1]
    assert [r["net"]["model_channels"] for r in doc["nets"]] == [32, 16]  # the known ones first, as they were


def test_one_value_names_what_the_config_has():
    plan = dmc.expand(dmc.load_config([str(ROOT / "config" / "smoke.yaml")]))
    assert one_value(plan, "basic").label == plan["basic"][0].label
    assert one_value(plan, "width", "12").settings["model"]["model_channels"] == 12
    with pytest.raises(ConfigError, match="'nope' is not in the config; it has basic, resolution"):
        one_value(plan, "nope")
    with pytest.raises(ConfigError, match="experiment width has values 8, 12; name one"):
        one_value(plan, "width")


def test_a_bad_call_exits_2_with_the_message(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["schedule", "--configfile", str(ROOT / "config" / "smoke.yaml"), "--experiment", "width", "--size",
              "4", "--steps", "0"])  # fmt: skip
    assert exc.value.code == 2
    assert "diffmem schedule: error: --value: experiment width has values 8, 12; name one" in capsys.readouterr().err
