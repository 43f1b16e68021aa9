"""Image sources and the class-balanced, nested training subsets drawn from them.

Sources (:func:`load_source`) give uint8 NCHW images and int64 class labels 0..K-1:

- ``digits``: scikit-learn's bundled handwritten digits (1797 grayscale 8x8 images,
  10 classes, pixel values 0..16 mapped to 0..255 by round(v * 255 / 16)). Real data
  that ships inside a pip package: the embedded CPU default, no download.
- ``cifar10``: the train split (50k 3x32x32, 10 classes) of the official python
  tarball ``cifar-10-python.tar.gz``. ``path`` is the tarball, a folder holding it, or
  a folder holding the extracted ``cifar-10-batches-py/`` (or that folder itself).
  The batches are pickles; they are read with a restricted unpickler that builds only
  dicts, lists, bytes, strings, numbers and numpy arrays, never other classes. The
  tarball's md5 is checked against the official one (per-batch md5s for an extracted
  folder) unless ``verify_md5=False``. A missing file is downloaded by torchvision
  into that folder when ``download=True``.
- ``folder``: ``path/<class_name>/*.png|jpg|jpeg``, classes sorted by folder name
  (label = rank), files sorted by name, each image center-cropped to a square and
  resized (grayscale when every image is grayscale, RGB otherwise). ImageNet dogs
  for the paper's intra-class-diversity blend go here.
- ``fonts``: the digits 0..9 typeset from the TTF fonts that matplotlib ships
  (``mpl-data/fonts/ttf``, the 21 with standard digit glyphs: DejaVu, STIX, Computer
  Modern), or from the ``*.ttf`` files in ``path``. Each class has
  ``FONT_IMAGES_PER_CLASS`` grayscale 8x8 images: fonts taken in turn at three glyph
  heights, with seeded jitter in stroke width, rotation and offset, white ink on black
  like ``digits``. It is the second real source for the CPU-scale intra-class
  diversity experiment: digits class k blended with typeset digit k, as the paper
  blends CIFAR-10 dogs with ImageNet dogs. Fixed seeds; pixels may differ between
  FreeType/Pillow versions.

Subsets (:func:`make_subset`) keep the first C classes, take the same number of
images from each class, and nest: each class has one permutation seeded by ``seed``
and the class only, and a subset takes a prefix of it. Images are stored rank-major
(rank 0 of classes 0..C-1, then rank 1, ...), so the subset of size n is in fact the
first n images of the subset of size m > n, and every image keeps its random and
unique label when the size changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from diffmem.io import write_npz

SOURCES = ("digits", "cifar10", "folder", "fonts")
LABEL_MODES = ("none", "true", "random", "unique")

CIFAR10_TGZ = "cifar-10-python.tar.gz"
CIFAR10_TGZ_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_MD5 = {  # the extracted train batches of the official tarball
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

FONT_IMAGES_PER_CLASS = 200  # images per digit class in the fonts source
FONT_RESOLUTION = 8          # side of a fonts image, as digits
FONT_SEED = 20231004         # seed of the fonts jitter
_FONT_CANVAS = 64            # side of the canvas a glyph is drawn on before area downsampling
_FONT_HEIGHTS = (0.78, 0.88, 0.98)  # glyph height as a fraction of the canvas
_DIGIT_GLYPHS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SPEC_DEFAULTS: dict[str, Any] = {
    "source": "digits",   # one of SOURCES
    "path": None,         # file or folder for cifar10/folder (fonts: optional folder of .ttf)
    "verify_md5": True,   # check the official CIFAR-10 md5
    "download": False,    # let torchvision download CIFAR-10 when missing
    "resolution": None,   # output side in pixels; None = the source's own
    "classes": None,      # C: keep classes 0..C-1; None = all
    "size": None,         # |D|, a multiple of C
    "labels": "none",     # none | true | random | unique
    "label_classes": None,  # C' for labels=random
    "blend": None,        # {source, path, alpha, class[, verify_md5, download, source_class]} or None
    "seed": 0,            # seed of the per-class permutations and random labels
}
BLEND_DEFAULTS: dict[str, Any] = {
    "source": None,       # second source (one of SOURCES)
    "path": None,
    "alpha": None,        # fraction of the subset taken from the second source, in [0, 1]
    "class": None,        # class of the main source that is kept
    "verify_md5": True,
    "download": False,
    "source_class": None,  # class of the second source; None = same as `class` (or its only class)
}

_TAG_PERMUTATION = 0
_TAG_LABELS = 1


# ----------------------------------------------------------------------------------------------
# Resizing


def resize(images_u8: np.ndarray, resolution: int, chunk: int = 4096) -> np.ndarray:
    """Resize uint8 NCHW square images to ``resolution`` x ``resolution``, kept uint8.

    Integer downsampling factors average each block (area); other downsampling is
    antialiased bilinear; upsampling is bilinear. The same size returns the input.
    """
    images = np.asarray(images_u8)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"resize expects uint8 NCHW images, got {images.dtype} {images.shape}")
    n, c, h, w = images.shape
    if h != w:
        raise ValueError(f"resize expects square images, got {h}x{w}")
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    r = int(resolution)
    if r == h:
        return images_u8

    import torch
    import torch.nn.functional as F

    out = np.empty((n, c, r, r), dtype=np.uint8)
    for start in range(0, n, chunk):
        x = torch.from_numpy(images[start : start + chunk].astype(np.float32))
        if r < h and h % r == 0:
            y = F.interpolate(x, size=(r, r), mode="area")
        elif r < h:
            y = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        else:
            y = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        out[start : start + chunk] = y.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Convert uint8 NCHW images between grayscale (1) and RGB (3)."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 3 and channels == 1:
        weights = np.array([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)  # ITU-R 601 luma
        return np.clip(np.rint((images * weights).sum(axis=1, keepdims=True)), 0, 255).astype(np.uint8)
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=1)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


# ----------------------------------------------------------------------------------------------
# Sources


def load_source(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    download: bool = False,
    verify_md5: bool = True,
    resolution: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a whole source as (uint8 NCHW images, int64 labels); cached within the process.

    ``resolution`` resizes the images (None: the source's own; for ``folder``, the
    smallest center-crop side). The returned arrays are shared by the cache and read-only.
    """
    if name not in SOURCES:
        raise ValueError(f"data.source={name!r} is not a known source; known: {', '.join(SOURCES)}")
    if resolution is not None and (
        isinstance(resolution, bool) or int(resolution) != resolution or resolution < 1
    ):
        raise ValueError(f"data.resolution must be a positive integer or null, got {resolution!r}")
    key_path = None if path is None else str(Path(path).expanduser().resolve())
    return _load_cached(
        name, key_path, bool(download), bool(verify_md5), None if resolution is None else int(resolution)
    )


