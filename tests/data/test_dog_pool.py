"""The ImageNet dog pool (diffmem.data.dog_pool, ``python -m diffmem dog-pool``) on a small fake ImageNet
train tree: every dog class with a few tiny images, plus classes that are not dogs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffmem.data import dog_pool as dp
from diffmem.data.imagenet_dogs import DOG_CLASSES, DOG_WNIDS
from diffmem.data.load import load_source

N = 250  # 123 x 2 + 4: the first 4 classes give 3 images, the other 119 give 2
NOT_DOGS = ("n01514668", "n02123045", "n09999999")  # rooster, tabby cat, a made-up one
CROP_CLASS = DOG_WNIDS[0]  # its 3 images: a red square centered in a blue border (the crop must keep red only)
RED, BLUE = (200, 30, 40), (20, 40, 220)


def _jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet") / "train"
    for k, wnid in enumerate(DOG_WNIDS + NOT_DOGS):
        folder = root / wnid
        folder.mkdir(parents=True)
        if wnid == CROP_CLASS:
            for j in range(3):  # 60 x 40 (landscape): the centered 40 x 40 square is red, the 10-pixel sides blue
                a = np.empty((40, 60, 3), dtype=np.uint8)
                a[:] = BLUE
                a[:, 10:50] = RED
                Image.fromarray(a).save(folder / f"{wnid}_{j}.png")
            continue
        for j in range(4 if wnid in NOT_DOGS else 3):
            _jpeg(folder / f"{wnid}_{j}.JPEG", (24 + 4 * j, 36 - 2 * j), seed=100 * k + j)
        (folder / ".hidden.JPEG").write_bytes(b"not an image")  # hidden files and other files are not images
        (folder / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def pool(imagenet, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pools") / "dogs"
    return out, dp.build_dog_pool(imagenet, out, n=N, seed=7)


def test_quotas_are_as_even_as_possible():
    assert dp.class_quotas(2000, 123) == [17] * 32 + [16] * 91  # the paper's pool: 32 x 17 + 91 x 16
    assert dp.class_quotas(N, 123) == [3] * 4 + [2] * 119
    assert dp.class_quotas(5, 3) == [2, 2, 1]
    assert len(DOG_CLASSES) == 123 and DOG_CLASSES[0] == ("n02085620", "Chihuahua")
    assert DOG_CLASSES[-1] == ("n02115641", "dingo") and list(DOG_WNIDS) == sorted(set(DOG_WNIDS))


def test_counts_per_class_and_only_dogs(pool):
    out, manifest = pool
    assert manifest["n"] == N == len(manifest["files"])
    counts = {wnid: 0 for wnid in DOG_WNIDS}
    for entry in manifest["files"]:
        counts[entry["class"]] += 1
        assert entry["source"].startswith(entry["class"] + "/") and entry["class"] in DOG_WNIDS
    assert counts == manifest["per_class"]
    assert list(counts.values()) == [3] * 4 + [2] * 119
    assert len({e["source"] for e in manifest["files"]}) == N  # no image twice
    assert not any(e["source"].split("/")[0] in NOT_DOGS for e in manifest["files"])


def test_files_are_32x32_rgb_in_pool_order_and_hashed(pool):
    out, manifest = pool
    on_disk = json.loads((out / dp.MANIFEST).read_text())
    assert on_disk == manifest
    names = sorted(p.name for p in (out / "dog").iterdir())
    assert names == [f"{k:05d}.png" for k in range(N)] == [Path(e["file"]).name for e in manifest["files"]]
    h = hashlib.sha256()
    for entry in manifest["files"]:
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        h.update(entry["file"].encode() + b"\0" + data)  # the pool hash: path, NUL, bytes, in name order
        with Image.open(out / entry["file"]) as im:
            assert im.size == (32, 32) and im.mode == "RGB"
    assert manifest["sha256"] == h.hexdigest()


def test_center_crop_keeps_the_center_square(pool):
    out, manifest = pool
    crops = [e for e in manifest["files"] if e["class"] == CROP_CLASS]
    assert len(crops) == 3  # the first class gives 3: all of them
    for entry in crops:
        a = np.asarray(Image.open(out / entry["file"]))
        assert (a == np.array(RED, dtype=np.uint8)).all()  # LANCZOS of a uniform square is that color


def test_the_folder_source_reads_the_pool_in_pool_order(pool):
    out, manifest = pool
    images, labels = load_source("folder", path=out, resolution=32, resize_method="lanczos")
    assert images.shape == (N, 3, 32, 32) and set(labels.tolist()) == {0}  # one class: dog
    for k in (0, 1, N - 1):
        want = np.asarray(Image.open(out / manifest["files"][k]["file"])).transpose(2, 0, 1)
        assert (images[k] == want).all()


def test_same_seed_same_pool_other_seed_other_pool(imagenet, pool, tmp_path):
    out, manifest = pool
    again = dp.build_dog_pool(imagenet, tmp_path / "again", n=N, seed=7)
    assert again == manifest
    assert all((tmp_path / "again" / e["file"]).read_bytes() == (out / e["file"]).read_bytes() for e in again["files"])
    other = dp.build_dog_pool(imagenet, tmp_path / "other", n=N, seed=8)
    assert other["sha256"] != manifest["sha256"] and other["per_class"] == manifest["per_class"]
    assert [e["source"] for e in other["files"]] != [e["source"] for e in manifest["files"]]
    assert dp.draw_pool(imagenet, n=N, seed=7) == [
        {k: e[k] for k in ("source", "class", "name")} for e in manifest["files"]
    ]


def test_missing_empty_or_partial_trees_are_refused(imagenet, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        dp.build_dog_pool(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'} holds none of the 123 dog classes"):
        dp.build_dog_pool(tmp_path / "empty", tmp_path / "out")
    partial = tmp_path / "partial"
    partial.mkdir()
    for wnid in DOG_WNIDS[:-1]:
        (partial / wnid).symlink_to(imagenet / wnid)
    with pytest.raises(ValueError, match="lacks 1 of the 123 dog classes: n02115641"):
        dp.build_dog_pool(partial, tmp_path / "out")
    with pytest.raises(ValueError, match="has 3 images, the pool needs 17"):
        dp.build_dog_pool(imagenet, tmp_path / "out", n=2000)
    assert not (tmp_path / "out").exists()  # nothing written by a refused build
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        dp.build_dog_pool(imagenet, tmp_path / "full", n=N)


def test_command_line_builds_the_same_pool(imagenet, pool, tmp_path, capsys):
    from diffmem.__main__ import main

    out, manifest = pool
    argv = ["dog-pool", "--imagenet", str(imagenet), "--out", str(tmp_path / "cli"), "--n", str(N), "--seed", "7"]
    assert main(argv) == 0
    assert json.loads((tmp_path / "cli" / dp.MANIFEST).read_text()) == manifest
    assert manifest["sha256"] in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # refused with the reason, exit status 2
        main(["dog-pool", "--imagenet", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and str(tmp_path / "nowhere") in capsys.readouterr().err
