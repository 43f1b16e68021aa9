"""Image folders: ``path/<class_name>/*.png|jpg|jpeg``, one sub-folder per class, or a flat
``path/*.png|jpg|jpeg`` as one class (label 0).

Classes are sorted by folder name (label = rank), files by name; each image is center-cropped
to a square, resized, and converted to the channels the source declares
(:data:`diffmem.data.sources.SOURCE_FACTS`: RGB), so a folder of grayscale images loads as
3 equal channels and the net built for the source fits it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffmem.data.sources import channels as source_channels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name (hidden files skipped)."""
    return sorted(
        f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    )


def center_square(im, side: int, method: str | None):
    """A PIL image's centered square (the largest, ``(w - s) // 2`` from the left and ``(h - s) // 2`` from
    the top), resized to ``side`` x ``side`` by ``method`` (``data.resize``, see :func:`load_folder`)."""
    from PIL import Image

    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if s == side:
        return im
    if method == "lanczos":
        return im.resize((side, side), Image.Resampling.LANCZOS)
    box = side < s and s % side == 0
    return im.resize((side, side), Image.Resampling.BOX if box else Image.Resampling.BILINEAR)


def load_folder(path: str | None, resolution: int | None, method: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The images of a folder at ``resolution`` (None: the smallest center-crop side), resized by ``method``
    (``data.resize``): ``area`` = PIL's BOX for integer factors, else BILINEAR; ``lanczos`` = LANCZOS (as the
    paper's dataset tool center-crops ImageNet)."""
    from PIL import Image

    if path is None:
        raise ValueError("data.path is required for source 'folder': a folder of <class_name>/ subfolders or of images")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class_name>/*.png)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = _images_in(root)
    if classes and loose:
        raise ValueError(
            f"image folder {root} holds both class subfolders ({', '.join(classes[:3])}...) and images of its own "
            f"({loose[0].name}...): move those into a class folder, or keep a flat folder (one class) only"
        )
    files: list[tuple[Path, int]] = [(f, 0) for f in loose]  # a flat folder: one class
    for label, cls in enumerate(classes):
        found = _images_in(root / cls)
        if not found:
            raise ValueError(f"class folder {root / cls} has no {'/'.join(IMAGE_SUFFIXES)} images")
        files.extend((f, label) for f in found)
    if not files:
        raise ValueError(
            f"image folder {root} has neither class subfolders nor images (expected {root}/<class_name>/*.png, "
            f"or {root}/*.png as one class)"
        )

    sides = []
    for f, _ in files:
        with Image.open(f) as im:
            sides.append(min(im.size))
    r = min(sides) if resolution is None else resolution
    channels = source_channels("folder")
    mode = {1: "L", 3: "RGB"}[channels]
    images = np.empty((len(files), channels, r, r), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        with Image.open(f) as im:
            im = im.convert(mode)  # any mode (grayscale, palette, RGBA) to the declared channels
            a = np.asarray(center_square(im, r, method), dtype=np.uint8)
        images[i] = a[None] if channels == 1 else a.transpose(2, 0, 1)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return images, labels
