"""Reading the workflow's YAML config: files read with limits, layering files, the schema's defaults,
dotted keys, and the retyping of nested ``--config`` values.

The config as the workflow sees it is what :func:`load_config` returns for the library and the command
line; inside Snakemake, ``validate()`` fills the same defaults and :func:`retype_overrides` undoes what
Snakemake's ``--config`` parsing does to nested values. Every config file is read by :func:`read_yaml`
(the Snakefile reads each ``--configfile`` with it before Snakemake's own parse is used): at most
:data:`MAX_BYTES`, aliases expanding to at most :data:`MAX_ALIAS_NODES` nodes (no "billion laughs"), no
duplicate key at any depth, every error naming the file, line and column; every number finite
(:func:`check_finite`, also run by :meth:`diffmem.plan.plan.Plan.build` on the config Snakemake read).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from diffmem.errors import ConfigError
from diffmem.plan import schema as validate

MAX_BYTES = 1_000_000  # a config file's size (config/paper.yaml: ~30 kB)
MAX_ALIAS_NODES = 10_000  # nodes that aliases add to a document when expanded
_MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *anchor` merges a mapping: not a duplicate key


def read_yaml(path: str | Path) -> dict:
    """The mapping a YAML config file holds, read with limits (see the module); ``{}`` for an empty file.
    Raises ConfigError naming the file (and the line and column of what is wrong), OSError if unreadable."""
    path = Path(path)
    size = path.stat().st_size  # a missing file: OSError, as open() gives
    if size > MAX_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes; a config file is at most {MAX_BYTES:,} bytes")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {raw[e.start : e.start + 1]!r})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys (name:, base:, ...) at the top, got a {type(data).__name__}"
        )
    return data


def parse_yaml(text: str, name: str = "<string>") -> Any:
    """One YAML document (safe types only) with aliases bounded and duplicate keys refused; ConfigError
    names ``name``, the line and the column."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, name)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        raise ConfigError(_where(name, e.problem_mark) + _yaml_problem(e)) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply to be a config") from None
    finally:
        loader.dispose()


def _where(name: str, mark) -> str:
    return f"{name}, line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else f"{name}: "


def _yaml_problem(e) -> str:
    """What yaml says is wrong, with where the construct it was in started (an unclosed bracket)."""
    text = e.problem or "invalid YAML"
    if "'\\t'" in text:
        text += " (YAML indents with spaces, never tabs)"
    cm, pm = e.context_mark, e.problem_mark
    if e.context and cm is not None and (pm is None or (cm.line, cm.column) != (pm.line, pm.column)):
        text += f" ({e.context} at line {cm.line + 1}, column {cm.column + 1})"
    return text


def _check_nodes(root, name: str) -> None:
    """Before anything is built from a composed document: refuse a key given twice in one mapping (YAML
    would keep the last silently) and aliases that expand beyond :data:`MAX_ALIAS_NODES` nodes or into
    themselves. Each node is visited once; a node met again is an alias, counted at its expanded size."""
    import yaml

    size: dict[int, int] = {}  # id(node) -> nodes it expands to
    open_: set[int] = set()  # nodes being walked (an alias to one of them is recursive)
    added = 0  # nodes the aliases add

    def walk(node, key: str) -> int:
        nonlocal added
        at = f"{name}: {key or 'the document'}: an alias to the node at line {node.start_mark.line + 1}, column "
        at += f"{node.start_mark.column + 1}"
        if id(node) in open_:
            raise ConfigError(f"{at} is inside that node (a recursive alias)")
        if id(node) in size:  # an alias (or a merge key) repeats this node
            added += size[id(node)]
            if added > MAX_ALIAS_NODES:
                raise ConfigError(
                    f"{at} takes the nodes that aliases (*name) add to the document past {MAX_ALIAS_NODES:,} "
                    "(a 'billion laughs'); a config writes its values out"
                )
            return size[id(node)]
        open_.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for k, v in node.value:
                if k.tag != _MERGE_TAG and isinstance(k, yaml.ScalarNode):
                    sub = f"{key}.{k.value}" if key else k.value
                    if (k.tag, k.value) in first:
                        raise ConfigError(
                            _where(name, k.start_mark) + f"duplicate key {sub!r} (first at line "
                            f"{first[(k.tag, k.value)] + 1}); YAML would silently keep the last value"
                        )
                    first[(k.tag, k.value)] = k.start_mark.line
                else:
                    sub = key
                total += walk(k, key) + walk(v, sub)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(walk(item, f"{key}[{i}]") for i, item in enumerate(node.value))
        open_.discard(id(node))
        size[id(node)] = total
        return total

    walk(root, "")


def check_finite(node: Any, key: str = "") -> None:
    """Refuse NaN and infinities anywhere in a config (``lr: .nan`` passes every schema range, as NaN
    compares false), naming the dotted key (``experiments.lr.values[2]``)."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{key or 'config'}: {node} is not a finite number; every numeric setting must be finite")
    if isinstance(node, dict):
        for k, v in node.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            check_finite(v, f"{key}[{i}]")


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
    from jsonschema import Draft202012Validator

    cfg: dict = {}
    for path in paths:
        cfg = merge(cfg, read_yaml(path))
    schema = validate.load_schema()
    errors = sorted(Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise ConfigError(f"{'.'.join(map(str, e.path)) or 'config'}: {e.message}")
    check_finite(cfg)
    fill_defaults(cfg, schema)
    return cfg


def retype_overrides(overrides: dict, cfg: dict) -> None:
    """`--config 'base={train: {lr: 0.001}}'`: Snakemake reads a nested VALUE with YAML's BaseLoader,
    which keeps every scalar inside it a string ('0.001'). Read those leaves as --configfile would
    (YAML scalars: numbers, booleans, null), where the merged config still holds the string."""

    def walk(over, cur):
        items = over.items() if isinstance(over, dict) else enumerate(over)
        for key, leaf in items:
            if isinstance(cur, dict) and key not in cur or isinstance(cur, list) and key >= len(cur):
                continue
            if not isinstance(cur, (dict, list)):
                return
            if isinstance(leaf, (dict, list)):
                walk(leaf, cur[key])
            elif isinstance(leaf, str) and cur[key] == leaf and leaf.strip():
                try:
                    cur[key] = parse_yaml(leaf, "--config")
                except ConfigError:
                    pass  # not a YAML scalar: kept as the string, which the schema then judges

    for key, value in overrides.items():
        if isinstance(value, (dict, list)) and key in cfg:
            walk(value, cfg[key])
