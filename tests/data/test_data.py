"""Tests of diffmem.data: sources, resizing, class-balanced nested subsets, blends, files."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from diffmem import data

# ----------------------------------------------------------------------------------------------
# fixtures: small sources in the official formats, written by the tests themselves

N_PER_BATCH = 20


def _cifar_batch(rng, n, batch_name):
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in np.arange(n) % 10]  # a python list, as in the official batches
    return {
        b"batch_label": batch_name.encode(),
        b"labels": labels,
        b"data": images,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _add(tar, name, payload: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def cifar_tarball(tmp_path):
    """A cifar-10-python.tar.gz in the official layout: 5 train batches of 20 images, test, meta."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar"
    folder.mkdir()
    path = folder / data.CIFAR10_TGZ
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for i in range(1, 6):
            batches[i] = _cifar_batch(rng, N_PER_BATCH, f"training batch {i} of 5")
            _add(tar, f"cifar-10-batches-py/data_batch_{i}", pickle.dumps(batches[i], protocol=2))
        _add(tar, "cifar-10-batches-py/test_batch", pickle.dumps(_cifar_batch(rng, 10, "test"), protocol=2))
        names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
        meta = {b"num_cases_per_batch": N_PER_BATCH, b"label_names": names, b"num_vis": 3072}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
    return path, batches


