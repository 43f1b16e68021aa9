"""Complete run settings outside the workflow: the schema's defaults of ``base`` with a few blocks' keys
given, for the runs that tests and ``scripts/benchmark.py`` train on data they make themselves.

A workflow run gets its settings from the config (:func:`diffmem.plan.expand.expand`); these skip the
config, its expansion and its checks, so the data source may be one the workflow does not know
(``test``, ``synthetic``) and the net is passed as given (the training resolves it).
"""

from __future__ import annotations

import copy
from typing import Any

from diffmem.plan import schema
from diffmem.plan.load import fill_defaults

#: The blocks of a run's settings, in the order the schema's ``base`` lists them.
BLOCKS = ("data", "model", "diffusion", "train", "sample", "score")


def schema_defaults() -> dict[str, dict[str, Any]]:
    """Every block of ``base`` as the schema's defaults fill an empty config (a fresh copy)."""
    base: dict[str, Any] = {}
    fill_defaults(base, schema.load_schema()["properties"]["base"])
    return copy.deepcopy({name: base[name] for name in BLOCKS})


def run_settings(**blocks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run settings with every key the schema gives a default: each block in ``blocks`` (``data=``,
    ``model=``, ``train=``, ...) updates that block's defaults key by key, and a key given replaces the
    default's whole value (``train={"ema": {...}}`` sets all of ``ema``, no merge below it)."""
    unknown = sorted(set(blocks) - set(BLOCKS))
    if unknown:
        raise ValueError(f"run_settings: unknown blocks {unknown}; blocks: {', '.join(BLOCKS)}")
    settings = schema_defaults()
    for name, keys in blocks.items():
        settings[name].update(copy.deepcopy(keys))
    return settings
