"""config/paper.yaml: validates, expands without touching data, and its nets are the paper's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from runs import EDM_CIFAR10
from snakemake.utils import validate

from diffmem.plan import config as dmc
from diffmem.science import nets, schedule

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def paper():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    validate(cfg, schema=str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    plan = dmc.expand(cfg)
    dmc.check_plan(cfg, plan)  # must not need the CIFAR-10 tarball
    return cfg, plan


def test_paper_settings(paper):
    cfg, plan = paper
    base = plan["basic"][0].settings
    assert base["data"]["source"] == "cifar10" and base["data"]["resolution"] == 32
    assert base["train"]["duration"] == {"unit": "epochs", "value": 40000}
    assert base["train"]["batch"] == 512 and base["train"]["lr"] == pytest.approx(2e-4)
    assert base["train"]["ema"]["decay"] == pytest.approx(0.99929)
    assert base["train"]["seed"] == 1024 and base["sample"]["n"] == 10000
    s = dmc.run_settings(base, 1000)  # 40M images: a snapshot every 2.5M images -> 16 snapshots
    assert len(schedule.training_plan(s["train"], 1000)["snapshot_steps"]) == 16


def test_paper_preset_runs_the_released_codes_protocol(paper):
    """Each quirk of the paper's code (issue 10) is set to the official behaviour in every experiment."""
    _, plan = paper
    for name, values in plan.items():
        for v in values:
            d, t = v.settings["data"], v.settings["train"]
            assert (d["pick"], d["resize"]) == ("first", "lanczos"), name
            assert t["warmup"] == {"unit": "epochs", "value": 200, "mode": "official"}, name
            # EDM's own training (the Fig. 1a-b model) reshuffles (--window-size=0.5)
            assert t["order"] == ("reshuffle" if name == "edm_recipe" else "fixed"), name
            assert t["truncate_kimg"] is True, name
            assert t["ema"]["rampup"] == 0.05, name
            assert t["ema"]["mode"] == ("official_final" if name == "ema" else "official"), name
    assert [v.settings["train"]["ema"]["decay"] for v in plan["ema"]] == [
        0.99929,
        0.999,
        0.99,
        0.9,
        0.8,
        0.5,
        0.2,
        0.1,
        0.0,
    ]


def test_paper_schedule_at_1000_images(paper):
    """The schedule the paper preset trains with, at |D| = 1,000: warm-up over 200 kimg from lr 0, EMA
    half-life 0.05 n x 50 until 200 epochs, then 500k images (diffmem.science.schedule;
    tests/science/test_schedule.py holds it against the released code's formulas)."""
    from diffmem.science import schedule

    _, plan = paper
    s = dmc.run_settings(plan["basic"][0].settings, 1000)
    rows = {r["step"]: r for r in schedule.schedule_rows(s["train"], 1000, [0, 100, 391, 78_124])}
    assert rows[0]["lr"] == 0 and rows[0]["ema_beta"] == 0
    assert rows[100]["lr"] == pytest.approx(2e-4 * 51_200 / 200_000)
    assert rows[100]["ema_halflife_images"] == pytest.approx(0.05 * 51_200 * 50)
    assert rows[391]["ema_halflife_images"] == pytest.approx(500_000) and rows[391]["lr"] == 2e-4
    assert rows[78_124]["ema_halflife_images"] == pytest.approx(500_000)


def n_params(settings):
    return nets.describe_net(settings["model"])["n_params"]


def test_paper_nets_have_the_papers_parameter_counts(paper):
    _, plan = paper
    assert n_params(plan["basic"][0].settings) == 35_125_251
    ncsn = [n_params(v.settings) for v in plan["skip_8x8_ncsnpp"]]
    assert len(set(ncsn)) == 1 and ncsn[0] != 35_125_251
    depth = {v.value: v for v in plan["depth"]}
    assert n_params(depth[4].settings) == 55_732_739
    # a disabled skip connection feeds zeros: the parameter count does not change
    for v in plan["skip_32x32_ddpmpp"] + plan["skip_location_ddpmpp"]:
        assert n_params(v.settings) == 35_125_251
    # wider nets grow
    widths = [n_params(v.settings) for v in plan["width"]]
    assert widths == sorted(widths) and widths[0] == 35_125_251


