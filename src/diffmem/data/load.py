"""Load a whole image source as (uint8 NCHW images, int64 labels 0..K-1), cached within the process.

- ``digits``: scikit-learn's bundled handwritten digits (1797 grayscale 8x8 images, 10 classes,
  pixel values 0..16 mapped to 0..255 by round(v * 255 / 16)). Real data that ships inside a pip
  package: the embedded CPU default, no download.
- ``cifar10``: the train split (50k 3x32x32, 10 classes) of the official tarball
  (:mod:`diffmem.data.cifar10`).
- ``folder``: one sub-folder of images per class (:mod:`diffmem.data.folder`); ImageNet dogs for
  the paper's intra-class-diversity blend go here.
- ``fonts``: typeset digits 0..9, grayscale 8x8 (:mod:`diffmem.data.fonts`).
- ``patches``: textured non-overlapping RGB patches of scikit-learn's two bundled photographs, one class
  per photograph (:mod:`diffmem.data.patches`; ``patches`` = ``data.patches``, {side, min_std}).

Channels and class counts of each source: :data:`diffmem.data.sources.SOURCE_FACTS`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from diffmem.data.bundled import sklearn_file
from diffmem.data.cifar10 import load_cifar10
from diffmem.data.folder import load_folder
from diffmem.data.fonts import render_fonts
from diffmem.data.images import RESIZE_METHODS, resize
from diffmem.data.patches import check_patch_settings, load_patches
from diffmem.data.sources import SOURCES


def load_source(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    download: bool = False,
    verify_md5: bool = True,
    resolution: int | None = None,
    resize_method: str | None = None,
    patches: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a whole source as (uint8 NCHW images, int64 labels); cached within the process.

    ``resolution`` resizes the images (None: the source's own; for ``folder``, the
    smallest center-crop side) by ``resize_method`` (``data.resize``: area or lanczos, see
    :func:`diffmem.data.images.resize`; needed with a resolution). ``patches``: ``data.patches``
    ({side, min_std}) of the ``patches`` source (ignored by the others). The returned arrays are shared by
    the cache and read-only.
    """
    if name not in SOURCES:
        raise ValueError(f"data.source={name!r} is not a known source; known: {', '.join(SOURCES)}")
    if resolution is not None and (isinstance(resolution, bool) or int(resolution) != resolution or resolution < 1):
        raise ValueError(f"data.resolution must be a positive integer or null, got {resolution!r}")
    if resolution is not None and resize_method not in RESIZE_METHODS:
        raise ValueError(f"data.resize: expected one of {', '.join(RESIZE_METHODS)}, got {resize_method!r}")
    key_path = None if path is None else str(Path(path).expanduser().resolve())
    if name == "patches":
        key_path = check_patch_settings(patches)  # (side, min_std): what decides the images
    if resolution is None:
        return _load_cached(name, key_path, bool(download), bool(verify_md5), None, None)
    return _load_cached(name, key_path, bool(download), bool(verify_md5), int(resolution), resize_method)


@functools.lru_cache(maxsize=8)
def _load_cached(name, path, download, verify_md5, resolution, method):  # patches: path = (side, min_std)
    if name == "folder":
        images, labels = load_folder(path, resolution, method)
    else:
        if resolution is None:
            images, labels = _load_native(name, path, download, verify_md5)
        else:
            images, labels = _load_cached(name, path, download, verify_md5, None, None)
            images = resize(images, resolution, method)
    images = np.ascontiguousarray(images)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _load_native(name, path, download, verify_md5):
    if name == "digits":
        return _load_digits()
    if name == "cifar10":
        return load_cifar10(path, download, verify_md5)
    if name == "fonts":
        return render_fonts(path)
    if name == "patches":
        return load_patches(*path)
    raise AssertionError(name)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (``load_digits``: 1797 8x8 images, values 0..16) scaled to uint8. Read from the
    file ``load_digits`` reads (rows of 64 pixel values and the class), without importing scikit-learn."""

    rows = np.loadtxt(sklearn_file("datasets", "data", "digits.csv.gz"), delimiter=",")
    pixels, target = rows[:, :-1].reshape(-1, 8, 8), rows[:, -1]
    images = np.floor(pixels * (255.0 / 16.0) + 0.5).astype(np.uint8)[:, None]  # round half up
    return images, target.astype(np.int64)
