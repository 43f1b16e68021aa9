"""Every default is declared once, in the workflow's config schema: the library's own defaults (for callers
of the Python API) must say the same, or be a documented 'not set' sentinel."""

from __future__ import annotations

import inspect

import pytest

from diffmem import data
from diffmem.plan import schema as validate
from diffmem.science import emm

SCHEMA = validate.load_schema()["properties"]


def schema_default(*path: str):
    node = SCHEMA
    for i, key in enumerate(path):
        node = node[key] if i == 0 else node["properties"][key]
    return node["default"]


# data keys whose library default means "not set" (the source's own resolution, all classes, no size)
DATA_SENTINELS = {"resolution", "classes", "size", "patches"}


@pytest.mark.parametrize("key", sorted(set(data.SPEC_DEFAULTS) - DATA_SENTINELS))
def test_data_spec_defaults_are_the_schemas(key):
    assert data.SPEC_DEFAULTS[key] == schema_default("base", "data", key), key


def test_data_sentinels_are_none():
    assert all(data.SPEC_DEFAULTS[k] is None for k in DATA_SENTINELS & set(data.SPEC_DEFAULTS))


@pytest.mark.parametrize("key", ["threshold", "tolerance", "per_round"])
def test_emm_step_defaults_are_the_schemas(key):
    default = inspect.signature(emm.emm_step).parameters[key].default
    assert default == schema_default("emm", key), key
