"""Image folders: ``path/<class_name>/*.png|jpg|jpeg``, one sub-folder per class, or a flat
``path/*.png|jpg|jpeg`` as one class (label 0).

Classes are sorted by folder name (label = rank), files by name; each image is center-cropped
to a square, resized, and converted to the channels the source declares
(:data:`diffmem.data.sources.SOURCE_FACTS`: RGB) by :func:`to_channels`, so a folder of grayscale images
loads as 3 equal channels and the net built for the source fits it; 16-bit grayscale is scaled to 8 bits.

:func:`check_folder` is the check before any job: the same layout, and every file where images are read is
an image that Pillow verifies (its chunks and checksums), decodes whole and converts as the loader does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from diffmem.data.sources import channels as source_channels

if TYPE_CHECKING:  # numpy is imported where it is used: check_folder runs before the DAG is built
    import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Pillow's modes of 16-bit grayscale (``I``: as older Pillow opens a 16-bit PNG); 16-bit RGB(A) PNGs open
#: as RGB(A), already 8 bits (their high bytes).
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


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


def to_channels(im, mode: str):
    """A PIL image converted to ``mode`` (``L`` or ``RGB``), from any mode: grayscale, palette, RGBA, and
    16-bit grayscale scaled to 8 bits (``value >> 8``), which ``convert`` alone would clip to 255."""
    if im.mode in SIXTEEN_BIT_MODES:
        import numpy as np
        from PIL import Image

        a = np.clip(np.asarray(im).astype(np.int64), 0, 65535) >> 8
        im = Image.fromarray(a.astype(np.uint8))
    return im.convert(mode)


def _layout(path: str | Path | None) -> tuple[Path, list[Path]]:
    """The folder and the folders its images lie in: its class sub-folders sorted by name (label = rank), or
    itself when it holds images and no sub-folder (a flat folder: one class). ValueError / FileNotFoundError
    naming the folder when it is neither."""
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
    if not classes and not loose:
        other = sorted(f for f in root.iterdir() if f.is_file() and not f.name.startswith("."))
        raise ValueError(
            f"image folder {root} has neither class subfolders nor images"
            + (f" (it holds other files, e.g. {other[0]})" if other else "")
            + f"; expected {root}/<class_name>/*.png, or {root}/*.png as one class"
        )
    return root, [root / c for c in classes] or [root]


def _class_images(folder: Path) -> list[Path]:
    """The images of one class folder; ValueError when it has none."""
    found = _images_in(folder)
    if not found:
        raise ValueError(f"class folder {folder} has no {'/'.join(IMAGE_SUFFIXES)} images")
    return found


def check_folder(path: str | Path | None) -> list[int]:
    """Check an image folder before any job; return its images per class (label order).

    The layout is the one :func:`load_folder` reads. Every file directly in a class folder (in the folder
    itself when flat), hidden ones aside, must be a ``.png``/``.jpg``/``.jpeg`` image that Pillow verifies,
    decodes whole and converts by :func:`to_channels` (2,000 32x32 PNGs: about 0.3 s). The check stops at the
    first file that is not, so a folder that holds no image dataset (``/etc``) is refused at once. ValueError
    naming the file."""
    root, folders = _layout(path)
    mode = _mode()
    counts = []
    for folder in folders:
        for f in sorted(folder.iterdir()):
            if f.name.startswith(".") or not f.is_file():
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(
                    f"{f} is not a {'/'.join(IMAGE_SUFFIXES)} image; expected only images in {folder} (the "
                    f"folder source reads {root}/<class_name>/*.png or {root}/*.png): move other files out, or "
                    "hide them (a name starting with '.')"
                )
            _check_image(f, mode)
        counts.append(len(_class_images(folder)))
    return counts


def _mode() -> str:
    """The PIL mode of the channels the folder source declares."""
    return {1: "L", 3: "RGB"}[source_channels("folder")]


def _check_image(f: Path, mode: str) -> None:
    """Pillow verifies ``f`` (a PNG's chunks and their checksums), then decodes it whole (a broken data stream
    fails here) and converts it as :func:`load_folder` does."""
    from PIL import Image

    try:
        with Image.open(f) as im:
            im.verify()
        with Image.open(f) as im:
            to_channels(im, mode)
    except Exception as e:  # Pillow raises many kinds: UnidentifiedImageError, SyntaxError, OSError, struct.error
        raise ValueError(f"{f} is not a readable image ({type(e).__name__}: {e}); expected a PNG or JPEG") from None


def load_folder(path: str | None, resolution: int | None, method: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The images of a folder at ``resolution`` (None: the smallest center-crop side), resized by ``method``
    (``data.resize``): ``area`` = PIL's BOX for integer factors, else BILINEAR; ``lanczos`` = LANCZOS (as the
    paper's dataset tool center-crops ImageNet)."""
    import numpy as np
    from PIL import Image

    _, folders = _layout(path)
    files = [(f, label) for label, folder in enumerate(folders) for f in _class_images(folder)]

    sides = []
    for f, _ in files:
        with Image.open(f) as im:
            sides.append(min(im.size))
    r = min(sides) if resolution is None else resolution
    channels, mode = source_channels("folder"), _mode()
    images = np.empty((len(files), channels, r, r), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        with Image.open(f) as im:
            im = to_channels(im, mode)  # any mode (grayscale, palette, RGBA, 16-bit) to the declared channels
            a = np.asarray(center_square(im, r, method), dtype=np.uint8)
        images[i] = a[None] if channels == 1 else a.transpose(2, 0, 1)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return images, labels
