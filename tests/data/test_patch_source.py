"""The patches source: scikit-learn's photographs as textured tiles; the sources' facts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from diffmem import data
from diffmem.data import sources
from diffmem.data.patches import class_counts, kept_positions

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