@pytest.fixture
def image_folder(tmp_path):
    """path/<class>/*.png: classes 'b_cat' (3 images) and 'a_dog' (2 images), non-square."""
    root = tmp_path / "imgs"
    for cls, n, value in (("b_cat", 3, 200), ("a_dog", 2, 100)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            a = np.zeros((12, 20, 3), dtype=np.uint8)  # H=12, W=20: the center 12x12 is columns 4..15
            a[:, 4:16] = value + i
            Image.fromarray(a).save(root / cls / f"{i}.png")
    (root / "a_dog" / "notes.txt").write_text("not an image")
    return root


def _digits_spec(**kw):
    spec = {"source": "digits", "classes": 10, "labels": "none", "seed": 0, "pick": "random", "resize": "area"}
    spec.update(kw)
    return spec


# ----------------------------------------------------------------------------------------------
# sources


def test_digits_known_answers():
    images, labels = data.load_source("digits")
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    assert labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # 0..16 -> round(v * 255 / 16)
    assert set(np.unique(images)) <= {int(np.floor(v * 255 / 16 + 0.5)) for v in range(17)}
    assert not images.flags.writeable  # shared by the cache
    assert data.load_source("digits")[0] is images
    # read from scikit-learn's file without importing it: the same images and classes as load_digits()
    from sklearn.datasets import load_digits

    d = load_digits()
    np.testing.assert_array_equal(images[:, 0], np.floor(d.images * 255 / 16 + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(labels, d.target)


def test_fonts_source():
    images, labels = data.load_source("fonts")
    assert images.shape[1:] == (1, 8, 8) and images.dtype == np.uint8
    counts = np.bincount(labels)
    assert len(counts) == 10 and counts.min() >= 150
    assert (images.reshape(len(images), -1).max(axis=1) == 255).all()
    assert len(data.font_files()) >= 5
    # typeset digits are distinct images, not copies of one glyph
    assert len(np.unique(images.reshape(len(images), -1), axis=0)) > 0.9 * len(images)


def test_cifar10_tarball(cifar_tarball):
    path, batches = cifar_tarball
    for where in (path, path.parent):  # the file or the folder holding it
        images, labels = data.load_source("cifar10", path=where, verify_md5=False)
        assert images.shape == (5 * N_PER_BATCH, 3, 32, 32) and images.dtype == np.uint8
        assert labels.dtype == np.int64 and labels.tolist() == [i % 10 for i in range(N_PER_BATCH)] * 5
        # row layout of the official format: 1024 red, 1024 green, 1024 blue, each row-major 32x32
        first = batches[1][b"data"][3]
        assert np.array_equal(images[3, 1], first[1024:2048].reshape(32, 32))
        assert np.array_equal(images[N_PER_BATCH], batches[2][b"data"][0].reshape(3, 32, 32))


def test_cifar10_md5_refused(cifar_tarball):
    path, _ = cifar_tarball
    with pytest.raises(ValueError, match="verify_md5") as err:
        data.load_source("cifar10", path=path, verify_md5=True)
    assert data.CIFAR10_TGZ_MD5 in str(err.value)


def test_cifar10_extracted_folder(cifar_tarball):
    path, _ = cifar_tarball
    with tarfile.open(path) as tar:
        tar.extractall(path.parent / "x", filter="data")
    images, _ = data.load_source("cifar10", path=path.parent / "x", verify_md5=False)
    assert images.shape == (100, 3, 32, 32)
    with pytest.raises(ValueError, match="verify_md5"):
        data.load_source("cifar10", path=path.parent / "x", verify_md5=True)


def test_cifar10_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="download"):
        data.load_source("cifar10", path=tmp_path / "nothing", verify_md5=False)
    with pytest.raises(ValueError, match="data.path"):
        data.load_source("cifar10")


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_restricted_unpickler():
    ok = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [1, 2], b"x": "s"}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        back = data.restricted_loads(pickle.dumps(ok, protocol=protocol))
        assert np.array_equal(back[b"data"], ok[b"data"]) and back[b"labels"] == [1, 2]
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.restricted_loads(pickle.dumps({b"data": _Evil()}, protocol=2))


def test_cifar10_subset(cifar_tarball):
    path, _ = cifar_tarball
    spec = {
        "source": "cifar10",
        "path": str(path),
        "verify_md5": False,
        "classes": 2,
        "size": 10,
        "resolution": 16,
        "pick": "random",
        "resize": "area",
    }
    s = data.make_subset(spec)
    assert s["images"].shape == (10, 3, 16, 16)
    assert np.bincount(s["labels"]).tolist() == [5, 5]
    assert data.allowed_sizes(spec) == list(range(2, 21, 2))  # 10 images per class


def test_folder_source(image_folder):
    images, labels = data.load_source("folder", path=image_folder)
    assert images.shape == (5, 3, 12, 12)  # resolution None: the smallest crop side
    assert labels.tolist() == [0, 0, 1, 1, 1]  # a_dog first: classes sorted by name
    assert images[0].min() == 100 and images[0].max() == 100  # the center crop holds no black border
    assert images[4].min() == 202
    small, _ = data.load_source("folder", path=image_folder, resolution=4, resize_method="area")
    assert small.shape == (5, 3, 4, 4) and (small[2] == 200).all()
    with pytest.raises(FileNotFoundError):
        data.load_source("folder", path=image_folder / "missing")


def test_flat_folder_is_one_class_and_a_mixed_folder_is_refused(image_folder, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted((image_folder / "b_cat").glob("*.png")):
        (flat / f.name).write_bytes(f.read_bytes())
    (flat / "readme.txt").write_text("not an image")
    images, labels = data.load_source("folder", path=flat)
    nested, nested_labels = data.load_source("folder", path=image_folder)
    assert labels.tolist() == [0, 0, 0]
    np.testing.assert_array_equal(images, nested[nested_labels == 1])  # the same pixels as the class folder
    (image_folder / "loose.png").write_bytes((image_folder / "b_cat" / "0.png").read_bytes())
    from diffmem.data.load import _load_cached

    _load_cached.cache_clear()  # loads are memoized per process by path
    with pytest.raises(ValueError, match="both class subfolders .* and images of its own"):
        data.load_source("folder", path=image_folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="neither class subfolders nor images"):
        data.load_source("folder", path=empty)


def test_grayscale_folder_loads_the_declared_channels(tmp_path):
    """A folder of grayscale (and palette) images loads as the channels the net is built for."""
    from diffmem.plan import config as dmc

    root = tmp_path / "gray"
    for cls, value in (("a", 50), ("b", 180)):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.full((6, 6), value, dtype=np.uint8), mode="L").save(root / cls / "0.png")
        Image.fromarray(np.full((6, 6), value + 1, dtype=np.uint8), mode="L").convert("P").save(root / cls / "1.png")
    images, labels = data.load_source("folder", path=root)
    assert images.shape == (4, data.SOURCE_FACTS["folder"].channels, 6, 6)
    assert (images[0] == 50).all() and (images[3] == 181).all()  # gray value copied to every channel
    settings = dmc.resolve_settings({
        "data": {"source": "folder", "path": str(root), "resolution": 6, "classes": 2, "labels": "none"},
        "model": {"arch": "optimum"},
    })  # fmt: skip
    assert settings["model"]["img_channels"] == images.shape[1]
    subset = data.make_subset(
        {"source": "folder", "path": str(root), "classes": 2, "size": 4, "pick": "random", "resize": "area"}
    )
    assert subset["images"].shape[1] == settings["model"]["img_channels"]


@pytest.mark.parametrize("source", ["digits", "fonts"])
def test_source_facts_match_what_loads(source):
    images, labels = data.load_source(source)
    facts = data.SOURCE_FACTS[source]
    counts = np.bincount(labels)
    assert images.shape[1] == facts.channels and len(counts) == facts.classes
    if facts.per_class is not None:
        assert set(counts.tolist()) == {facts.per_class}


def test_source_facts_import_neither_numpy_nor_torch():
    import subprocess
    import sys

    code = "import sys, diffmem.data.sources; print(sorted({'numpy', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------------------------
# resize


def test_resize():
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 256, size=(5, 1, 8, 8), dtype=np.uint8)
    x4 = data.resize(x8, 4, "area")
    assert x4.shape == (5, 1, 4, 4) and x4.dtype == np.uint8
    block_mean = x8.reshape(5, 1, 4, 2, 4, 2).astype(np.float64).mean(axis=(3, 5))
    assert np.abs(x4 - block_mean).max() <= 0.5 + 1e-9  # area: the 2x2 block average
    x32 = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    x8b = data.resize(data.resize(x32, 16, "area"), 8, "area")
    assert x8b.shape == (3, 3, 8, 8) and x8b.dtype == np.uint8
    assert data.resize(x8, 8, "area") is x8
    up = data.resize(np.full((2, 1, 4, 4), 77, np.uint8), 12, "area")
    assert up.shape == (2, 1, 12, 12) and (up == 77).all()
    odd = data.resize(np.full((1, 3, 10, 10), 9, np.uint8), 3, "area")  # non-integer factor: antialiased bilinear
    assert odd.shape == (1, 3, 3, 3) and (odd == 9).all()
    with pytest.raises(ValueError):
        data.resize(x8.astype(np.float32), 4, "area")
    with pytest.raises(ValueError, match="data.resize: expected one of area, lanczos, got 'cubic'"):
        data.resize(x8, 4, "cubic")


