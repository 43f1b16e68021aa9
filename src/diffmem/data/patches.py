"""Natural-image patches: non-overlapping square RGB patches of the photographs that ship with scikit-learn.

``load_sample_images`` bundles two 427x640 RGB photographs, ``china.jpg`` (a temple) and ``flower.jpg``.
The ``patches`` source cuts each into a grid of non-overlapping ``side`` x ``side`` patches (from the top
left; the remainder at the right and bottom is dropped), keeps the textured ones and labels each patch
with its photograph (class 0 = china, class 1 = flower: the photographs in name order).

Texture filter (``data.patches.min_std``): a patch is kept when the standard deviation of its pixel values
(all channels together, uint8 units, population formula), measured at the native ``side``, is at least
``min_std``. Flat patches (sky, out-of-focus background) are near-duplicates of each other, and under the
d1/d2 < 1/3 rule a sample among near-duplicates is rarely "memorized" whatever the model does. The filter is
decided on exact integer sums (``n * sum(x^2) - sum(x)^2 >= (min_std * n)^2``), so the numpy-free count
(:func:`kept_positions`, used while the workflow's DAG is built) and the loader agree at the boundary.

The photographs are read with Pillow from scikit-learn's package folder without importing scikit-learn
(the pixels are those of ``sklearn.datasets.load_sample_images``). Lower resolutions go through the usual
resize path (``data.resolution``, ``data.resize``).

Imports neither numpy nor torch at import time; :func:`load_patches` imports numpy.
"""

from __future__ import annotations

import functools
from pathlib import Path

from diffmem.data.bundled import sklearn_file

#: The photographs, in class order.
PATCH_IMAGES = ("china.jpg", "flower.jpg")


def sample_image_paths() -> list[Path]:
    """Paths of scikit-learn's bundled photographs (found without importing scikit-learn)."""

    return [sklearn_file("datasets", "images", name) for name in PATCH_IMAGES]


def check_patch_settings(patches: object) -> tuple[int, float]:
    """``data.patches`` as (side, min_std); ValueError naming the key otherwise."""
    if not isinstance(patches, dict):
        raise ValueError(f"data.patches must be a mapping {{side, min_std}} for data.source=patches, got {patches!r}")
    unknown = sorted(set(patches) - {"side", "min_std"})
    if unknown:
        raise ValueError(f"data.patches.{unknown[0]} is not a known key; known: side, min_std")
    side, min_std = patches.get("side"), patches.get("min_std")
    if isinstance(side, bool) or not isinstance(side, int) or side < 2:
        raise ValueError(f"data.patches.side={side!r}; allowed: an integer >= 2 (patch side in pixels)")
    if isinstance(min_std, bool) or not isinstance(min_std, (int, float)) or min_std < 0:
        raise ValueError(f"data.patches.min_std={min_std!r}; allowed: a number >= 0 (uint8 pixel units)")
    return int(side), float(min_std)


def _textured(sums: list[float], sums2: list[float], count: int, min_std: float) -> bool:
    s, s2 = int(round(sum(sums))), int(round(sum(sums2)))  # exact: integer pixel sums
    return count * s2 - s * s >= (min_std * count) ** 2


@functools.lru_cache(maxsize=16)
def kept_positions(side: int, min_std: float) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per class (photograph), the (row, column) grid positions of the patches the filter keeps, row-major.

    Numpy-free (Pillow's ImageStat), so the per-class counts are known while the DAG is built."""
    from PIL import Image, ImageStat

    out = []
    for path in sample_image_paths():
        with Image.open(path) as im:
            img = im.convert("RGB")
        w, h = img.size
        keep = []
        for r in range(h // side):
            for c in range(w // side):
                st = ImageStat.Stat(img.crop((c * side, r * side, (c + 1) * side, (r + 1) * side)))
                if _textured(st.sum, st.sum2, 3 * side * side, min_std):
                    keep.append((r, c))
        out.append(tuple(keep))
    return tuple(out)


def class_counts(side: int, min_std: float) -> list[int]:
    """Patches per class that the filter keeps (see :data:`diffmem.data.sources.PATCH_COUNTS` for the
    counts known without reading the photographs)."""
    return [len(k) for k in kept_positions(side, min_std)]


def load_patches(side: int, min_std: float):
    """(uint8 N x 3 x side x side patches, int64 labels): the kept patches of each photograph, class-major."""
    import numpy as np
    from PIL import Image

    images, labels = [], []
    for cls, (path, keep) in enumerate(zip(sample_image_paths(), kept_positions(side, min_std), strict=True)):
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"))  # H, W, 3
        for r, c in keep:
            images.append(a[r * side : (r + 1) * side, c * side : (c + 1) * side].transpose(2, 0, 1))
        labels += [cls] * len(keep)
    if not images:
        raise ValueError(f"data.patches.min_std={min_std:g} keeps no {side}x{side} patch; allowed: a lower min_std")
    return np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64)
