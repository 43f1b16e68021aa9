"""What each image source is, known without loading it: channels, classes, images per class.

This is the one table of per-source facts. The loaders produce images with these channels
(the ``folder`` loader converts every image to them), and :mod:`diffmem.plan.config` builds the net
for them and answers the training-set sizes a source can make without reading a file.

Imports neither numpy nor torch: parsing the workflow (building the DAG) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffmem.data.patches import check_patch_settings
from diffmem.data.patches import class_counts as count_patches

SOURCES = ("digits", "cifar10", "folder", "fonts", "patches")
LABEL_MODES = ("none", "true", "random", "unique")

FONT_IMAGES_PER_CLASS = 200  # images per digit class in the fonts source
#: Images per class of scikit-learn's digits (``np.bincount(load_digits().target)``; tests/data/test_data.py checks).
DIGITS_CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
#: Patches per class (china, flower) that the ``patches`` texture filter keeps, by
#: ``(data.patches.side, data.patches.min_std)``; other settings are counted by reading the two photographs
#: (:func:`diffmem.data.patches.class_counts`, numpy-free). tests/data/test_data.py checks every entry.
PATCH_COUNTS: dict[tuple[int, float], tuple[int, ...]] = {
    (16, 30.0): (480, 530),  # of 2 x 1040 patches
    (16, 0.0): (1040, 1040),
    (8, 0.0): (4240, 4240),
}


@dataclass(frozen=True)
class SourceFacts:
    """``channels``: of the loaded images (1 grayscale, 3 RGB). ``classes``: number of classes, None
    when it depends on the files (an image folder). ``per_class``: images in every class when all
    classes have the same known count, else None (digits: 174..183 per class, found by loading).
    ``bundled``: ships inside an installed package (no file to read, cheap to load).
    ``class_counts``: images in each class when known and not all equal (digits)."""

    channels: int
    classes: int | None = None
    per_class: int | None = None
    bundled: bool = False
    class_counts: tuple[int, ...] | None = None


SOURCE_FACTS: dict[str, SourceFacts] = {
    "digits": SourceFacts(channels=1, classes=10, bundled=True, class_counts=DIGITS_CLASS_COUNTS),  # scikit-learn
    "cifar10": SourceFacts(channels=3, classes=10, per_class=5000),  # the train split
    "folder": SourceFacts(channels=3),  # every image converted to RGB
    "fonts": SourceFacts(channels=1, classes=10, per_class=FONT_IMAGES_PER_CLASS, bundled=True),  # matplotlib
    # china.jpg and flower.jpg of scikit-learn; per-class counts depend on data.patches (PATCH_COUNTS)
    "patches": SourceFacts(channels=3, classes=2, bundled=True),
}
assert set(SOURCE_FACTS) == set(SOURCES)


def facts(source: str) -> SourceFacts:
    """The facts of ``source``; ValueError naming the known sources otherwise."""
    try:
        return SOURCE_FACTS[source]
    except KeyError:
        raise ValueError(f"data.source={source!r} is not a known source; known: {', '.join(SOURCES)}") from None


def channels(source: str) -> int:
    """Image channels that ``load_source(source)`` returns."""
    return facts(source).channels


def known_per_class(source: str) -> int | None:
    """Images per class of ``source`` when known without loading it (every class the same), else None."""
    return facts(source).per_class


def class_counts(data: dict, compute: bool = True) -> list[int] | None:
    """Images in each class of the source that data settings ``data`` name, known without loading images
    with numpy: from this table, or for ``patches`` at settings not in :data:`PATCH_COUNTS` by reading the two
    photographs with Pillow when ``compute`` (numpy-free). None when unknown (an image folder)."""
    f = facts(data["source"])
    if f.class_counts is not None:
        return list(f.class_counts)
    if f.per_class is not None and f.classes is not None:
        return [f.per_class] * f.classes
    if data["source"] == "patches":
        side, min_std = check_patch_settings(data.get("patches"))
        if (side, min_std) in PATCH_COUNTS:
            return list(PATCH_COUNTS[(side, min_std)])
        if not compute:
            return None

        return count_patches(side, min_std)
    return None


def blend_source_class(cls: int, other_classes: int) -> int | None:
    """The class of a blend's second source when ``data.blend.source_class`` is not given: the same number,
    or the only class of a one-class source; None when neither exists."""
    if cls < other_classes:
        return cls
    return 0 if other_classes == 1 else None


def sizes_from_counts(counts: list[int], classes: int) -> list[int]:
    """Class-balanced sizes: multiples of ``classes`` up to ``classes`` x the smallest of the first
    ``classes`` counts. ValueError naming data.classes when the source has fewer classes."""
    if classes > len(counts):
        raise ValueError(f"data.classes={classes} but the source has {len(counts)} classes; allowed: 1..{len(counts)}")
    per_class = min(counts[:classes])
    return [classes * k for k in range(1, per_class + 1)]


def blend_count(n: int, alpha: float, rounding: str = "round") -> int:
    """Images of a blend of n that come from the second source: ``round`` = round(alpha n) (half to even);
    ``official`` = the paper's dataset tool, n - int(n (1 - alpha)) in float64 (801 at n = 1,000, alpha = 0.8:
    1 - 0.8 is 0.19999999999999996). Either grows by 0 or 1 from n to n + 1, so blends nest."""
    if rounding == "official":
        return n - int(n * (1.0 - alpha))
    if rounding != "round":
        raise ValueError(f"data.blend.rounding={rounding!r}; allowed: round, official")
    return round(alpha * n)


def blend_sizes(have_main: int, have_other: int, alpha: float, rounding: str = "round") -> list[int]:
    """Sizes a blend can make: 1..the largest n with n - c(n) <= have_main and c(n) <= have_other, c =
    :func:`blend_count` (both counts grow with n)."""
    last = 0
    for n in range(1, have_main + have_other + 1):
        n1 = blend_count(n, alpha, rounding)
        if n - n1 <= have_main and n1 <= have_other:
            last = n
    return list(range(1, last + 1))


def known_sizes(data: dict, compute: bool = True) -> list[int] | None:
    """The training-set sizes data settings ``data`` can make (what ``diffmem.data.allowed_sizes`` answers),
    when the class counts are known without loading images (see :func:`class_counts`); else None."""
    counts = class_counts(data, compute)
    if counts is None:
        return None
    blend = data.get("blend")
    other = class_counts({**data, **blend}, compute) if blend else None
    if blend and other is None:
        return None
    return sizes_of_counts(data, counts, other)


def sizes_of_counts(data: dict, counts: list[int], other: list[int] | None = None) -> list[int] | None:
    """The training-set sizes data settings ``data`` can make from ``counts`` images per class of its source
    and, with a blend, ``other`` per class of the blend's second source. None when the blend names a class
    that is not there (``make_subset`` names the error)."""
    blend = data.get("blend")
    if not blend:
        return sizes_from_counts(counts, int(data.get("classes") or len(counts)))
    cls = int(blend["class"])
    if cls >= len(counts) or other is None:
        return None
    other_cls = blend.get("source_class")
    other_cls = blend_source_class(cls, len(other)) if other_cls is None else int(other_cls)
    if other_cls is None or other_cls >= len(other):
        return None
    return blend_sizes(counts[cls], other[other_cls], float(blend["alpha"]), blend.get("rounding", "round"))