def test_lanczos_equals_pils_own_resize():
    """data.resize: lanczos is what the paper's dataset tool does: PIL LANCZOS on each HWC (or HW) image."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    gray = rng.integers(0, 256, size=(2, 1, 32, 32), dtype=np.uint8)
    for size in (16, 8, 20):
        got = data.resize(rgb, size, "lanczos")
        for i in range(4):
            pil = np.asarray(Image.fromarray(rgb[i].transpose(1, 2, 0)).resize((size, size), Image.LANCZOS))
            assert np.array_equal(got[i], pil.transpose(2, 0, 1))
        g = data.resize(gray, size, "lanczos")
        assert np.array_equal(g[1, 0], np.asarray(Image.fromarray(gray[1, 0]).resize((size, size), Image.LANCZOS)))
    # a known image: a constant stays constant, a step edge rings (LANCZOS overshoots, area does not)
    assert (data.resize(np.full((1, 3, 32, 32), 77, np.uint8), 16, "lanczos") == 77).all()
    edge = np.zeros((1, 1, 32, 32), np.uint8)
    edge[..., 16:] = 200
    lz, area = data.resize(edge, 8, "lanczos"), data.resize(edge, 8, "area")
    assert set(np.unique(area).tolist()) == {0, 200} and lz.max() > 200  # ringing at the edge
    assert np.abs(data.resize(rgb, 16, "lanczos").astype(int) - data.resize(rgb, 16, "area")).max() > 0


# ----------------------------------------------------------------------------------------------
# subsets


def test_subset_balanced_nested_seeded():
    small = data.make_subset(_digits_spec(size=20))
    big = data.make_subset(_digits_spec(size=50))
    assert small["images"].shape == (20, 1, 8, 8) and small["images"].dtype == np.uint8
    assert np.bincount(small["labels"], minlength=10).tolist() == [2] * 10
    assert np.bincount(big["labels"], minlength=10).tolist() == [5] * 10
    for c in range(10):  # per-class prefix
        assert np.array_equal(small["source_index"][small["labels"] == c], big["source_index"][big["labels"] == c][:2])
    assert np.array_equal(small["source_index"], big["source_index"][:20])  # and a global prefix
    src, labels = data.load_source("digits")
    assert np.array_equal(big["images"], src[big["source_index"]])
    assert np.array_equal(big["labels"], labels[big["source_index"]])
    assert (big["cond_labels"] == -1).all() and big["label_dim"] == 0
    assert (big["source_id"] == 0).all()
    again = data.make_subset(_digits_spec(size=50))
    assert np.array_equal(again["images"], big["images"]) and np.array_equal(again["labels"], big["labels"])
    other = data.make_subset(_digits_spec(size=50, seed=1))
    assert not np.array_equal(other["source_index"], big["source_index"])
    assert len(np.unique(big["source_index"])) == 50


def _official_first_k(batches, k, classes):
    """The paper's dataset tool, written out: concatenate data_batch_1..5, per class the first k images."""
    images = np.concatenate([np.asarray(batches[i][b"data"]).reshape(-1, 3, 32, 32) for i in range(1, 6)])
    labels = np.concatenate([np.asarray(batches[i][b"labels"]) for i in range(1, 6)])
    return {c: images[labels == c][:k] for c in range(classes)}