def test_base_value_is_shared_in_the_paper_plan(paper):
    _, plan = paper
    base = plan["basic"][0].run_id
    shared = [name for name, vals in plan.items() if any(v.run_id == base for v in vals)]
    assert {"basic", "width", "depth", "weight_decay", "batch", "classes"} <= set(shared)
    # the EMA sweep trains with the released code's mode4 (--final-ema), so even its 0.99929 is its own run
    assert "ema" not in shared


def test_unique_labels_at_full_size(paper):
    _, plan = paper
    unique = [v for v in plan["full_unique"] if v.value == "unique"][0]
    s = dmc.run_settings(unique.settings, 50000)
    assert s["model"]["label_dim"] == 50000 and s["diffusion"]["precond"] == "edm"
    assert s["model"]["num_blocks"] == 4


def test_missing_cifar_tarball_is_named_before_any_job(paper, tmp_path):
    cfg, _ = paper
    with pytest.raises(dmc.ConfigError, match=r"base.data.path 'data/cifar-10-python.tar.gz' does not exist"):
        dmc.check_data(cfg)


# The released scripts' skip-connection masks (sail-sg/DiffMemorize scripts/model_config.md, "Skip
# connections"), as --skip-connections strings: the same list for DDPM++/VP (positional embedding) and
# NCSN++/VE (Fourier embedding). Their index i is the i-th encoder output (conv, block0, block1 at 32x32,
# then down, block0, block1 at 16x16 and at 8x8), which is model.skip's order too: the mapping is identity.
OFFICIAL_SKIPS = {
    "full": ["1,1,1,1,1,1,1,1,1"],
    "32x32": [
        "1,1,1,0,0,0,0,0,0",
        "1,1,0,0,0,0,0,0,0",
        "1,0,1,0,0,0,0,0,0",
        "0,1,1,0,0,0,0,0,0",
        "1,0,0,0,0,0,0,0,0",
        "0,1,0,0,0,0,0,0,0",
        "0,0,1,0,0,0,0,0,0",
    ],
    "16x16": [
        "0,0,0,1,1,1,0,0,0",
        "0,0,0,1,1,0,0,0,0",
        "0,0,0,1,0,1,0,0,0",
        "0,0,0,0,1,1,0,0,0",
        "0,0,0,1,0,0,0,0,0",
        "0,0,0,0,1,0,0,0,0",
        "0,0,0,0,0,1,0,0,0",
    ],
    "8x8": [
        "0,0,0,0,0,0,1,1,1",
        "0,0,0,0,0,0,1,1,0",
        "0,0,0,0,0,0,1,0,1",
        "0,0,0,0,0,0,0,1,1",
        "0,0,0,0,0,0,1,0,0",
        "0,0,0,0,0,0,0,1,0",
        "0,0,0,0,0,0,0,0,1",
    ],
}
# "Retain specific skip connections at different locations: take all the above combinations when skip
# number=1".
OFFICIAL_LOCATIONS = [m for r in ("32x32", "16x16", "8x8") for m in OFFICIAL_SKIPS[r] if m.count("1") == 1]


def _masks(values):
    return [",".join(str(b) for b in v.settings["model"]["skip"]) for v in values]


@pytest.mark.parametrize("arch, embedding, precond", [("ddpmpp", "positional", "vp"), ("ncsnpp", "fourier", "ve")])
def test_paper_skip_experiments_hold_the_official_masks(paper, arch, embedding, precond):
    _, plan = paper
    official = {m for ms in OFFICIAL_SKIPS.values() for m in ms}
    assert len(official) == 22 and len(OFFICIAL_LOCATIONS) == 9
    ours = {}
    for name in (f"skip_location_{arch}", f"skip_32x32_{arch}", f"skip_16x16_{arch}", f"skip_8x8_{arch}"):
        for v in plan[name]:
            s = v.settings
            assert (s["model"]["arch"], s["model"]["embedding"], s["diffusion"]["precond"]) == (
                arch,
                embedding,
                precond,
            ), name
            assert s["model"]["num_blocks"] == 2 and s["model"]["model_channels"] == 128, name
            ours[",".join(str(b) for b in s["model"]["skip"])] = v.run_id
    assert set(ours) == official  # every official mask, nothing else
    assert _masks(plan[f"skip_location_{arch}"]) == OFFICIAL_SKIPS["full"] + OFFICIAL_LOCATIONS
    for res in ("32x32", "16x16", "8x8"):
        assert _masks(plan[f"skip_{res}_{arch}"]) == OFFICIAL_SKIPS["full"] + OFFICIAL_SKIPS[res]
    # a mask shared by two panels (a single skip, all 9) is one run, trained once
    loc = {
        m: v.run_id for m, v in zip(_masks(plan[f"skip_location_{arch}"]), plan[f"skip_location_{arch}"], strict=True)
    }
    assert all(loc[m] == ours[m] for m in loc)
    if arch == "ddpmpp":  # all 9 skips of DDPM++/VP is the basic setup
        assert ours[OFFICIAL_SKIPS["full"][0]] == plan["basic"][0].run_id