@functools.lru_cache(maxsize=8)
def _load_cached(name, path, download, verify_md5, resolution):
    if name == "folder":
        images, labels = _load_folder(path, resolution)
    else:
        if resolution is None:
            images, labels = _load_native(name, path, download, verify_md5)
        else:
            images, labels = _load_cached(name, path, download, verify_md5, None)
            images = resize(images, resolution)
    images = np.ascontiguousarray(images)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _load_native(name, path, download, verify_md5):
    if name == "digits":
        return _load_digits()
    if name == "cifar10":
        return _load_cifar10(path, download, verify_md5)
    if name == "fonts":
        return _render_fonts(path)
    raise AssertionError(name)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.floor(d.images * (255.0 / 16.0) + 0.5).astype(np.uint8)[:, None]  # round half up
    return images, d.target.astype(np.int64)


# ---- CIFAR-10


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.cache
def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    import _codecs

    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,  # how protocol-2 pickles from Python 3 store bytes
        ("builtins", "bytearray"): bytearray,
        ("__builtin__", "bytearray"): bytearray,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only builtin containers, numbers, strings and numpy arrays."""

    def find_class(self, module, name):
        allowed = _numpy_reconstructors()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only dicts, lists, bytes, "
            "numbers and numpy arrays"
        )


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` (e.g. a CIFAR-10 batch) allowing only plain data and numpy arrays."""
    import io

    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _parse_batch(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a dict, got {type(obj).__name__}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{where}: a CIFAR-10 batch needs keys b'data' and b'labels', has {list(obj)}")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{where}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{where}: b'labels' must be N={data.shape[0]} ints in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _find_cifar10(path: str | None, download: bool) -> tuple[str, Path]:
    """Return ("tar", tarball) or ("dir", extracted batches folder); download if asked."""
    if path is None:
        raise ValueError(
            f"data.path is required for source 'cifar10': the official {CIFAR10_TGZ}, the folder that "
            f"holds it, or the folder that holds the extracted {CIFAR10_DIR}/"
        )
    p = Path(path)
    if p.is_file():
        return "tar", p
    if p.is_dir():
        if (p / CIFAR10_TGZ).is_file():
            return "tar", p / CIFAR10_TGZ
        if (p / CIFAR10_DIR / "data_batch_1").is_file():
            return "dir", p / CIFAR10_DIR
        if (p / "data_batch_1").is_file():
            return "dir", p
    folder = p.parent if p.name.endswith((".tar.gz", ".tgz")) else p
    if download:
        import torchvision

        folder.mkdir(parents=True, exist_ok=True)
        torchvision.datasets.CIFAR10(root=str(folder), train=True, download=True)
        if (folder / CIFAR10_TGZ).is_file():
            return "tar", folder / CIFAR10_TGZ
        return "dir", folder / CIFAR10_DIR
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {p} as the tarball, {folder / CIFAR10_TGZ} and "
        f"{folder / CIFAR10_DIR}/data_batch_1. Download {CIFAR10_URL} into {folder}, or set "
        "data.download: true (load_source(..., download=True)) on a machine with internet."
    )


