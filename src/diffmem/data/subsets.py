"""Class-balanced, nested, seeded training subsets drawn from the image sources.

Subsets (:func:`make_subset`) keep the first C classes, take the same number of images from each
class, and nest: each class has one order, and a subset takes a prefix of it. ``pick`` chooses that
order: ``random`` = a permutation seeded by ``seed`` and the class only; ``first`` = the source's own
order, so a subset holds the first k images of each class (the paper's dataset tool, which takes the
first |D|/10 images of each CIFAR-10 class). Images are stored rank-major (rank 0 of classes 0..C-1,
then rank 1, ...), so the subset of size n is in fact the first n images of the subset of size m > n,
and every image keeps its random and unique label when the size changes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from diffmem.data.geometry import data_geometry
from diffmem.data.images import RESIZE_METHODS, match_channels
from diffmem.data.load import load_source
from diffmem.data.patches import check_patch_settings
from diffmem.data.sources import LABEL_MODES, SOURCES, blend_count, blend_source_class
from diffmem.io import CorruptFileError, read_npz, write_npz

SPEC_DEFAULTS: dict[str, Any] = {
    "source": "digits",  # one of SOURCES
    "path": None,  # file or folder for cifar10/folder (fonts: optional folder of .ttf)
    "verify_md5": True,  # check the official CIFAR-10 md5
    "download": False,  # let torchvision download CIFAR-10 when missing
    "resolution": None,  # output side in pixels; None = the source's own
    "classes": None,  # C: keep classes 0..C-1; None = all
    "size": None,  # |D|, a multiple of C
    "labels": "none",  # none | true | random | unique
    "label_classes": None,  # C' for labels=random
    "blend": None,  # {source, path, alpha, class[, verify_md5, download, source_class]} or None
    "seed": 0,  # seed of the per-class permutations and random labels
    "patches": None,  # {side, min_std} of the patches source (diffmem.data.patches); absent otherwise
}
#: Keys a spec must give (their one default is in the workflow's config schema, which fills them in):
#: ``pick`` (random | first) and ``resize`` (area | lanczos, :data:`diffmem.data.images.RESIZE_METHODS`).
SPEC_REQUIRED = ("pick", "resize")
PICKS = ("random", "first")
BLEND_DEFAULTS: dict[str, Any] = {
    "source": None,  # second source (one of SOURCES)
    "path": None,
    "alpha": None,  # fraction of the subset taken from the second source, in [0, 1]
    "class": None,  # class of the main source that is kept
    "verify_md5": True,
    "download": False,
    "source_class": None,  # class of the second source; None = same as `class` (or its only class)
    "rounding": "round",  # second-source count: round | official (blend_count; the schema's default)
}
#: How many of a blend's n images come from the second source (:func:`diffmem.data.sources.blend_count`).
BLEND_ROUNDINGS = ("round", "official")

_TAG_PERMUTATION = 0
_TAG_LABELS = 1


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _resolve_spec(spec: dict) -> dict:
    """Fill defaults and check keys and values; ``size`` is not checked here."""
    if not isinstance(spec, dict):
        raise ValueError(f"data spec must be a dict, got {type(spec).__name__}")
    known = (*SPEC_DEFAULTS, *SPEC_REQUIRED)
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise ValueError(f"data.{unknown[0]} is not a known key; known: {', '.join(known)}")
    for key, allowed in (("pick", PICKS), ("resize", RESIZE_METHODS)):
        if key not in spec:
            raise ValueError(
                f"data.{key} is not set; allowed: {', '.join(allowed)} (the config's schema fills in its default)"
            )
        if spec[key] not in allowed:
            raise ValueError(f"data.{key}={spec[key]!r}; allowed: {', '.join(allowed)}")
    s = {**SPEC_DEFAULTS, **spec}
    if s["source"] not in SOURCES:
        raise ValueError(f"data.source={s['source']!r} is not a known source; known: {', '.join(SOURCES)}")
    if s["path"] is not None:
        s["path"] = str(s["path"])
    if s["source"] == "patches":
        side, min_std = check_patch_settings(s["patches"])
        s["patches"] = {"side": side, "min_std": min_std}
    elif s["patches"] is not None:
        raise ValueError(f"data.patches is set but data.source={s['source']!r}; it belongs to source patches")
    if "patches" not in spec:
        del s["patches"]  # the settings of other sources keep their keys (and their data ids)
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
            raise ValueError(f"data.label_classes={s['label_classes']!r}; labels=random needs a positive integer C'")
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
    if b["rounding"] not in BLEND_ROUNDINGS:
        raise ValueError(f"data.blend.rounding={b['rounding']!r}; allowed: {', '.join(BLEND_ROUNDINGS)}")
    return b


def _class_rng(seed: int, tag: int, source_id: int, cls: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, tag, source_id, cls]))


class _Pool:
    """One class of one source in subset order: a seeded permutation and its random labels."""

    def __init__(self, images, members, seed, source_id, cls, label_classes, pick):
        self.images = images  # the (resized) source images
        self.source_id = source_id  # 0 main, 1 blended-in source
        self.cls = cls  # class label in the source
        if pick == "first":  # the source's order (members are ascending source indices)
            self.index = members
        else:
            order = _class_rng(seed, _TAG_PERMUTATION, source_id, cls).permutation(len(members))
            self.index = members[order]  # source indices, the subset takes a prefix
        self.random_labels = (
            _class_rng(seed, _TAG_LABELS, source_id, cls).integers(0, label_classes, size=len(members))
            if label_classes
            else None
        )


def _plan(spec: dict):
    """Resolve a spec and load what it needs: (settings, pools, kind)."""
    s = _resolve_spec(spec)
    images, labels = load_source(
        s["source"],
        path=s["path"],
        download=s["download"],
        verify_md5=s["verify_md5"],
        resolution=s["resolution"],
        resize_method=s["resize"],
        patches=s.get("patches"),
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
                f"data.classes={s['classes']} but source {s['source']} has {n_classes} classes; allowed: 1..{n_classes}"
            )
        pools = [
            _Pool(images, np.flatnonzero(labels == c), s["seed"], 0, c, label_classes, s["pick"])
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
        b["source"],
        path=b["path"],
        download=b["download"],
        verify_md5=b["verify_md5"],
        resolution=s["resolution"],
        resize_method=s["resize"],
    )
    other = match_channels(other, images.shape[1])
    other_classes = int(other_labels.max()) + 1 if other_labels.size else 0
    if b["source_class"] is None:
        b["source_class"] = blend_source_class(b["class"], other_classes)
    if b["source_class"] is None or b["source_class"] >= other_classes:
        raise ValueError(
            f"data.blend.source_class={b['source_class']} (class {b['class']} of the main source) is not a "
            f"class of blend source {b['source']}, which has {other_classes}; allowed: 0..{other_classes - 1}"
        )
    pools = [
        _Pool(images, np.flatnonzero(labels == b["class"]), s["seed"], 0, b["class"], label_classes, s["pick"]),
        _Pool(
            other,
            np.flatnonzero(other_labels == b["source_class"]),
            s["seed"],
            1,
            b["source_class"],
            label_classes,
            s["pick"],
        ),
    ]
    return s, pools


def _blend_counts(blend: dict, sizes: np.ndarray) -> np.ndarray:
    """Images from the second source in subsets of the given sizes (``blend.rounding``:
    :func:`diffmem.data.sources.blend_count`, round(alpha n) or the paper's n - int(n (1 - alpha)))."""
    alpha, rounding = float(blend["alpha"]), blend.get("rounding", BLEND_DEFAULTS["rounding"])
    return np.array([blend_count(int(n), alpha, rounding) for n in np.asarray(sizes).reshape(-1)], dtype=np.int64)


def _allowed(s: dict, pools: list[_Pool]) -> list[int]:
    if s["blend"] is None:
        per_class = min(len(p.index) for p in pools)
        return [s["classes"] * k for k in range(1, per_class + 1)]
    have0, have1 = len(pools[0].index), len(pools[1].index)
    sizes = np.arange(1, have0 + have1 + 1)
    n1 = _blend_counts(s["blend"], sizes)
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
            raise ValueError(f"data.size={n} is not a multiple of classes={C}; allowed: multiples of {C} up to {top}")
        if n > top:
            raise ValueError(
                f"data.size={n} is more than classes={C} x {top // C} images of the smallest class; "
                f"allowed: multiples of {C} up to {top}"
            )
    elif n > top:
        b = s["blend"]
        n1 = int(_blend_counts(b, [n])[0])
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
    spec)). Blend: class ``blend.class`` of the main source, with c(size) images of the
    same class from ``blend.source``, c = round(alpha * size) (half to even) or, with
    ``blend.rounding: official``, size - int(size * (1 - alpha)); the j-th image comes from
    the second source when c(j + 1) > c(j), so a smaller blend is a prefix of a larger one.
    Errors are ValueError naming the key.
    """
    s, pools = _plan(spec)
    n = _check_size(s, pools)

    if s["blend"] is None:
        k = n // s["classes"]
        pool_of = np.tile(np.arange(len(pools)), k)  # rank-major: rank 0 of every class, then rank 1...
        rank = np.repeat(np.arange(k), len(pools))
    else:
        second = np.diff(_blend_counts(s["blend"], np.arange(n + 1))).astype(bool)
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
        "geometry": data_geometry(images),
    }


def subset_geometry(subset: dict) -> dict:
    """The subset's data geometry: as made (saved with it), or computed now for a subset saved before
    subsets carried it."""
    return subset.get("geometry") or data_geometry(subset["images"])


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
        geometry=np.array(json.dumps(subset_geometry(subset), sort_keys=True)),
    )


def load_subset(path: str | os.PathLike) -> dict:
    """Read a subset written by :func:`save_subset` (no pickle); a truncated or foreign file raises
    :class:`diffmem.io.CorruptFileError` naming it and the way out."""
    z = read_npz(path)
    try:
        return {
            "images": z["images"],
            "labels": z["labels"],
            "cond_labels": z["cond_labels"],
            "label_dim": int(z["label_dim"]),
            "source_index": z["source_index"],
            "source_id": z["source_id"],
            "settings": json.loads(str(z["settings"])),
            **({"geometry": json.loads(str(z["geometry"]))} if "geometry" in z else {}),
        }
    except KeyError as e:
        raise CorruptFileError(path, f"no array {e} (not a subset written by diffmem)") from None
    except ValueError as e:
        raise CorruptFileError(path, f"unreadable settings: {e}") from None
