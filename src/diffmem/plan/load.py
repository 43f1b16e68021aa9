"""Reading the workflow's YAML config: layering files, the schema's defaults, dotted keys, and the
retyping of nested ``--config`` values.

The config as the workflow sees it is what :func:`load_config` returns for the library and the command
line; inside Snakemake, ``validate()`` fills the same defaults and :func:`retype_overrides` undoes what
Snakemake's ``--config`` parsing does to nested values.
"""

from __future__ import annotations

import copy
from typing import Any

from diffmem.errors import ConfigError
from diffmem.plan import schema as validate


def set_key(d: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dict ``d``; the key must already exist (typos are errors)."""
    parts = dotted.split(".")
    cur = d
    for part in parts[:-1]:
        if not isinstance(cur, dict) or part not in cur:
            raise ConfigError(f"unknown config key {dotted!r} (no {part!r} there)")
        cur = cur[part]
    if not isinstance(cur, dict) or parts[-1] not in cur:
        known = ", ".join(sorted(cur)) if isinstance(cur, dict) else "-"
        raise ConfigError(f"unknown config key {dotted!r}; known keys there: {known}")
    if isinstance(value, dict) and isinstance(cur[parts[-1]], dict):
        # a mapping over a block changes only the keys it gives (set: {train: {lr: 0.1}} keeps the rest
        # of train); unknown keys it brings are refused by diffmem.plan.schema
        cur[parts[-1]] = merge(cur[parts[-1]], value)
    else:
        cur[parts[-1]] = copy.deepcopy(value)


def merge(block: dict, over: dict) -> dict:
    """``block`` with ``over`` merged in, recursively (a copy; mappings merge, anything else replaces)."""
    out = copy.deepcopy(block)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def fill_defaults(node: Any, schema: dict) -> None:
    """Set the schema's defaults of missing keys, recursively (as Snakemake's validate does), also inside
    a mapping that a ``oneOf`` allows (e.g. ``data.blend``: null or a block)."""
    if not isinstance(node, dict):
        return
    if schema.get("type") != "object":
        for branch in schema.get("oneOf") or schema.get("anyOf") or []:
            if branch.get("type") == "object":
                fill_defaults(node, branch)
        return
    for key, sub in (schema.get("properties") or {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            fill_defaults(node[key], sub)


def load_config(paths: list[str]) -> dict:
    """A config as the workflow sees it: YAML files layered in order (later keys win, blocks merge),
    validated against the workflow's schema with its defaults filled in."""
    import yaml
    from jsonschema import Draft202012Validator

    cfg: dict = {}
    for path in paths:
        with open(path) as fh:
            cfg = merge(cfg, yaml.safe_load(fh) or {})
    schema = validate.load_schema()
    errors = sorted(Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise ConfigError(f"{'.'.join(map(str, e.path)) or 'config'}: {e.message}")
    fill_defaults(cfg, schema)
    return cfg


def retype_overrides(overrides: dict, cfg: dict) -> None:
    """`--config 'base={train: {lr: 0.001}}'`: Snakemake reads a nested VALUE with YAML's BaseLoader,
    which keeps every scalar inside it a string ('0.001'). Read those leaves as --configfile would
    (YAML scalars: numbers, booleans, null), where the merged config still holds the string."""
    import yaml

    def walk(over, cur):
        items = over.items() if isinstance(over, dict) else enumerate(over)
        for key, leaf in items:
            if isinstance(cur, dict) and key not in cur or isinstance(cur, list) and key >= len(cur):
                continue
            if not isinstance(cur, (dict, list)):
                return
            if isinstance(leaf, (dict, list)):
                walk(leaf, cur[key])
            elif isinstance(leaf, str) and cur[key] == leaf:
                try:
                    cur[key] = yaml.safe_load(leaf) if leaf.strip() else leaf
                except yaml.YAMLError:
                    pass

    for key, value in overrides.items():
        if isinstance(value, (dict, list)) and key in cfg:
            walk(value, cfg[key])