def _load_cifar10(path, download, verify_md5) -> tuple[np.ndarray, np.ndarray]:
    kind, where = _find_cifar10(path, download)
    batches = []
    if kind == "tar":
        if verify_md5:
            got = _md5(where)
            if got != CIFAR10_TGZ_MD5:
                raise ValueError(
                    f"{where}: md5 {got} is not the official CIFAR-10 tarball's {CIFAR10_TGZ_MD5} "
                    "(corrupt or partial download?). To read a tarball in the official format that is "
                    "not the official file (e.g. a test tarball), set data.verify_md5: false "
                    "(load_source(..., verify_md5=False))."
                )
        with tarfile.open(where, "r:gz") as tar:
            for name in CIFAR10_TRAIN_MD5:
                member_name = f"{CIFAR10_DIR}/{name}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise ValueError(
                        f"{where} has no {member_name}: not the official CIFAR-10 python tarball layout"
                    ) from None
                f = tar.extractfile(member) if member.isfile() else None
                if f is None:
                    raise ValueError(f"{where}: {member_name} is not a regular file")
                batches.append(_parse_batch(restricted_loads(f.read()), f"{where}:{member_name}"))
    else:
        for name, md5 in CIFAR10_TRAIN_MD5.items():
            file = where / name
            if not file.is_file():
                raise FileNotFoundError(f"{file} is missing from the extracted CIFAR-10 folder {where}")
            if verify_md5 and _md5(file) != md5:
                raise ValueError(
                    f"{file}: md5 is not the official {md5}. To read batches in the official format that "
                    "are not the official files, set data.verify_md5: false (load_source(..., "
                    "verify_md5=False))."
                )
            batches.append(_parse_batch(restricted_loads(file.read_bytes()), str(file)))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return images, labels


# ---- image folder


