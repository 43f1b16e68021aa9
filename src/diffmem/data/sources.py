"""What each image source is, known without loading it: channels, classes, images per class.

This is the one table of per-source facts. The loaders produce images with these channels
(the ``folder`` loader converts every image to them), and :mod:`diffmem.config` builds the net
for them and answers the training-set sizes a source can make without reading a file.

Imports neither numpy nor torch: parsing the workflow (building the DAG) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("digits", "cifar10", "folder", "fonts")
LABEL_MODES = ("none", "true", "random", "unique")

FONT_IMAGES_PER_CLASS = 200  # images per digit class in the fonts source


@dataclass(frozen=True)
class SourceFacts:
    """``channels``: of the loaded images (1 grayscale, 3 RGB). ``classes``: number of classes, None
    when it depends on the files (an image folder). ``per_class``: images in every class when all
    classes have the same known count, else None (digits: 174..183 per class, found by loading).
    ``bundled``: ships inside an installed package (no file to read, cheap to load)."""

    channels: int
    classes: int | None = None
    per_class: int | None = None
    bundled: bool = False


SOURCE_FACTS: dict[str, SourceFacts] = {
    "digits": SourceFacts(channels=1, classes=10, bundled=True),  # in scikit-learn
    "cifar10": SourceFacts(channels=3, classes=10, per_class=5000),  # the train split
    "folder": SourceFacts(channels=3),  # every image converted to RGB
    "fonts": SourceFacts(channels=1, classes=10, per_class=FONT_IMAGES_PER_CLASS, bundled=True),  # matplotlib
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
