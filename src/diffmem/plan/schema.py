"""Per-value config validation against the workflow's own JSON schema.

Snakemake validates the config file once (``workflow/schemas/config.schema.yaml``), but an experiment's
``set:`` overrides, its factor ``values:`` and its ``emm:`` overrides are free-form there. This module
checks what each experiment value actually resolves to, against the *same* schema (its ``base`` part for
the settings, its ``emm`` part for the merged search settings), so the schema is the one place that says
which keys exist and which types and ranges they take. Errors are :class:`diffmem.errors.ConfigError`
naming ``experiments.<name>...`` and what was expected, raised while the DAG is built, before any job.

Names that become folders (experiment, figure, value label) must match the schema's ``safe_name``
pattern (no ``/``, no ``.``/``..``, no leading dot), so nothing is written outside ``results/<name>/``.

Imports only the standard library, yaml and jsonschema (DAG building stays free of torch and numpy).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from diffmem import CHECKOUT
from diffmem.errors import ConfigError

#: Where the schema lives in the checkout (the package is installed editable, see envs/diffmem.yaml).
SCHEMA_RELPATH = Path("workflow") / "schemas" / "config.schema.yaml"


def _config_error(msg: str) -> Exception:
    return ConfigError(msg)


def schema_path() -> Path:
    """The workflow's config schema: beside this package in the checkout, or under ``$DIFFMEM_ROOT``."""
    candidates = [CHECKOUT / SCHEMA_RELPATH]
    if os.environ.get("DIFFMEM_ROOT"):
        candidates.insert(0, Path(os.environ["DIFFMEM_ROOT"]) / SCHEMA_RELPATH)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"config schema not found (looked at {', '.join(map(str, candidates))}); install diffmem editable from "
        "its checkout (pip install -e .) or set DIFFMEM_ROOT to the checkout"
    )


@functools.lru_cache(maxsize=4)
def _load_schema(path: str) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def load_schema() -> dict:
    return _load_schema(str(schema_path()))


@functools.lru_cache(maxsize=8)
def _validator(part: str):
    from jsonschema import Draft202012Validator

    schema = load_schema()
    sub = schema["properties"][part] if part else schema
    # keep the root's $defs reachable from a sub-schema
    if part and "$defs" in schema:
        sub = {**sub, "$defs": schema["$defs"]}
    return Draft202012Validator(sub)


def safe_name_pattern(kind: str = "safe_name") -> str:
    """The pattern of names that become folders, from the schema's ``$defs``: ``safe_name`` (experiment
    and figure names) or ``safe_label`` (value labels, after :func:`diffmem.plan.config.slug`)."""
    return load_schema()["$defs"][kind]["pattern"]


def check_safe_name(name: Any, where: str, kind: str = "safe_name") -> None:
    """Refuse a name that would not stay one folder below its parent (``..``, ``a/b``, ``.x``, empty)."""
    schema = load_schema()["$defs"][kind]
    if not isinstance(name, str) or not re.fullmatch(schema["pattern"], name):
        raise _config_error(
            f"{where}: {name!r} is not a safe folder name; expected {schema['description']} "
            f"(pattern {schema['pattern']})"
        )


def _dotted(path) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


def _expected(schema: dict) -> str:
    """What a schema node accepts, in words (type, enum, range, description)."""
    if not isinstance(schema, dict):
        return ""
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(repr(x) for x in schema["enum"]))
    elif "type" in schema:
        t = schema["type"]
        parts.append(" or ".join(t) if isinstance(t, list) else t)
    for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in schema:
            parts.append(f"{op} {schema[key]}")
    if "properties" in schema and schema.get("additionalProperties") is False:
        parts.append("with keys " + ", ".join(schema["properties"]))
    text = " ".join(parts)
    if schema.get("description"):
        text += (" " if text else "") + f"({schema['description'].strip()})"
    return text


def _explain(error) -> tuple[str, str]:
    """(dotted key, message) of one jsonschema error, descending into oneOf/anyOf to the useful branch."""
    from jsonschema.exceptions import best_match

    top = error
    if error.validator in ("oneOf", "anyOf") and error.context:
        # prefer the branch of the value's own type (an object for an object, ...), then its deepest error
        same_type = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        error = best_match(same_type or error.context, key=lambda e: -len(e.absolute_path))
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties") or {})
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        key = _dotted(path + extra[:1])
        return key, (
            f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}; "
            f"known keys there: {', '.join(known)}"
        )
    if error.validator == "required":
        return _dotted(path), f"{error.message}; expected {_expected(error.schema)}"
    msg = error.message
    expected = _expected(top.schema if top is not error else error.schema)
    return _dotted(path), msg + (f"; expected {expected}" if expected else "")