def test_skip_mask_order_is_the_encoders_output_order():
    """Index i of model.skip is the i-th encoder output, as in the released --skip-connections: turning one
    skip off zeroes exactly the decoder input of that encoder output's resolution and channel count."""
    net = nets.describe_net(
        {"model_channels": 16, "channel_mult": [1, 2, 2], "num_blocks": 2, "attn_resolutions": [], "resolution": 32}
    )
    assert net["n_skips"] == 9
    import torch

    with torch.device("meta"):
        unet = nets.SongUNet(net["config"])
    # conv (16 ch), block0, block1 (16) at 32x32; down (16), block0, block1 (32) at 16x16; down, blocks (32)
    assert unet.skip_channels == [16, 16, 16, 16, 32, 32, 32, 32, 32]
    assert list(unet.enc)[:4] == ["32x32_conv", "32x32_block0", "32x32_block1", "16x16_down"]


def test_paper_blend_counts_are_the_released_tools(paper):
    """The intra-class experiment counts dogs as the paper's dataset tool does: n - int(n (1 - alpha))."""
    from diffmem.data.sources import blend_count

    _, plan = paper
    assert [v.settings["data"]["blend"]["rounding"] for v in plan["blend"]] == ["official"] * 5
    at_08 = [v for v in plan["blend"] if v.settings["data"]["blend"]["alpha"] == 0.8][0]
    b = at_08.settings["data"]["blend"]
    assert blend_count(1000, b["alpha"], b["rounding"]) == 801


def test_paper_fig1ab_model_is_the_edm_recipe(paper):
    """NVlabs's edm-cifar10-32x32-uncond-vp, as EDM's train.py configures it for CIFAR-10 (--augment=0.12,
    augment_dim 9, DDPM++ with 4 blocks, lr 1e-3, 200 Mimg, EMA half-life 500 kimg, lr ramp-up 10 Mimg)."""
    cfg, plan = paper
    assert cfg["figures"]["fig_optimum"]["experiments"] == ["optimum", "edm_recipe"]
    (v,) = plan["edm_recipe"]
    assert v.sizes == [50000]
    s = dmc.run_settings(v.settings, 50000)
    m, t = s["model"], s["train"]
    assert (m["arch"], m["num_blocks"], m["model_channels"], m["channel_mult"]) == ("ddpmpp", 4, 128, [2, 2, 2])
    assert m["dropout"] == 0.13 and m["augment_dim"] == 9 and s["diffusion"]["precond"] == "vp"
    assert t["augment"] == EDM_CIFAR10
    assert t["lr"] == 1e-3 and t["batch"] == 512 and t["duration"] == {"unit": "images", "value": 200_000_000}
    assert n_params(s) == 55_732_739 + 9 * 128  # EDM's 55.7M-parameter DDPM++ plus the augment projection
    rows = {r["step"]: r for r in schedule.schedule_rows(t, 50000, [0, 9765, 19_532, 390_624])}
    assert rows[9765]["lr"] == pytest.approx(1e-3 * 9765 * 512 / 10_000_000)  # EDM: lr x min(n / 10 Mimg, 1)
    assert rows[19_532]["lr"] == 1e-3  # 19,532 x 512 images before it >= 10M
    assert rows[19_532]["ema_halflife_images"] == pytest.approx(500_000)  # EDM: min(500 kimg, 0.05 n)
    assert rows[9765]["ema_halflife_images"] == pytest.approx(0.05 * 9765 * 512)
    assert len(schedule.training_plan(t, 50000)["snapshot_steps"]) == 1
    # every other experiment trains without augmentation
    assert all(
        not x.settings["model"].get("augment_dim") and x.settings["train"]["augment"]["p"] == 0
        for name, vals in plan.items()
        if name not in ("edm_recipe", "optimum")
        for x in vals
    )