def test_pick_first_takes_the_first_k_per_class_in_source_order(cifar_tarball):
    path, batches = cifar_tarball
    spec = {
        "source": "cifar10",
        "path": str(path),
        "verify_md5": False,
        "classes": 10,
        "resolution": 32,
        "pick": "first",
        "resize": "lanczos",
        "labels": "none",
        "seed": 0,
    }
    small, big = data.make_subset({**spec, "size": 30}), data.make_subset({**spec, "size": 70})
    for s, k in ((small, 3), (big, 7)):
        official = _official_first_k(batches, k, 10)
        for c in range(10):
            mine = s["labels"] == c
            assert mine.sum() == k
            assert np.array_equal(s["images"][mine], official[c])  # the same images, in the same order
            assert (np.diff(s["source_index"][mine]) > 0).all()
    assert np.array_equal(small["source_index"], big["source_index"][:30])  # nested
    assert np.array_equal(data.make_subset({**spec, "size": 30, "seed": 5})["images"], small["images"])
    rand = data.make_subset({**spec, "size": 70, "pick": "random"})
    assert not np.array_equal(np.sort(rand["source_index"]), np.sort(big["source_index"]))
    # digits: the first k of each class are the lowest source indices of that class
    d = data.make_subset(_digits_spec(size=50, pick="first"))
    _, labels = data.load_source("digits")
    for c in range(10):
        assert d["source_index"][d["labels"] == c].tolist() == np.flatnonzero(labels == c)[:5].tolist()


def test_subset_resize_setting(cifar_tarball):
    path, batches = cifar_tarball
    spec = {
        "source": "cifar10",
        "path": str(path),
        "verify_md5": False,
        "classes": 10,
        "size": 20,
        "resolution": 16,
        "pick": "first",
        "labels": "none",
        "seed": 0,
    }
    lz, area = data.make_subset({**spec, "resize": "lanczos"}), data.make_subset({**spec, "resize": "area"})
    official = _official_first_k(batches, 2, 10)[4][1].transpose(1, 2, 0)  # class 4, second image, HWC
    pil = np.asarray(Image.fromarray(official).resize((16, 16), Image.LANCZOS)).transpose(2, 0, 1)
    assert np.array_equal(lz["images"][(lz["labels"] == 4)][1], pil)
    assert not np.array_equal(lz["images"], area["images"])
    for key, match in (
        ("pick", r"data.pick is not set; allowed: random, first"),
        ("resize", r"data.resize is not set; allowed: area, lanczos"),
    ):
        with pytest.raises(ValueError, match=match):
            data.make_subset({k: v for k, v in {**spec, "resize": "area"}.items() if k != key})
    with pytest.raises(ValueError, match=r"data.pick='last'; allowed: random, first"):
        data.make_subset({**spec, "resize": "area", "pick": "last"})