_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _load_folder(path: str | None, resolution: int | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    if path is None:
        raise ValueError("data.path is required for source 'folder': a folder of <class_name>/ subfolders")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class_name>/*.png)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        found = sorted(
            f for f in (root / cls).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            raise ValueError(f"class folder {root / cls} has no {'/'.join(IMAGE_SUFFIXES)} images")
        files.extend((f, label) for f in found)
    if not files:
        raise ValueError(f"image folder {root} has no class subfolders (expected {root}/<class_name>/*.png)")

    sides, gray = [], True
    for f, _ in files:
        with Image.open(f) as im:
            sides.append(min(im.size))
            gray = gray and im.mode in _GRAY_MODES
    r = min(sides) if resolution is None else resolution
    mode, channels = ("L", 1) if gray else ("RGB", 3)
    images = np.empty((len(files), channels, r, r), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        with Image.open(f) as im:
            im = im.convert(mode)
            w, h = im.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
            if s != r:
                box = r < s and s % r == 0
                im = im.resize((r, r), Image.Resampling.BOX if box else Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        images[i] = a[None] if gray else a.transpose(2, 0, 1)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return images, labels


# ---- typeset digits


def font_files(path: str | os.PathLike | None = None) -> list[Path]:
    """TTF fonts (matplotlib's, or those in ``path``) whose '0'..'9' are standard digit glyphs."""
    from fontTools.ttLib import TTFont

    if path is None:
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    else:
        folder = Path(path)
    keep = []
    for f in sorted(folder.glob("*.ttf")):
        try:
            with TTFont(f, lazy=True) as font:
                cmap = font.getBestCmap() or {}
        except Exception:  # noqa: BLE001 - an unreadable font is skipped
            continue
        if all(cmap.get(ord(str(d))) == g for d, g in enumerate(_DIGIT_GLYPHS)):
            keep.append(f)
    return keep


def _render_fonts(path: str | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, ImageDraw, ImageFont

    fonts = font_files(path)
    if not fonts:
        where = path or "matplotlib's mpl-data/fonts/ttf"
        raise ValueError(f"no TTF font with digit glyphs in {where}")
    canvas = _FONT_CANVAS
    faces = {f: ImageFont.truetype(str(f), size=int(canvas * 0.8)) for f in fonts}
    n = FONT_IMAGES_PER_CLASS
    images = np.zeros((10 * n, 1, FONT_RESOLUTION, FONT_RESOLUTION), dtype=np.uint8)
    labels = np.repeat(np.arange(10, dtype=np.int64), n)
    for digit in range(10):
        for i in range(n):
            rng = np.random.default_rng([FONT_SEED, digit, i])
            face = faces[fonts[i % len(fonts)]]
            height = _FONT_HEIGHTS[(i // len(fonts)) % len(_FONT_HEIGHTS)] * canvas
            stroke = int(rng.integers(1, 4))
            angle = float(rng.uniform(-8.0, 8.0))
            # draw the glyph large, then rotate and crop it to its ink
            big = Image.new("L", (2 * canvas, 2 * canvas), 0)
            ImageDraw.Draw(big).text(
                (canvas, canvas), str(digit), fill=255, font=face, anchor="mm",
                stroke_width=stroke, stroke_fill=255,
            )
            big = big.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0)
            glyph = big.crop(big.getbbox())
            # scale to the target height (width capped at the canvas), paste with a jittered offset
            gw, gh = glyph.size
            scale = min(height / gh, 0.95 * canvas / gw)
            tw, th = max(1, round(gw * scale)), max(1, round(gh * scale))
            glyph = glyph.resize((tw, th), Image.Resampling.LANCZOS)
            dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
            x = min(max((canvas - tw) // 2 + dx, 0), canvas - tw)
            y = min(max((canvas - th) // 2 + dy, 0), canvas - th)
            img = Image.new("L", (canvas, canvas), 0)
            img.paste(glyph, (x, y))
            small = np.asarray(img.reduce(canvas // FONT_RESOLUTION), dtype=np.float64)
            small = np.floor(small * (255.0 / max(small.max(), 1.0)) + 0.5)  # full contrast, as digits
            images[digit * n + i, 0] = small.astype(np.uint8)
    return images, labels


# ----------------------------------------------------------------------------------------------
# Subsets


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _resolve_spec(spec: dict) -> dict:
    """Fill defaults and check keys and values; ``size`` is not checked here."""
    if not isinstance(spec, dict):
        raise ValueError(f"data spec must be a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_DEFAULTS))
    if unknown:
        raise ValueError(f"data.{unknown[0]} is not a known key; known: {', '.join(SPEC_DEFAULTS)}")
    s = {**SPEC_DEFAULTS, **spec}
    if s["source"] not in SOURCES:
        raise ValueError(f"data.source={s['source']!r} is not a known source; known: {', '.join(SOURCES)}")
    if s["path"] is not None:
        s["path"] = str(s["path"])
    for key in ("verify_md5", "download"):
        if not isinstance(s[key], bool):
            raise ValueError(f"data.{key} must be true or false, got {s[key]!r}")
    if s["resolution"] is not None and (not _is_int(s["resolution"]) or s["resolution"] < 1):
        raise ValueError(f"data.resolution={s['resolution']!r}; allowed: a positive integer or null")
    if s["classes"] is not None and (not _is_int(s["classes"]) or s["classes"] < 1):
        raise ValueError(f"data.classes={s['classes']!r}; allowed: a positive integer or null (all)")
    if s["labels"] not in LABEL_MODES:
        raise ValueError(f"data.labels={s['labels']!r} is not one of {', '.join(LABEL_MODES)}")
    if s["labels"] == "random":
        if not _is_int(s["label_classes"]) or s["label_classes"] < 1:
            raise ValueError(
                f"data.label_classes={s['label_classes']!r}; labels=random needs a positive integer C'"
            )
        s["label_classes"] = int(s["label_classes"])
    if not _is_int(s["seed"]) or s["seed"] < 0:
        raise ValueError(f"data.seed={s['seed']!r}; allowed: a non-negative integer")
    if s["blend"] is not None:
        s["blend"] = _resolve_blend(s["blend"])
        if s["classes"] is None:
            s["classes"] = 1
        if s["classes"] != 1:
            raise ValueError(f"data.classes={s['classes']} but data.blend needs classes=1 (one class blended)")
    for key in ("resolution", "classes", "seed", "size"):
        if _is_int(s[key]):
            s[key] = int(s[key])
    return s


def _resolve_blend(blend: Any) -> dict:
    if not isinstance(blend, dict):
        raise ValueError(f"data.blend must be a mapping or null, got {blend!r}")
    unknown = sorted(set(blend) - set(BLEND_DEFAULTS))
    if unknown:
        raise ValueError(f"data.blend.{unknown[0]} is not a known key; known: {', '.join(BLEND_DEFAULTS)}")
    b = {**BLEND_DEFAULTS, **blend}
    if b["source"] not in SOURCES:
        raise ValueError(f"data.blend.source={b['source']!r} is not a known source; known: {', '.join(SOURCES)}")
    if b["path"] is not None:
        b["path"] = str(b["path"])
    alpha = b["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"data.blend.alpha={alpha!r}; allowed: a number in [0, 1]")
    b["alpha"] = float(alpha)
    for key in ("class", "source_class"):
        v = b[key]
        if (v is not None or key == "class") and (not _is_int(v) or v < 0):
            raise ValueError(f"data.blend.{key}={v!r}; allowed: a class index >= 0")
        if v is not None:
            b[key] = int(v)
    for key in ("verify_md5", "download"):
        if not isinstance(b[key], bool):
            raise ValueError(f"data.blend.{key} must be true or false, got {b[key]!r}")
    return b


def _class_rng(seed: int, tag: int, source_id: int, cls: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, tag, source_id, cls]))


class _Pool:
    """One class of one source in subset order: a seeded permutation and its random labels."""

    def __init__(self, images, members, seed, source_id, cls, label_classes):
        self.images = images          # the (resized) source images
        self.source_id = source_id    # 0 main, 1 blended-in source
        self.cls = cls                # class label in the source
        order = _class_rng(seed, _TAG_PERMUTATION, source_id, cls).permutation(len(members))
        self.index = members[order]   # source indices, the subset takes a prefix
        self.random_labels = (
            _class_rng(seed, _TAG_LABELS, source_id, cls).integers(0, label_classes, size=len(members))
            if label_classes
            else None
        )


def _plan(spec: dict):
    """Resolve a spec and load what it needs: (settings, pools, kind)."""
    s = _resolve_spec(spec)
    images, labels = load_source(
        s["source"], path=s["path"], download=s["download"], verify_md5=s["verify_md5"],
        resolution=s["resolution"],
    )
    if s["resolution"] is None:
        s["resolution"] = int(images.shape[-1])
    n_classes = int(labels.max()) + 1 if labels.size else 0
    label_classes = s["label_classes"] if s["labels"] == "random" else None
    if s["blend"] is None:
        if s["classes"] is None:
            s["classes"] = n_classes
        if s["classes"] > n_classes:
            raise ValueError(
                f"data.classes={s['classes']} but source {s['source']} has {n_classes} classes; "
                f"allowed: 1..{n_classes}"
            )
        pools = [
            _Pool(images, np.flatnonzero(labels == c), s["seed"], 0, c, label_classes)
            for c in range(s["classes"])
        ]
        return s, pools

    b = s["blend"]
    if b["class"] >= n_classes:
        raise ValueError(
            f"data.blend.class={b['class']} but source {s['source']} has {n_classes} classes; "
            f"allowed: 0..{n_classes - 1}"
        )
    other, other_labels = load_source(
        b["source"], path=b["path"], download=b["download"], verify_md5=b["verify_md5"],
        resolution=s["resolution"],
    )
    other = _match_channels(other, images.shape[1])
    other_classes = int(other_labels.max()) + 1 if other_labels.size else 0
    if b["source_class"] is None:
        b["source_class"] = b["class"] if b["class"] < other_classes else (0 if other_classes == 1 else None)
    if b["source_class"] is None or b["source_class"] >= other_classes:
        raise ValueError(
            f"data.blend.source_class={b['source_class']} (class {b['class']} of the main source) is not a "
            f"class of blend source {b['source']}, which has {other_classes}; allowed: 0..{other_classes - 1}"
        )
    pools = [
        _Pool(images, np.flatnonzero(labels == b["class"]), s["seed"], 0, b["class"], label_classes),
        _Pool(other, np.flatnonzero(other_labels == b["source_class"]), s["seed"], 1,
              b["source_class"], label_classes),
    ]
    return s, pools


def _blend_counts(alpha: float, sizes: np.ndarray) -> np.ndarray:
    """Images from the second source in subsets of the given sizes: round(alpha * size)."""
    return np.round(alpha * np.asarray(sizes, dtype=np.float64)).astype(np.int64)  # half to even


def _allowed(s: dict, pools: list[_Pool]) -> list[int]:
    if s["blend"] is None:
        per_class = min(len(p.index) for p in pools)
        return [s["classes"] * k for k in range(1, per_class + 1)]
    have0, have1 = len(pools[0].index), len(pools[1].index)
    sizes = np.arange(1, have0 + have1 + 1)
    n1 = _blend_counts(s["blend"]["alpha"], sizes)
    ok = (sizes - n1 <= have0) & (n1 <= have1)
    # both counts grow with size, so the makeable sizes are 1..max
    last = int(np.flatnonzero(ok).max()) + 1 if ok.any() else 0
    return list(range(1, last + 1))


def allowed_sizes(spec: dict) -> list[int]:
    """Sorted sizes |D| that ``make_subset`` can make for this spec (its ``size`` is ignored)."""
    s, pools = _plan({**spec, "size": None})
    return _allowed(s, pools)


def _check_size(s: dict, pools: list[_Pool]) -> int:
    n = s["size"]
    if not _is_int(n) or n < 1:
        raise ValueError(f"data.size={n!r}; allowed: a positive integer")
    allowed = _allowed(s, pools)
    top = allowed[-1] if allowed else 0
    if s["blend"] is None:
        C = s["classes"]
        if n % C:
            raise ValueError(
                f"data.size={n} is not a multiple of classes={C}; allowed: multiples of {C} up to {top}"
            )
        if n > top:
            raise ValueError(
                f"data.size={n} is more than classes={C} x {top // C} images of the smallest class; "
                f"allowed: multiples of {C} up to {top}"
            )
    elif n > top:
        b = s["blend"]
        n1 = int(_blend_counts(b["alpha"], [n])[0])
        raise ValueError(
            f"data.size={n} needs {n - n1} images of class {b['class']} from {s['source']} (has "
            f"{len(pools[0].index)}) and {n1} from {b['source']} (has {len(pools[1].index)}) at "
            f"blend.alpha={b['alpha']}; allowed: 1 to {top}"
        )
    return n


def make_subset(spec: dict) -> dict:
    """Make the class-balanced, nested, seeded training subset that ``spec`` describes.

    Returns dict(images u8 NCHW, labels int64 true class, cond_labels int64 (-1 for
    labels=none; class index for true; seeded C'-way label for random; index in the
    subset for unique), label_dim int (0, C, C', size), source_index int64 (index in
    its source), source_id int64 (0 main, 1 blended-in source), settings (the resolved
    spec)). Blend: class ``blend.class`` of the main source, with round(alpha * size)
    images (round half to even) of the same class from ``blend.source``; the j-th image
    comes from the second source when round(alpha * (j + 1)) > round(alpha * j), so a
    smaller blend is a prefix of a larger one. Errors are ValueError naming the key.
    """
    s, pools = _plan(spec)
    n = _check_size(s, pools)

    if s["blend"] is None:
        k = n // s["classes"]
        pool_of = np.tile(np.arange(len(pools)), k)  # rank-major: rank 0 of every class, then rank 1...
        rank = np.repeat(np.arange(k), len(pools))
    else:
        second = np.diff(_blend_counts(s["blend"]["alpha"], np.arange(n + 1))).astype(bool)
        pool_of = second.astype(np.int64)
        rank = np.where(second, np.cumsum(second) - 1, np.cumsum(~second) - 1)

    channels, r = pools[0].images.shape[1], s["resolution"]
    images = np.empty((n, channels, r, r), dtype=np.uint8)
    source_index = np.empty(n, dtype=np.int64)
    labels = np.empty(n, dtype=np.int64)
    cond = np.full(n, -1, dtype=np.int64)
    source_id = np.empty(n, dtype=np.int64)
    for p_i, pool in enumerate(pools):
        at = np.flatnonzero(pool_of == p_i)
        idx = pool.index[rank[at]]
        images[at] = pool.images[idx]
        source_index[at] = idx
        source_id[at] = pool.source_id
        labels[at] = pools[0].cls if s["blend"] is not None else pool.cls
        if s["labels"] == "true":
            cond[at] = p_i if s["blend"] is None else 0
        elif s["labels"] == "random":
            cond[at] = pool.random_labels[rank[at]]
    if s["labels"] == "unique":
        cond = np.arange(n, dtype=np.int64)
    label_dim = {"none": 0, "true": s["classes"], "random": s["label_classes"], "unique": n}[s["labels"]]
    return {
        "images": images,
        "labels": labels,
        "cond_labels": cond,
        "label_dim": int(label_dim),
        "source_index": source_index,
        "source_id": source_id,
        "settings": s,
    }


def save_subset(path: str | os.PathLike, subset: dict) -> None:
    """Write a subset as one npz (atomic); the settings go in as a JSON string."""
    write_npz(
        path,
        images=np.asarray(subset["images"], dtype=np.uint8),
        labels=np.asarray(subset["labels"], dtype=np.int64),
        cond_labels=np.asarray(subset["cond_labels"], dtype=np.int64),
        label_dim=np.int64(subset["label_dim"]),
        source_index=np.asarray(subset["source_index"], dtype=np.int64),
        source_id=np.asarray(subset["source_id"], dtype=np.int64),
        settings=np.array(json.dumps(subset["settings"], sort_keys=True)),
    )


def load_subset(path: str | os.PathLike) -> dict:
    """Read a subset written by :func:`save_subset` (no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        return {
            "images": z["images"],
            "labels": z["labels"],
            "cond_labels": z["cond_labels"],
            "label_dim": int(z["label_dim"]),
            "source_index": z["source_index"],
            "source_id": z["source_id"],
            "settings": json.loads(str(z["settings"])),
        }


__all__ = [
    "SOURCES",
    "LABEL_MODES",
    "FONT_IMAGES_PER_CLASS",
    "load_source",
    "resize",
    "font_files",
    "restricted_loads",
    "allowed_sizes",
    "make_subset",
    "save_subset",
    "load_subset",
]
