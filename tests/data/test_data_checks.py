"""The data a real run reads is checked before any job (diffmem.plan.checks.check_data): every file opened and
held to what its source expects, each refusal naming the config key, the file and what was expected; known
answers on small files written here (a CIFAR-10 tarball in the official format, image folders, dataset zips)."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffmem.data import cifar10, folder
from diffmem.errors import ConfigError
from diffmem.plan import checks, identity
from diffmem.plan.load import load_config
from diffmem.plan.plan import Plan

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]


# ----------------------------------------------------------------------------------------------- files
def write_tarball(path: Path, members=(*TRAIN, "cifar-10-batches-py/batches.meta")) -> Path:
    """A cifar-10-python.tar.gz in the official layout: pickled batches of 20 random images."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            batch = {b"labels": [i % 10 for i in range(20)], b"data": rng.integers(0, 256, (20, 3072), np.uint8)}
            payload = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def write_folder(root: Path, classes=("a_cat", "b_dog"), n=3, side=32) -> Path:
    """root/<class>/<i>.png: ``n`` random RGB images per class."""
    rng = np.random.default_rng(1)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(root / cls / f"{i}.png")
    return root


def write_zip(path: Path, n: int, declared: int | None = None) -> Path:
    """A dataset zip (EDM dataset_tool.py layout) of ``n`` PNG files whose dataset.json labels ``declared``."""
    rng = np.random.default_rng(2)
    names = [f"{i // 1000:05d}/img{i:08d}.png" for i in range(max(n, declared or n))]
    with zipfile.ZipFile(path, "w") as z:
        for name in names[:n]:
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(buf, format="png")
            z.writestr(name, buf.getvalue())
        z.writestr("dataset.json", json.dumps({"labels": [[m, i % 10] for i, m in enumerate(names[: declared or n])]}))
    return path


def config(source: str, path, verify_md5: bool = False, classes: int = 2, **exp) -> dict:
    """The smoke config reading ``path`` in base.data, with one experiment ``x`` (``exp``) and no figure."""
    cfg = load_config([str(ROOT / "config" / "smoke.yaml")])
    cfg["base"]["data"].update(source=source, path=str(path), verify_md5=verify_md5, classes=classes)
    cfg["experiments"] = {"x": exp or {"mode": "sizes", "sizes": [2]}}
    cfg["figures"] = {}
    return cfg


def refused(cfg: dict) -> str:
    with pytest.raises(ConfigError) as err:
        checks.check_data(cfg)
    return str(err.value)


# ------------------------------------------------------------------------------------------ cifar-10
def test_a_good_tarball_passes_and_its_md5_is_read_on_the_way(tmp_path, monkeypatch):
    path = write_tarball(tmp_path / cifar10.CIFAR10_TGZ)
    checks.check_data(config("cifar10", path))
    checks.check_data(config("cifar10", tmp_path))  # the folder that holds it
    monkeypatch.setattr(cifar10, "CIFAR10_TGZ_MD5", hashlib.md5(path.read_bytes()).hexdigest())
    checks.check_data(config("cifar10", path, verify_md5=True))  # the md5 of the one streaming pass


def test_a_tarball_of_another_md5_is_refused_when_verified(tmp_path):
    path = write_tarball(tmp_path / cifar10.CIFAR10_TGZ)
    msg = refused(config("cifar10", path, verify_md5=True))
    assert "base.data.path" in msg and str(path) in msg and cifar10.CIFAR10_TGZ_MD5 in msg
    assert hashlib.md5(path.read_bytes()).hexdigest() in msg and "verify_md5: false" in msg


@pytest.mark.parametrize("keep", [0.5, 0.99, -8, -1])  # mid-batch, near the end, in the gzip trailer
def test_a_truncated_tarball_is_refused(tmp_path, keep):
    path = write_tarball(tmp_path / cifar10.CIFAR10_TGZ)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)] if isinstance(keep, float) else raw[:keep])
    msg = refused(config("cifar10", path))
    assert "base.data.path" in msg and str(path) in msg and "cut short" in msg
    assert "expected the official cifar-10-python.tar.gz" in msg


def test_a_tarball_without_a_train_batch_is_refused(tmp_path):
    path = write_tarball(tmp_path / cifar10.CIFAR10_TGZ, members=TRAIN[:3])
    msg = refused(config("cifar10", path))
    assert str(path) in msg and "no file cifar-10-batches-py/data_batch_4" in msg