def test_subset_first_classes_and_resolution():
    s = data.make_subset(_digits_spec(classes=3, size=30, resolution=4))
    assert set(s["labels"].tolist()) == {0, 1, 2}
    assert s["images"].shape == (30, 1, 4, 4)
    assert s["settings"]["resolution"] == 4 and s["settings"]["size"] == 30


def test_labels_modes():
    true = data.make_subset(_digits_spec(classes=4, size=20, labels="true"))
    assert np.array_equal(true["cond_labels"], true["labels"]) and true["label_dim"] == 4
    unique = data.make_subset(_digits_spec(size=30, labels="unique"))
    assert np.array_equal(unique["cond_labels"], np.arange(30)) and unique["label_dim"] == 30
    r_small = data.make_subset(_digits_spec(size=20, labels="random", label_classes=3))
    r_big = data.make_subset(_digits_spec(size=100, labels="random", label_classes=3))
    assert r_big["label_dim"] == 3
    assert r_big["cond_labels"].min() >= 0 and r_big["cond_labels"].max() < 3
    assert len(np.unique(r_big["cond_labels"])) == 3
    label_of = dict(zip(r_big["source_index"].tolist(), r_big["cond_labels"].tolist(), strict=True))
    assert all(
        label_of[i] == c for i, c in zip(r_small["source_index"].tolist(), r_small["cond_labels"].tolist(), strict=True)
    )


def test_allowed_sizes():
    sizes = data.allowed_sizes(_digits_spec(classes=3))
    assert sizes == list(range(3, 3 * 177 + 1, 3))  # classes 0, 1, 2 hold 178, 182, 177
    assert data.allowed_sizes(_digits_spec())[-1] == 1740


@pytest.mark.parametrize(
    "spec, match",
    [
        (
            _digits_spec(classes=3, size=1000),
            r"data.size=1000 is not a multiple of classes=3; allowed: "
            r"multiples of 3 up to 531",
        ),
        (_digits_spec(classes=3, size=534), r"data.size=534 .*allowed: multiples of 3 up to 531"),
        (_digits_spec(size=0), r"data.size=0"),
        (_digits_spec(classes=11, size=11), r"data.classes=11 .*allowed: 1..10"),
        (_digits_spec(size=10, labels="bogus"), r"data.labels='bogus'"),
        (_digits_spec(size=10, labels="random"), r"data.label_classes"),
        (_digits_spec(size=10, colour=1), r"data.colour is not a known key"),
        (_digits_spec(size=10, source="mnist"), r"data.source='mnist'"),
        (
            _digits_spec(classes=2, size=10, blend={"source": "fonts", "alpha": 0.5, "class": 3}),
            r"data.blend needs classes=1",
        ),
        (
            _digits_spec(classes=1, size=10, blend={"source": "fonts", "alpha": 1.5, "class": 3}),
            r"data.blend.alpha=1.5",
        ),
    ],
)
def test_impossible_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        data.make_subset(spec)


def _blend_spec(size, alpha=0.3):
    return _digits_spec(classes=1, size=size, blend={"source": "fonts", "path": None, "alpha": alpha, "class": 7})


def test_blend_fraction_and_nesting():
    small, big = data.make_subset(_blend_spec(40)), data.make_subset(_blend_spec(100))
    assert int(small["source_id"].sum()) == round(0.3 * 40) and int(big["source_id"].sum()) == round(0.3 * 100)
    assert (big["labels"] == 7).all()
    assert np.array_equal(small["source_id"], big["source_id"][:40])
    assert np.array_equal(small["source_index"], big["source_index"][:40])
    digits, digit_labels = data.load_source("digits")
    fonts, font_labels = data.load_source("fonts")
    main, other = big["source_id"] == 0, big["source_id"] == 1
    assert (digit_labels[big["source_index"][main]] == 7).all() and (font_labels[big["source_index"][other]] == 7).all()
    assert np.array_equal(big["images"][main], digits[big["source_index"][main]])
    assert np.array_equal(big["images"][other], fonts[big["source_index"][other]])
    for alpha, n_other in ((0.0, 0), (1.0, 50)):
        s = data.make_subset(_blend_spec(50, alpha))
        assert int(s["source_id"].sum()) == n_other
    sizes = data.allowed_sizes(_blend_spec(None))
    assert sizes[0] == 1 and sizes[-1] == 256  # 179 digit 7s: 256 - round(76.8) = 179
    with pytest.raises(ValueError, match="allowed: 1 to 256"):
        data.make_subset(_blend_spec(257))


