"""CIFAR-10 from the dataset zip of the EDM / DiffMemorize dataset tool: PNG files named
<idx // 1000 as 5 digits>/img<idx as 8 digits>.png in an uncompressed zip, plus dataset.json
{"labels": [[file name, label], ...]}; a tiny one built here."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from diffmem import data
from diffmem.data import cifar10
from diffmem.plan import identity

N = 24


def _zip(path, images, labels, label_file=True, skip_label=None):
    pairs = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            name = f"{i // 1000:05d}/img{i:08d}.png"
            buf = io.BytesIO()
            Image.fromarray(img.transpose(1, 2, 0)).save(buf, format="png")
            z.writestr(name, buf.getvalue())
            if i != skip_label:
                pairs.append([name, int(lab)])
        if label_file:
            z.writestr("dataset.json", json.dumps({"labels": pairs}))
    return path


@pytest.fixture
def cifar_zip(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (N, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(N) % 10
    folder = tmp_path / "edm"
    folder.mkdir()
    return _zip(folder / cifar10.CIFAR10_ZIP, images, labels), images, labels


def test_load_the_zip_as_the_cifar10_source(cifar_zip):
    path, images, labels = cifar_zip
    for where in (path, path.parent):  # the zip, or the folder that holds it
        got_images, got_labels = data.load_source("cifar10", path=where, verify_md5=False)
        np.testing.assert_array_equal(got_images, images)  # pixels and order as written
        np.testing.assert_array_equal(got_labels, labels)
    assert cifar10.check_path(str(path), verify_md5=False) == np.bincount(labels).tolist()


def test_a_zip_that_is_not_the_train_split_is_named_unless_unverified(cifar_zip):
    path, _, _ = cifar_zip
    with pytest.raises(ValueError, match="24 images.*50000.*verify_md5: false"):
        cifar10.load_cifar10(path, download=False, verify_md5=True)


def test_broken_zips_are_named(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    no_labels = _zip(tmp_path / "a.zip", images, [0, 1, 2], label_file=False)
    with pytest.raises(ValueError, match="no dataset.json"):
        cifar10.check_path(str(no_labels))
    unlabelled = _zip(tmp_path / "b.zip", images, [0, 1, 2], skip_label=1)
    with pytest.raises(ValueError, match="1 PNG files without a label.*img00000001.png"):
        cifar10.load_zip(unlabelled, verify=False)
    small = _zip(tmp_path / "c.zip", images[:, :, :16, :16], [0, 1, 2])
    with pytest.raises(ValueError, match="RGB 16x16; CIFAR-10 is RGB 32x32"):
        cifar10.load_zip(small, verify=False)
    not_zip = tmp_path / "d.zip"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip file"):
        cifar10.check_path(str(not_zip))


def test_the_zip_is_identified_by_its_bytes(cifar_zip, tmp_path):
    path, images, labels = cifar_zip
    settings = {"source": "cifar10", "path": str(path), "verify_md5": True}
    fp = identity.source_fingerprint(settings)
    assert fp == identity.content_fingerprint(path) and not fp.startswith("cifar-10-python")
    assert identity.source_fingerprint({**settings, "path": str(path.parent)}) == fp  # the folder holding it
    other = _zip(tmp_path / "other.zip", images[::-1].copy(), labels[::-1].copy())
    assert identity.source_fingerprint({**settings, "path": str(other)}) != fp
    # the official tarball stays pinned by its md5, wherever it lies
    tar = {"source": "cifar10", "path": str(tmp_path / cifar10.CIFAR10_TGZ), "verify_md5": True}
    assert identity.source_fingerprint(tar).startswith("cifar-10-python.tar.gz md5")