# ------------------------------------------------------------------------------------------- folders
def test_a_good_folder_passes_and_its_counts_hold_the_sizes(tmp_path):
    root = write_folder(tmp_path / "imgs", n=3)
    assert folder.check_folder(root) == [3, 3]
    checks.check_data(config("folder", root, mode="sizes", sizes=[2, 6]))
    msg = refused(config("folder", root, mode="sizes", sizes=[8]))
    assert "experiments.x value 'base': sizes [8] cannot be made" in msg and "(3, 3)" not in msg and "[3, 3]" in msg


def test_sizes_per_value_are_held_to_the_folder(tmp_path):
    root = write_folder(tmp_path / "imgs", n=3)
    cfg = config("folder", root, factor="train.lr", values=[0.1, 0.2], mode="sizes", sizes={"0.1": [2], "0.2": [8]})
    assert "experiments.x value '0.2': sizes [8] cannot be made" in refused(cfg)


def test_an_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    msg = refused(config("folder", tmp_path / "empty"))
    assert "base.data.path" in msg and "has neither class subfolders nor images" in msg
    (tmp_path / "empty" / "a_cat").mkdir()  # a class folder without an image
    assert f"class folder {tmp_path / 'empty' / 'a_cat'} has no" in refused(config("folder", tmp_path / "empty"))


def test_a_png_that_is_text_is_named(tmp_path):
    root = write_folder(tmp_path / "imgs")
    bad = root / "b_dog" / "1.png"
    bad.write_text("<html>404 not found</html>")
    msg = refused(config("folder", root))
    assert "base.data.path" in msg and str(bad) in msg and "not a readable image" in msg


def test_a_truncated_png_is_named(tmp_path):
    root = write_folder(tmp_path / "imgs")
    bad = root / "a_cat" / "2.png"
    bad.write_bytes(bad.read_bytes()[:-20])  # header intact, the last chunks cut
    assert str(bad) in refused(config("folder", root))


@pytest.mark.parametrize("layout", ["classes", "flat"])
def test_a_folder_of_other_files_is_refused_at_its_first_file_before_any_hash(tmp_path, monkeypatch, layout):
    """Like ``/etc``: sub-folders of text files (or text files of its own) are refused at the first one, and
    no id hashes the folder's bytes before (the ids are computed after the check)."""
    root = tmp_path / "etc"
    for sub in ("apt", "ssh") if layout == "classes" else ("",):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name in ("sources.list", "config", "hosts"):
            (root / sub / name).write_text("not an image\n")
    monkeypatch.setattr(identity, "content_fingerprint", lambda p: pytest.fail(f"hashed {p} before the check"))
    with pytest.raises(ConfigError) as err:
        Plan.build(config("folder", root))
    first = root / ("apt/config" if layout == "classes" else "config")
    assert "base.data.path" in str(err.value) and str(first) in str(err.value)
    assert ("is not a .png/.jpg/.jpeg image" if layout == "classes" else "neither class subfolders nor images") in str(
        err.value
    )


def test_hidden_files_are_skipped_and_side_files_beside_class_folders_allowed(tmp_path):
    root = write_folder(tmp_path / "pool")
    (root / "manifest.json").write_text("{}")  # as diffmem.data.dog_pool writes
    (root / "a_cat" / ".DS_Store").write_bytes(b"\0")
    assert folder.check_folder(root) == [3, 3]


# ------------------------------------------------------------------------------------------ zips
def test_a_good_zip_passes(tmp_path):
    path = write_zip(tmp_path / cifar10.CIFAR10_ZIP, 20)
    assert cifar10.check_path(str(path), verify_md5=False) == [2] * 10
    checks.check_data(config("cifar10", path, mode="sizes", sizes=[4]))


def test_a_zip_declaring_more_images_than_it_holds_is_refused(tmp_path):
    path = write_zip(tmp_path / cifar10.CIFAR10_ZIP, 20, declared=50)
    msg = refused(config("cifar10", path))
    assert "base.data.path" in msg and str(path) in msg and "labels 50 images but the zip holds 20" in msg
    assert "img00000020.png" in msg


def test_a_zip_too_small_for_the_config_is_refused(tmp_path):
    path = write_zip(tmp_path / cifar10.CIFAR10_ZIP, 20)
    assert "50000" in refused(config("cifar10", path, verify_md5=True))  # not the train split
    msg = refused(config("cifar10", path, mode="sizes", sizes=[4, 6]))  # 2 per class, 2 classes: up to 4
    assert "sizes [6] cannot be made from the images per class its data holds" in msg