def _origin(key: str, overrides: list[tuple[str, str]]) -> str | None:
    """Which override (dotted key, where it was written) a failing key comes from: the longest override
    key that is the failing key or a block above it, or a key below it (a whole block replaced)."""
    best = None
    for okey, where in overrides:
        if key == okey or key.startswith(okey + ".") or key.startswith(okey + "[") or okey.startswith(key + "."):
            if best is None or len(okey) > len(best[0]):
                best = (okey, where)
    return best[1] if best else None


def _sub_schema(dotted: str) -> dict | None:
    """The ``base`` schema of a dotted key (the object branch of a oneOf), or None if it has none."""
    node = load_schema()["properties"]["base"]
    for part in dotted.split("."):
        node = (node.get("properties") or {}).get(part)
        if node is None:
            return None
        objects = [b for b in node.get("oneOf", []) if b.get("type") == "object"]
        node = objects[0] if objects else node
    return node


def _missing_required(value: Any, schema: dict | None, key: str) -> list[str]:
    """Keys a mapping must give itself (``required`` in the schema), recursively: a mapping merges into
    the block it names, so ``{unit: epochs}`` over ``{unit: steps, value: 300}`` would silently keep 300."""
    if not isinstance(value, dict) or not schema:
        return []
    out = [f"{key}.{r}" for r in schema.get("required", []) if r not in value]
    for k, v in value.items():
        sub = (schema.get("properties") or {}).get(k)
        if sub is not None:
            objects = [b for b in sub.get("oneOf", []) if b.get("type") == "object"]
            out += _missing_required(v, objects[0] if objects else sub, f"{key}.{k}")
    return out


def check_settings(settings: dict, where: str, overrides: list[tuple] = ()) -> None:
    """Validate one experiment value's assembled settings (base + set + factor value, before the derived
    keys are filled in) against the schema's ``base`` block.

    ``overrides`` lists (dotted key, text naming where it was written, e.g. ``experiments.x.set``, and
    optionally the value written there) so the error names the line of the config to fix. A mapping
    written there must itself give the keys the schema requires of that block (it is merged, not
    substituted). Raises ConfigError with every problem found.
    """
    lines = []
    for okey, owhere, *value in overrides:
        for missing in _missing_required(value[0] if value else None, _sub_schema(okey), okey):
            lines.append(
                f"{owhere}: {missing} is missing; a mapping over {okey} must give every required key "
                f"(expected {_expected(_sub_schema(okey))})"
            )
    errors = sorted(_validator("base").iter_errors(settings), key=lambda e: list(map(str, e.absolute_path)))
    pairs = [o[:2] for o in overrides]
    for e in errors:
        key, msg = _explain(e)
        origin = _origin(key, pairs)
        lines.append(f"{origin}: {key}: {msg}" if origin else f"{where}: base.{key}: {msg}")
    if lines:
        raise _config_error("\n  ".join(lines))


def check_emm(emm: dict, where: str) -> None:
    """Validate a merged ``emm`` block (the config's ``emm`` with an experiment's ``emm:`` on top)."""
    errors = list(_validator("emm").iter_errors(emm))
    if not errors:
        _check_emm_start(emm, where)
        return
    lines = []
    for e in errors:
        key, msg = _explain(e)
        lines.append(f"{where}.emm.{key}: {msg}" if key else f"{where}.emm: {msg}")
    raise _config_error("\n  ".join(lines))


def _check_emm_start(emm: dict, where: str) -> None:
    """``emm.start`` (a fixed grid the search measures first) holds the bracket's ends and nothing outside it."""
    if emm.get("start") is None:
        return
    start, lo, hi = sorted(set(emm["start"])), emm["lo"], emm["hi"]
    if start[0] != lo or start[-1] != hi:
        raise _config_error(
            f"{where}.emm.start: must run from emm.lo={lo} to emm.hi={hi} (its smallest and largest sizes are the "
            f"bracket's ends), got {start}"
        )