def _official_dogs(n, alpha):
    """The paper's dataset tool (intra-class diversity): int(n * (1 - alpha)) CIFAR-10 images, the rest
    ImageNet dogs, in Python float arithmetic."""
    return n - int(n * (1 - alpha))


def test_blend_official_rounding_counts():
    from diffmem.data.sources import blend_count

    assert blend_count(1000, 0.8, "official") == 801 and blend_count(1000, 0.8, "round") == 800
    assert blend_count(1000, 0.2, "official") == 200 and blend_count(1000, 0.5, "official") == 500
    assert [blend_count(n, 1.0, "official") for n in (1, 100, 2000)] == [1, 100, 2000]
    assert [blend_count(n, 0.0, "official") for n in (1, 100, 2000)] == [0, 0, 0]
    for alpha in (0.0, 0.2, 0.5, 0.8, 1.0, 0.1, 0.3, 0.7, 0.9, 1 / 3):
        for rounding in ("round", "official"):
            c = [blend_count(n, alpha, rounding) for n in range(0, 5001)]
            # nested: from n to n + 1 one image is added, from one source or the other
            assert set(np.diff(c)) <= {0, 1}, (alpha, rounding)
        assert all(blend_count(n, alpha, "official") == _official_dogs(n, alpha) for n in range(0, 5001))
    with pytest.raises(ValueError, match="rounding"):
        blend_count(10, 0.5, "floor")


def test_blend_official_rounding_subsets_nest():
    spec = _blend_spec(None, 0.8)
    spec["blend"]["rounding"] = "official"
    big = data.make_subset({**spec, "size": 240})
    for n in (5, 10, 49, 100, 239):
        small = data.make_subset({**spec, "size": n})
        assert int(small["source_id"].sum()) == _official_dogs(n, 0.8)
        assert np.array_equal(small["source_index"], big["source_index"][:n])
        assert np.array_equal(small["source_id"], big["source_id"][:n])
    assert int(data.make_subset({**spec, "size": 10})["source_id"].sum()) == 9  # round(8.0) would be 8
    # the sizes it can make follow the same count (and agree with the numpy-free count the DAG uses)
    from diffmem.data.sources import blend_sizes

    sizes = data.allowed_sizes(spec)  # 179 digit 7s, 200 font 7s: 249 - int(249 * 0.2) = 200 fonts
    assert sizes == blend_sizes(179, 200, 0.8, "official") and sizes[-1] == 249
    with pytest.raises(ValueError, match="data.blend.rounding='floor'"):
        data.make_subset({**spec, "size": 10, "blend": {**spec["blend"], "rounding": "floor"}})


def test_blend_rounding_default_is_the_schemas():
    from diffmem.plan import schema as validate

    blend = validate.load_schema()["properties"]["base"]["properties"]["data"]["properties"]["blend"]
    obj = [b for b in blend["oneOf"] if b.get("type") == "object"][0]
    assert data.BLEND_DEFAULTS["rounding"] == obj["properties"]["rounding"]["default"] == "round"
    assert tuple(obj["properties"]["rounding"]["enum"]) == data.subsets.BLEND_ROUNDINGS


def test_blend_resolution_applies_to_both():
    s = data.make_subset({**_blend_spec(20, 0.5), "resolution": 4})
    assert s["images"].shape == (20, 1, 4, 4) and int(s["source_id"].sum()) == 10


def test_save_load_roundtrip(tmp_path):
    s = data.make_subset(_digits_spec(classes=2, size=10, labels="random", label_classes=4))
    path = tmp_path / "sub" / "subset.npz"
    data.save_subset(path, s)
    back = data.load_subset(path)
    assert set(back) == set(s)
    for key in ("images", "labels", "cond_labels", "source_index", "source_id"):
        assert np.array_equal(back[key], s[key]) and back[key].dtype == s[key].dtype
    assert back["label_dim"] == 4 and back["settings"] == s["settings"]
    assert [p.name for p in path.parent.iterdir()] == ["subset.npz"]  # no temporary left behind
