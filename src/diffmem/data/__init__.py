"""Image sources and the class-balanced, nested training subsets drawn from them.

Modules, by concern:

- :mod:`~diffmem.data.sources`: the facts of each source known without loading it (channels,
  classes, images per class); no numpy, no torch, so building the workflow's DAG stays light;
- :mod:`~diffmem.data.load`: :func:`load_source` (digits, and dispatch to the loaders below);
- :mod:`~diffmem.data.cifar10`, :mod:`~diffmem.data.folder`, :mod:`~diffmem.data.fonts`: readers;
- :mod:`~diffmem.data.images`: resizing, grayscale/RGB conversion, and the data at a net's side
  (``model.resolution``: pixel repetition up, block means back);
- :mod:`~diffmem.data.patches`: textured patches of scikit-learn's two bundled photographs;
- :mod:`~diffmem.data.subsets`: :func:`make_subset`, :func:`allowed_sizes`, save and load;
- :mod:`~diffmem.data.geometry`: :func:`data_geometry`, how crowded a subset is (nearest-neighbour and
  pair distances);
- :mod:`~diffmem.data.dog_pool`: the paper's ImageNet dog pool as an image folder (``python -m diffmem
  dog-pool``), from the classes of :mod:`~diffmem.data.imagenet_dogs`.

The names below are re-exported here (``from diffmem import data; data.make_subset(...)``) and
imported on first use, so ``import diffmem.data.sources`` pulls in neither numpy nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "sources": ("SOURCES", "LABEL_MODES", "FONT_IMAGES_PER_CLASS", "SOURCE_FACTS", "SourceFacts",
                "DIGITS_CLASS_COUNTS", "PATCH_COUNTS", "known_sizes"),
    "patches": ("PATCH_IMAGES", "load_patches"),
    "geometry": ("data_geometry",),
    "load": ("load_source",),
    "images": ("resize", "match_channels", "to_net_resolution", "to_data_resolution"),
    "cifar10": ("CIFAR10_TGZ", "CIFAR10_TGZ_MD5", "CIFAR10_URL", "CIFAR10_DIR", "CIFAR10_TRAIN_MD5",
                "restricted_loads"),
    "folder": ("IMAGE_SUFFIXES",),
    "fonts": ("font_files",),
    "subsets": ("SPEC_DEFAULTS", "BLEND_DEFAULTS", "allowed_sizes", "make_subset", "save_subset",
                "load_subset", "subset_geometry"),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'diffmem.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"diffmem.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
