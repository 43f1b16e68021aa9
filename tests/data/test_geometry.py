"""How crowded a subset is (diffmem.data.geometry), measured beside every ratio."""

from __future__ import annotations

import numpy as np
import pytest

from diffmem import data
from diffmem.data import geometry

PATCHES = {"source": "patches", "patches": {"side": 16, "min_std": 30}, "classes": 2, "resolution": 16,
           "pick": "random", "resize": "area"}  # fmt: skip


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
