"""Every default is declared once, in the workflow's config schema: the library's own defaults (for callers
of the Python API) must say the same, or be a documented 'not set' sentinel."""

from __future__ import annotations

import inspect

import pytest
import yaml

from diffmem import data
from diffmem.plan import config
from diffmem.plan import schema as validate
from diffmem.science import emm, netconfig

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


# --- the net: the library's NET_DEFAULTS are the workflow's default net --------------------------------------

MODEL_SCHEMA = SCHEMA["base"]["properties"]["model"]["properties"]
# schema model keys whose default means "follow the data" (model.resolution null = data.resolution)
MODEL_SENTINELS = {"resolution"}


@pytest.fixture(scope="module")
def workflow_models(tmp_path_factory):
    """The workflow's resolved net, per arch, for a config that sets nothing else."""
    out = {}
    for arch in netconfig.ARCH_DEFAULTS:
        path = tmp_path_factory.mktemp(arch) / "config.yaml"
        path.write_text(yaml.safe_dump({"name": "t", "base": {"model": {"arch": arch}}, "experiments": {"e": {}}}))
        out[arch] = config.resolve_settings(config.load_config([str(path)])["base"])["model"]
    return out


@pytest.mark.parametrize("arch", sorted(netconfig.ARCH_DEFAULTS))
@pytest.mark.parametrize("key", sorted(netconfig.NET_DEFAULTS))
def test_net_defaults_are_the_workflows_default_net(workflow_models, key, arch):
    """Every key a net has: what the library fills in where a key is left out equals the workflow's default."""
    assert netconfig.resolve_net_config({"arch": arch})[key] == workflow_models[arch][key], key


@pytest.mark.parametrize("key", sorted(MODEL_SCHEMA))
def test_schema_model_defaults_are_net_defaults(key):
    """Every model key of the schema is a net key with the same default, or a documented sentinel."""
    assert key in netconfig.NET_DEFAULTS, key
    if key in MODEL_SENTINELS:
        assert schema_default("base", "model", key) is None
    else:
        assert schema_default("base", "model", key) == netconfig.NET_DEFAULTS[key], key
