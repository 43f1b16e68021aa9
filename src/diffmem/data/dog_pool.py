"""The ImageNet dog pool of the intra-class diversity experiment, built as the paper's released tools build
it (``python -m diffmem dog-pool``), as a folder the ``folder`` source reads (``data.blend``).

What the released tools do (sail-sg/DiffMemorize ``dataset_utils/sample_imagenet.py``, then
``intra_diversity.py --transform=center-crop --resolution=32x32``), and what this module does:

- classes: the 123 ImageNet classes of :data:`diffmem.data.imagenet_dogs.DOG_CLASSES` (118 breeds, 3 wolves,
  coyote, dingo); other folders of the tree are never read. Every one of them must be there;
- an even draw of ``n`` (2,000): ``n // 123`` from each class, and one more from each of the first
  ``n % 123`` classes in that order (2,000 = 32 x 17 + 91 x 16). The released sampler takes the first files
  ``os.listdir`` happens to list; here each class's files are sorted by name and a seeded draw picks them;
- one seeded shuffle of the whole pool (the released one is unseeded), whose order the files keep:
  ``<out>/dog/00000.png``, ... in pool order, so that ``data.pick: first`` takes the pool's first images as the
  released blending takes the first of its list;
- each image: converted to RGB, its centered square (side min(w, h), offset ``(w - s) // 2``, ``(h - s) // 2``)
  resized to 32 x 32 by PIL's LANCZOS, the released ``center-crop`` transform; stored as lossless PNG. (The
  released tool feeds the decoded array to PIL as RGB without converting, which fits grayscale and RGB files;
  the few CMYK JPEGs of ImageNet are converted by PIL here.)

``<out>/manifest.json`` lists each output file with its source (relative to the ImageNet tree, so the same
pool built from a tree at another path has the same manifest and data id), class and SHA-256, and the pool's
SHA-256 (:func:`pool_sha256`). Randomness: numpy's ``default_rng(seed)`` (PCG64), the same on every platform.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diffmem.data.folder import IMAGE_SUFFIXES, center_square, to_channels
from diffmem.data.imagenet_dogs import DOG_CLASSES
from diffmem.io import write_json

__all__ = ["MANIFEST", "POOL_CLASS", "POOL_N", "POOL_SIDE", "build_dog_pool", "class_quotas", "draw_pool",
           "pool_sha256"]  # fmt: skip

POOL_N = 2000  # images in the released pool (sample_imagenet.py's num_samples)
POOL_SIDE = 32  # --resolution=32x32
POOL_CLASS = "dog"  # the pool's one class folder: the folder source reads it as class 0
MANIFEST = "manifest.json"
_SOURCE = ("sail-sg/DiffMemorize dataset_utils/sample_imagenet.py (classes, counts) and intra_diversity.py "
           "--transform=center-crop --resolution=32x32 (crop, LANCZOS resize)")  # fmt: skip


def class_quotas(n: int, classes: int) -> list[int]:
    """Images drawn from each of ``classes`` classes for a pool of ``n``: ``n // classes`` each, one more for
    each of the first ``n % classes`` (the released sampler's rule)."""
    if classes < 1 or n < 1:
        raise ValueError(f"dog pool: need n >= 1 and at least one class, got n={n}, classes={classes}")
    return [n // classes + (1 if k < n % classes else 0) for k in range(classes)]


def _class_files(root: Path, wnid: str) -> list[str]:
    """Names of the images of one class folder, sorted (hidden files skipped)."""
    folder = root / wnid
    return sorted(
        f.name
        for f in folder.iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    )


def draw_pool(
    imagenet: str | os.PathLike, n: int = POOL_N, seed: int = 0, classes: Sequence[tuple[str, str]] = DOG_CLASSES
) -> list[dict[str, str]]:
    """The pool, in its shuffled order: one ``{source, class, name}`` per image, ``source`` the file relative
    to the tree ``imagenet`` (``<wnid>/<file>``). Refuses a missing tree, a tree without the classes (naming
    what is missing) and a class with fewer images than its quota."""
    root = Path(imagenet)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet train folder {root} does not exist (expected {root}/<wnid>/*.JPEG)")
    missing = [wnid for wnid, _ in classes if not (root / wnid).is_dir()]
    if len(missing) == len(classes):
        first, name = classes[0]
        raise ValueError(
            f"{root} holds none of the {len(classes)} dog classes (expected class folders such as {root}/{first}/ "
            f"({name}) with *.JPEG images: the train split of ILSVRC-2012)"
        )
    if missing:
        raise ValueError(
            f"{root} lacks {len(missing)} of the {len(classes)} dog classes: {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''} (the pool draws from every one)"
        )
    rng = np.random.default_rng(seed)
    pool: list[dict[str, str]] = []
    for (wnid, name), quota in zip(classes, class_quotas(n, len(classes)), strict=True):
        files = _class_files(root, wnid)
        if len(files) < quota:
            raise ValueError(f"class folder {root / wnid} ({name}) has {len(files)} images, the pool needs {quota}")
        picked = np.sort(rng.choice(len(files), size=quota, replace=False))
        pool.extend({"source": f"{wnid}/{files[i]}", "class": wnid, "name": name} for i in picked)
    return [pool[i] for i in rng.permutation(len(pool))]


def _pool_image(path: Path, side: int):
    """One pool image: RGB, its centered square resized to ``side`` by LANCZOS."""
    from PIL import Image

    with Image.open(path) as im:
        return center_square(to_channels(im, "RGB"), side, "lanczos")  # 16-bit scaled, not clipped


def pool_sha256(out: str | os.PathLike, files: Sequence[str]) -> str:
    """SHA-256 of a pool: for each of its ``files`` (paths relative to ``out``) in name order, the path, a NUL
    byte, then the file's bytes."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0")
        h.update((Path(out) / rel).read_bytes())
    return h.hexdigest()


def build_dog_pool(
    imagenet: str | os.PathLike,
    out: str | os.PathLike,
    n: int = POOL_N,
    seed: int = 0,
    side: int = POOL_SIDE,
    classes: Sequence[tuple[str, str]] = DOG_CLASSES,
) -> dict[str, Any]:
    """Draw the pool from the ImageNet train tree ``imagenet`` and write it to ``out`` (``out/dog/*.png`` and
    ``out/manifest.json``, see the module's doc); returns the manifest. ``out`` must not hold files yet; the
    folder appears whole or not at all (written beside it, then renamed)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder: choose a new --out, or remove it first")
    pool = draw_pool(imagenet, n, seed, classes)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / POOL_CLASS).mkdir(parents=True)
    entries = []
    for k, item in enumerate(pool):
        rel = f"{POOL_CLASS}/{k:05d}.png"
        _pool_image(Path(imagenet) / item["source"], side).save(partial / rel, format="PNG")
        digest = hashlib.sha256((partial / rel).read_bytes()).hexdigest()
        entries.append({"file": rel, "source": item["source"], "class": item["class"], "name": item["name"],
                        "sha256": digest})  # fmt: skip
    per_class = {wnid: 0 for wnid, _ in classes}
    for item in pool:
        per_class[item["class"]] += 1
    manifest = {
        "about": f"{len(pool)} ImageNet dog images ({len(classes)} classes), {side}x{side}, seed {seed}",
        "released_tools": _SOURCE,
        "n": len(pool),
        "seed": seed,
        "side": side,
        "per_class": per_class,
        "sha256": pool_sha256(partial, [e["file"] for e in entries]),
        "files": entries,
    }
    write_json(partial / MANIFEST, manifest)
    if out.exists():
        out.rmdir()  # empty, checked above
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(out)
    return manifest