# ------------------------------------------------------------------------------- keys, once, dry run
def test_errors_name_the_key_the_path_came_from(tmp_path):
    good, bad = write_folder(tmp_path / "good"), tmp_path / "missing"
    cfg = config("digits", "unused", classes=1)
    cfg["base"]["data"]["path"] = None
    blend = {"source": "folder", "alpha": 0.5, "class": 0}
    cfg["experiments"]["blend"] = {"factor": "data.blend", "values": [{**blend, "path": str(p)} for p in (good, bad)]}
    assert f"experiments.blend.values[1].path {str(bad)!r} does not exist" in refused(cfg)
    cfg["experiments"] = {"x": {"set": {"data.source": "folder", "data.path": str(bad)}}}
    assert f"experiments.x.set.data.path {str(bad)!r} does not exist" in refused(cfg)
    cfg["experiments"] = {"x": {"factor": ["data.source", "data.path"], "values": [["folder", str(bad)]]}}
    assert "experiments.x.values[0][1] " in refused(cfg)


def test_each_distinct_path_is_checked_once(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "imgs")
    calls = []
    monkeypatch.setattr(checks, "check_folder", lambda p: calls.append(p) or [3, 3])
    cfg = config("folder", root, factor="train.lr", values=[0.1, 0.2, 0.3])
    cfg["experiments"]["y"] = {"factor": "data.seed", "values": [1, 2]}
    checks.check_data(cfg)
    assert calls == [root]


def test_a_dry_run_reads_no_data(tmp_path):
    cfg = config("folder", tmp_path / "missing")
    assert Plan.build(cfg, check_files=False).values
    with pytest.raises(ConfigError, match="does not exist"):
        Plan.build(cfg)


# ------------------------------------------------------------------------------- pixels, decoded up front
def png(width: int, height: int, depth: int, color: int, rows: bytes, idat: bytes | None = None) -> bytes:
    """A PNG written by hand (each row filter 0): ``color`` 0 gray, 2 RGB; ``idat`` replaces the compressed
    data (its chunk CRC still right)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    body = zlib.compress(rows) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_16_bit_images_load_as_their_high_bytes(tmp_path):
    """A 16-bit grayscale PNG (Pillow's I;16) and a 16-bit RGB PNG load scaled to 8 bits (value >> 8), not
    clipped to 255; the check before any job passes them."""
    from diffmem import data

    gray = np.array([[0, 255, 256, 1000], [32768, 40000, 65280, 65535]] * 2, np.uint16)  # 4x4
    root = tmp_path / "sixteen"
    (root / "a_gray").mkdir(parents=True)
    (root / "b_rgb").mkdir()
    Image.fromarray(gray).save(root / "a_gray" / "0.png")
    assert Image.open(root / "a_gray" / "0.png").mode == "I;16"
    rgb = np.stack([gray, gray[::-1], 65535 - gray], axis=-1)  # 4x4x3
    rows = b"".join(b"\0" + rgb[y].astype(">u2").tobytes() for y in range(4))
    (root / "b_rgb" / "0.png").write_bytes(png(4, 4, 16, 2, rows))
    assert folder.check_folder(root) == [1, 1]
    images, labels = data.load_source("folder", path=root)
    assert labels.tolist() == [0, 1]
    want = np.array([[0, 0, 1, 3], [128, 156, 255, 255]] * 2, np.uint8)
    np.testing.assert_array_equal(images[0], np.stack([want] * 3))
    np.testing.assert_array_equal(images[1], np.stack([want, want[::-1], 255 - want]))


def test_a_zip_png_of_another_mode_or_size_is_refused_before_any_job(tmp_path):
    path = write_zip(tmp_path / cifar10.CIFAR10_ZIP, 20)
    name = "00000/img00000007.png"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(buf, format="png")
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, payload in members.items():
            z.writestr(n, payload)
    msg = refused(config("cifar10", path))
    assert "base.data.path" in msg and f"{path}:{name} is L 64x64; CIFAR-10 is RGB 32x32" in msg


def test_a_png_whose_data_stream_is_broken_is_named(tmp_path):
    """Its chunks and checksums are right (``verify`` passes); its pixels are not zlib data."""
    root = write_folder(tmp_path / "imgs")
    bad = root / "a_cat" / "1.png"
    bad.write_bytes(png(32, 32, 8, 2, b"", idat=b"not zlib data at all" * 10))
    with Image.open(bad) as im:
        im.verify()
    msg = refused(config("folder", root))
    assert "base.data.path" in msg and str(bad) in msg and "not a readable image" in msg
