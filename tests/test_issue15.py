"""Issue 15: the patches source, data geometry, convergence beside every ratio, replicate seeds."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from diffmem import data
from diffmem.data import geometry, sources
from diffmem.data.patches import class_counts, kept_positions
from diffmem.plan import config as dmc
from diffmem.results import figures as plotting
from diffmem.science.convergence import levelled_off
from diffmem.steps.sample import sample_run
from diffmem.steps.score import score_run
from diffmem.steps.table import figure_table

PATCHES = {"source": "patches", "patches": {"side": 16, "min_std": 30}, "classes": 2, "resolution": 16,
           "pick": "random", "resize": "area"}  # fmt: skip


# ------------------------------------------------------------------------------------------ patches
def test_patches_are_the_textured_tiles_of_sklearns_photographs():
    from sklearn.datasets import load_sample_images

    images, labels = data.load_source("patches", patches={"side": 16, "min_std": 30})
    assert images.shape == (1010, 3, 16, 16) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [480, 530]  # china, flower: the 1,010 patches
    photos = load_sample_images().images  # names sorted: china, flower
    for cls, photo in enumerate(photos):
        keep = kept_positions(16, 30.0)[cls]
        r, c = keep[7]
        tile = photo[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16].transpose(2, 0, 1)
        np.testing.assert_array_equal(images[labels == cls][7], tile)
        # the filter, recomputed with numpy on every tile: kept exactly when std >= 30
        h, w = photo.shape[0] // 16, photo.shape[1] // 16
        tiles = photo[: h * 16, : w * 16].reshape(h, 16, w, 16, 3).transpose(0, 2, 1, 3, 4).reshape(h * w, -1)
        std = tiles.astype(np.float64).std(axis=1)
        assert [divmod(int(i), w) for i in np.flatnonzero(std >= 30)] == list(keep)
    assert images.std(axis=(1, 2, 3)).min() >= 30


@pytest.mark.parametrize("key", list(sources.PATCH_COUNTS))
def test_patch_counts_table_is_what_the_photographs_give(key):
    assert tuple(class_counts(*key)) == sources.PATCH_COUNTS[key]


def test_digits_class_counts_are_the_facts():
    from sklearn.datasets import load_digits

    assert tuple(np.bincount(load_digits().target)) == sources.DIGITS_CLASS_COUNTS


@pytest.mark.parametrize("spec", [
    PATCHES,
    {**PATCHES, "classes": 1, "resolution": 8},
    {**PATCHES, "patches": {"side": 16, "min_std": 50.5}},  # not in the table: counted with Pillow
    {"source": "digits", "classes": 3, "resolution": 8, "pick": "random", "resize": "area"},
    {"source": "digits", "classes": 1, "resolution": 8, "pick": "random", "resize": "area",
     "blend": {"source": "fonts", "alpha": 0.5, "class": 2}},
    {"source": "digits", "classes": 1, "resolution": 8, "pick": "random", "resize": "area",
     "blend": {"source": "fonts", "alpha": 0.9, "class": 8}},
])  # fmt: skip
def test_known_sizes_agree_with_loading(spec):
    assert sources.known_sizes(spec) == data.allowed_sizes(spec)


def test_patches_subsets_nest_resize_and_name_bad_keys():
    small = data.make_subset({**PATCHES, "size": 10, "resolution": 8})
    big = data.make_subset({**PATCHES, "size": 40, "resolution": 8})
    assert small["images"].shape == (10, 3, 8, 8)
    np.testing.assert_array_equal(big["images"][:10], small["images"])  # nested
    assert np.bincount(big["labels"]).tolist() == [20, 20]  # class-balanced, classes = photographs
    native = data.make_subset({**PATCHES, "size": 40})
    # area resize of the same patches: each 2x2 block averaged
    want = native["images"].astype(float).reshape(40, 3, 8, 2, 8, 2).mean(axis=(3, 5))
    assert np.abs(big["images"] - want).max() <= 0.5 + 1e-9
    for bad, key in (({**PATCHES, "patches": None}, "data.patches"),
                     ({**PATCHES, "patches": {"side": 16}}, "data.patches.min_std"),
                     ({**PATCHES, "patches": {"side": 16, "min_std": 30, "x": 1}}, "data.patches.x"),
                     ({**PATCHES, "source": "digits", "resolution": 8}, "data.patches"),
                     ({**PATCHES, "classes": 3}, "data.classes")):  # fmt: skip
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            data.make_subset({**bad, "size": 4})


def test_other_sources_keep_their_settings_and_ids():
    s = data.make_subset({"source": "digits", "resolution": 8, "classes": 2, "size": 4, "pick": "random",
                          "resize": "area"})  # fmt: skip
    assert "patches" not in s["settings"]


def test_sources_and_config_import_without_numpy():
    patches = "{'source': 'patches', 'patches': {'side': 16, 'min_std': 30}, 'classes': 2}"
    code = (
        "import sys, diffmem.data.sources as s, diffmem.plan.config as c; "
        f"print(s.known_sizes({patches})[-1], s.known_sizes({{'source': 'digits', 'classes': 10}})[-1], "
        "'numpy' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["960", "1740", "False", "False"]


# ----------------------------------------------------------------------------------------- geometry
def test_geometry_of_a_hand_made_subset():
    # four 1-pixel grayscale images 0, 10, 30, 60 (one value each: per-pixel distance = |a - b|)
    x = np.array([0, 10, 30, 60], dtype=np.uint8).reshape(4, 1, 1, 1)
    g = geometry.data_geometry(x)
    # nearest others: 10, 10, 20, 30 -> median 15; pairs 10, 30, 60, 20, 50, 30 -> median (30 + 30) / 2
    assert g == {"n": 4, "nn_distance": 15.0, "pair_distance": 30.0, "nn_pair_ratio": 0.5}
    # per pixel: the same pair of images spread over 4 values has the same per-pixel distance
    y = np.zeros((2, 1, 2, 2), dtype=np.uint8)
    y[1] = 20
    assert geometry.data_geometry(y)["nn_distance"] == 20.0
    assert geometry.data_geometry(x[:1])["nn_distance"] is None
    dup = np.zeros((3, 1, 1, 1), dtype=np.uint8)
    assert geometry.data_geometry(dup)["nn_pair_ratio"] is None  # all identical: no scale


def test_geometry_is_exact_against_brute_force():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(203, 3, 4, 4), dtype=np.uint8)
    f = x.reshape(len(x), -1).astype(np.float64)
    d = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1) / f.shape[1])
    pairs = d[np.triu_indices(len(x), 1)]
    np.fill_diagonal(d, np.inf)
    g = geometry.data_geometry(x, block=17)
    assert g["pair_distance"] == pytest.approx(np.median(pairs), rel=1e-12)
    assert g["nn_distance"] == pytest.approx(np.median(d.min(1)), rel=1e-12)


def test_subset_carries_its_geometry_through_save_and_load(tmp_path):
    s = data.make_subset({**PATCHES, "size": 20})
    assert s["geometry"] == geometry.data_geometry(s["images"])
    data.save_subset(tmp_path / "s.npz", s)
    assert data.load_subset(tmp_path / "s.npz")["geometry"] == s["geometry"]
    old = {k: v for k, v in s.items() if k != "geometry"}  # a subset saved before geometry existed
    assert data.subset_geometry(old) == s["geometry"]


# -------------------------------------------------------------------------------------- convergence
def _snap(k, ratio, n=500):
    from diffmem.science.memorization import binomial_ci

    lo, hi = binomial_ci(round(ratio * n), n)
    return {"k": k, "ratio": ratio, "ci_low": lo, "ci_high": hi, "n": n}


def test_convergence_of_hand_made_snapshots():
    assert levelled_off([_snap(0, 0.3)])["levelled_off"] == "unknown"
    assert levelled_off([])["levelled_off"] == "unknown"
    flat = levelled_off([_snap(0, 0.1), _snap(1, 0.50), _snap(2, 0.52)])
    assert flat["levelled_off"] == "yes" and flat["over"] == [1, 2] and flat["change"] == pytest.approx(0.02)
    rising = levelled_off([_snap(0, 0.40), _snap(1, 0.50)])  # 0.40 is outside 0.50's interval at n = 500
    assert rising["levelled_off"] == "no" and rising["change"] == pytest.approx(0.1)
    assert levelled_off([_snap(0, 0.9), _snap(1, 0.8)])["levelled_off"] == "no"  # falling counts too
    # without stored intervals: Wilson intervals from the counts
    assert levelled_off([{"ratio": 0.5, "n_memorized": 250, "n": 500},
                         {"ratio": 0.52, "n_memorized": 260, "n": 500}])["levelled_off"] == "yes"  # fmt: skip


# ---------------------------------------------------------------------------------- tables, figures
def _write_scores(tmp_path, name, ratios, geo):
    from diffmem.io import write_json

    snaps = [_snap(k, r) for k, r in enumerate(ratios)]
    path = tmp_path / f"{name}.json"
    write_json(path, {"size": 20, "ratio": max(ratios), "ci_low": snaps[-1]["ci_low"], "ci_high": snaps[-1]["ci_high"],
                      "n": 500, "snapshots": [{**s, "step": 10 * (s["k"] + 1), "images_seen": 80 * (s["k"] + 1),
                                               "epochs": 4.0 * (s["k"] + 1)} for s in snaps],
                      "convergence": levelled_off(snaps), "geometry": geo})  # fmt: skip
    return str(path)


def test_table_and_figure_carry_convergence_geometry_and_seed(tmp_path):
    geo = {"n": 20, "nn_distance": 35.0, "pair_distance": 70.0, "nn_pair_ratio": 0.5}
    vals = []
    for label, seed, ratios in (("8_seed0", 0, [0.2, 0.6]), ("8_seed1", 1, [0.55, 0.56]), ("4_seed0", 0, [0.3])):
        vals.append({"experiment": "res", "title": "Resolution", "factor": "data.resolution", "label": label,
                     "display": label[0], "group": label[0], "seed": seed, "mode": "sizes", "run_id": "r",
                     "emm": None, "scores": {"20": _write_scores(tmp_path, label, ratios, geo)}, "grids": {},
                     "ratio_threshold": 1 / 3, "emm_threshold": 0.9})  # fmt: skip
    spec = {"name": "f", "kind": "sweep", "experiments": ["res"], "values": vals}
    table = figure_table(spec)
    size = table[table["kind"] == "size"].set_index("value")
    assert size.loc["8_seed0", "levelled_off"] == "no" and size.loc["8_seed1", "levelled_off"] == "yes"
    assert size.loc["4_seed0", "levelled_off"] == "unknown"
    assert size["seed"].tolist() == [0, 1, 0] and size["group"].tolist() == ["8", "8", "4"]
    assert size["nn_pair_ratio"].tolist() == [0.5] * 3
    table.to_csv(tmp_path / "t.csv", index=False)
    table = pd.read_csv(tmp_path / "t.csv", dtype={"value": str, "display": str})
    fig = plotting.draw_figure(spec, table, tmp_path / "f.pdf", tmp_path / "f.png")
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    legend = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith(("_", "EMM"))]
    assert legend == ["8", "4"]  # one entry per value, its replicates share it
    colors = [ln.get_color() for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_marker() not in ("o",)]
    assert colors  # drawn
    rings = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() == "none"]
    assert len(rings) == 1 and rings[0].get_ydata().tolist() == [0.6]  # only the run still rising
    geo_axes = [a for a in fig.get_axes() if a.get_ylabel() == plotting.GEOMETRY_LABEL]
    assert len(geo_axes) == 1  # a data factor: its geometry is drawn
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "not levelled off" in notes and "Replicates" in notes
    # a factor that does not change the data draws no geometry panel
    other = [{**v, "factor": "model.model_channels"} for v in vals]
    fig = plotting.build_figure({**spec, "values": other}, table)
    assert not [a for a in fig.get_axes() if a.get_ylabel() == plotting.GEOMETRY_LABEL]
    # over training (kind epochs): one legend entry per value and size, replicates share its style
    fig = plotting.build_figure({**spec, "kind": "epochs"}, table)
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1 and not ln.get_label().startswith("EMM")]
    assert [ln.get_label() for ln in lines] == ["8, |D| = 20", "_replicate"]  # 8_seed0, 8_seed1 (4: 1 snapshot)
    assert len({(ln.get_linestyle(), ln.get_marker()) for ln in lines}) == 1
    assert "Replicates" in " ".join(t.get_text() for t in fig.texts)


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


# ------------------------------------------------------------------- net resolution (model.resolution)
def test_pixel_repetition_up_and_block_means_back_are_exact():
    from diffmem.data.images import to_data_resolution, to_net_resolution

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    big = to_net_resolution(x, 16)
    assert big.shape == (5, 3, 16, 16) and big.dtype == np.uint8
    np.testing.assert_array_equal(big[:, :, 5, 9], x[:, :, 1, 2])  # pixel (1, 2) is the block 4..7 x 8..11
    np.testing.assert_array_equal(to_data_resolution(big, 4), x)  # a repeated image comes back exactly
    assert to_net_resolution(x, 4) is x and to_data_resolution(x, 4) is x
    # distances scale by k = 4 (squared: 16), so the d1/d2 ratio of scoring is unchanged
    d_small = ((x[0].astype(int) - x[1]) ** 2).sum()
    assert ((big[0].astype(int) - big[1]) ** 2).sum() == 16 * d_small
    # the block mean of a noisy 2x2 block: round(mean), as resize(..., "area") computes
    blocks = np.array([[[[10, 11], [12, 14]]]], dtype=np.uint8)
    assert to_data_resolution(blocks, 1).item() == 12  # mean 11.75
    with pytest.raises(ValueError, match="model.resolution 6 is not a multiple"):
        to_net_resolution(x, 6)


def _resolved(**model):
    import copy

    base = copy.deepcopy(dmc.load_config(["config/config.yaml"])["base"])  # the default's settings at 4x4
    base["data"]["resolution"] = 4
    base["model"].update(model)
    return dmc.resolve_settings(base)


def test_net_resolution_is_a_run_setting_not_a_data_setting():
    from diffmem.plan import identity

    native, same, big = _resolved(), _resolved(resolution=4), _resolved(resolution=8)
    assert native["model"]["resolution"] == 4 and big["model"]["resolution"] == 8
    size = 10
    ids = [identity.train_id(dmc.run_settings(s, size)) for s in (native, same, big)]
    assert ids[0] == ids[1] != ids[2]  # null and the data's side are one net; a larger net is another run
    assert len({identity.data_id(dmc.run_settings(s, size)) for s in (native, same, big)}) == 1  # one subset
    assert "enlarged to 8x8 by pixel repetition" in dmc.run_record(dmc.run_settings(big, size))["about"]
    for bad in (6, 2):
        with pytest.raises(dmc.ConfigError, match=f"model.resolution {bad} must be a multiple of data.resolution 4"):
            _resolved(resolution=bad)


def test_optimum_on_a_larger_net_memorizes_everything_at_the_datas_side(tmp_path):
    """Known answer: the closed-form optimum samples the (enlarged) training images, and scoring reduces
    them back to the data's side, where each is an exact copy of a training image."""
    settings = dmc.run_settings(
        dmc.resolve_settings({
            "data": {"source": "digits", "resolution": 4, "classes": 10, "labels": "none", "label_classes": None,
                     "blend": None, "seed": 0, "pick": "random", "resize": "area"},
            "model": {"arch": "optimum", "resolution": 8},
        }), 10)  # fmt: skip
    settings["sample"] = {"n": 40, "seed": 0, "batch": 40, "num_steps": 18, "sigma_min": 0.002, "sigma_max": 80,
                          "rho": 7, "precision": "fp32"}  # fmt: skip
    settings["score"] = {"threshold": 1 / 3}
    subset = data.make_subset({**dmc.data_settings(settings), "size": 10})
    assert subset["images"].shape == (10, 1, 4, 4)
    out = sample_run(settings, subset, None, tmp_path / "samples.npz", tmp_path / "grid.png", device="cpu")
    assert out["shape"] == [1, 40, 1, 8, 8]  # sampled at the net's side
    res = score_run(settings, subset, tmp_path / "samples.npz", tmp_path / "m.json", tmp_path / "d.npz",
                             tmp_path / "nn.png", device="cpu")  # fmt: skip
    assert res["ratio"] == 1.0
    d1 = np.load(tmp_path / "d.npz")["d1"]
    assert float(d1.max()) == 0.0  # every sample, reduced, is a training image exactly


def test_a_net_twice_the_datas_side_trains_on_repeated_pixels(tmp_path, monkeypatch):
    from runs import make_settings, make_subset

    from diffmem.training import loop as tr

    settings = make_settings(steps=3)
    settings["model"]["resolution"] = 16  # the subset is 1x8x8
    subset = make_subset()
    seen = []
    real = tr._Run.__init__

    def spy(self, settings_, images_np, *args, **kwargs):
        seen.append(images_np)
        real(self, settings_, images_np, *args, **kwargs)

    monkeypatch.setattr(tr._Run, "__init__", spy)
    summary = tr.train(settings, subset, tmp_path)
    np.testing.assert_array_equal(seen[0], subset["images"].repeat(2, axis=2).repeat(2, axis=3))
    assert summary["steps"] == 3
    out = sample_run({**settings, "sample": {"n": 4, "seed": 0, "batch": 4, "num_steps": 4,
                               "sigma_min": 0.002, "sigma_max": 80, "rho": 7}}, subset, tmp_path / "train.json",
                              tmp_path / "s.npz", tmp_path / "g.png", device="cpu")  # fmt: skip
    assert out["shape"] == [2, 4, 1, 16, 16]
