"""The GPU memory model (diffmem.plan.memory): activations counted from the net, the H200 peak, micro-batches."""

from __future__ import annotations

import json

import pytest

from diffmem.errors import ConfigError
from diffmem.plan import config as dmc
from diffmem.plan import memory
from diffmem.science.activations import saved_bytes_per_image

PAPER = {"arch": "ddpmpp", "resolution": 32, "img_channels": 3, "model_channels": 128, "channel_mult": [2, 2, 2],
         "num_blocks": 2, "attn_resolutions": [16], "dropout": 0.13, "embedding": "positional",
         "encoder_type": "standard", "decoder_type": "standard", "label_dim": 0}  # fmt: skip


def paper_nets() -> list[dict]:
    plan = dmc.expand(dmc.load_config(["config/paper.yaml"]))
    return [v.settings["model"] for vals in plan.values() for v in vals if v.settings["model"]["arch"] != "optimum"]


def test_every_net_of_the_shipped_configs_is_counted():
    """The table holds every net the shipped configs train, so the plan never falls back to the fit for them."""
    missing = set()
    for path in ["config/paper.yaml", "config/config.yaml", "config/smoke.yaml", "config/extended.yaml"]:
        plan = dmc.expand(dmc.load_config([path]))
        for vals in plan.values():
            for v in vals:
                m = v.settings["model"]
                if m["arch"] != "optimum" and memory.net_key(m) not in memory.counted():
                    missing.add(memory.net_key(m))
    assert not missing, f"run `python -m diffmem count-activations config/*.yaml`: {sorted(missing)}"


def test_a_recount_equals_the_table():
    """The counter is deterministic: a small net of the smoke config recounted gives the stored bytes exactly."""
    rec = min(memory.counted().values(), key=lambda r: r["bytes_per_image"])
    again = saved_bytes_per_image(rec["net"])
    assert again["bytes_per_image"] == rec["bytes_per_image"] and again["n_params"] == rec["n_params"]


@pytest.mark.parametrize(
    "net",
    [
        {**PAPER, "model_channels": 16, "num_blocks": 3, "resolution": 16, "attn_resolutions": [8]},
        {**PAPER, "model_channels": 16, "channel_mult": [1, 2, 2, 2], "attn_resolutions": [16]},
        {**PAPER, "model_channels": 24, "num_blocks": 1, "resolution": 16, "attn_resolutions": []},
    ],
)
def test_the_fit_for_an_uncounted_net_is_an_upper_bound_that_is_not_wasteful(net):
    """Nets in no table: the fit (with its margin) is at least the count and at most 1.45x it."""
    assert memory.net_key(net) not in memory.counted()
    counted = saved_bytes_per_image(net)
    fit = memory.activation_bytes(net)
    assert counted["bytes_per_image"] <= fit <= 1.45 * counted["bytes_per_image"], fit / counted["bytes_per_image"]
    assert counted["n_params"] <= memory.n_params(net) <= 1.45 * counted["n_params"]


def test_the_model_reproduces_the_measured_h200_peak():
    doc = json.loads(memory.PEAK_BENCH.read_text())
    rec = next(r for r in doc["results"] if r["case"] == "paper")
    assert memory.train_peak_mib(PAPER, 512) == pytest.approx(rec["cuda_peak_allocated_mib"], rel=1e-9)
    assert memory.activation_bytes(PAPER) / 2**20 == pytest.approx(80.0, abs=0.1)  # counted from the net
    assert 1.0 < memory.overhead() < 1.3


def test_micro_batch_fits_and_divides():
    assert memory.micro_batch(PAPER, 512, None) == 512  # nothing declared: the whole per-GPU batch
    assert memory.micro_batch(PAPER, 512, 141) == 512  # an H200 holds the paper's step (48 GB)
    m40 = memory.micro_batch(PAPER, 512, 40)
    assert 512 % m40 == 0 and m40 < 512 and memory.train_peak_mib(PAPER, m40) <= (40 - memory.RESERVE_GB) * 1e9 / 2**20
    assert memory.train_peak_mib(PAPER, 2 * m40) > (40 - memory.RESERVE_GB) * 1e9 / 2**20 or 512 % (2 * m40)
    with pytest.raises(ConfigError, match=r"compute.gpu_memory_gb is 2.1"):
        memory.micro_batch(PAPER, 512, 2.1)


def test_every_paper_net_plans_within_80_gb():
    """The deepest net of the preset (12 blocks: about 190 GiB at batch 512) trains in rounds on an 80 GB GPU."""
    for net in paper_nets():
        m = memory.micro_batch(net, 512, 80)
        assert memory.train_peak_mib(net, m) <= 78e9 / 2**20
    deep = max(paper_nets(), key=memory.activation_bytes)
    assert deep["num_blocks"] == 12 and memory.micro_batch(deep, 512, 80) == 128
    assert memory.train_peak_mib(deep, 512) / 1024 > 180
