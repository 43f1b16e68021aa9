"""A net at a multiple of the data's side: pixel repetition up, block means back."""

from __future__ import annotations

import numpy as np
import pytest

from diffmem import data
from diffmem.plan import config as dmc
from diffmem.steps.sample import sample_run
from diffmem.steps.score import score_run


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
