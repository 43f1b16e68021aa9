"""config/README.md documents the config schema: every key, and no key the schema does not have."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
README = ROOT / "config" / "README.md"
# blocks whose keys the README lists relative to a named entry (experiments.<name>, figures.<name>)
PER_ENTRY = ("experiments", "figures")


def schema_keys() -> set[str]:
    """Dotted paths of every key the schema defines, inside ``oneOf``/``anyOf`` variants too (entries of
    experiments/figures by their own name)."""
    out: set[str] = set()

    def walk(node: dict, prefix: str) -> None:
        for variant in [node, *node.get("oneOf", []), *node.get("anyOf", [])]:  # snapshots: int or {every, ...}
            for key, sub in (variant.get("properties") or {}).items():
                path = f"{prefix}{key}"
                out.add(path)
                if isinstance(sub, dict):
                    walk(sub, path + ".")

    schema = yaml.safe_load(SCHEMA.read_text())
    walk({"properties": {k: v for k, v in schema["properties"].items() if k not in PER_ENTRY}}, "")
    for block in PER_ENTRY:
        out.add(block)
        walk(schema["properties"][block]["additionalProperties"], "")
    return out


def readme_keys() -> set[str]:
    """Keys named in the first column of the README's tables."""
    return set(re.findall(r"^\| `([A-Za-z_][\w.]*)` \|", README.read_text(), re.M))


def test_readme_names_every_schema_key():
    """Every key, or the compound key it belongs to (train.duration covers its unit and value)."""
    blocks = {"base", "base.data", "base.model", "base.diffusion", "base.train", "base.sample", "base.score"}
    named = readme_keys()

    def covered(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[:i]) in named for i in range(1, len(parts) + 1))

    missing = sorted(k for k in schema_keys() - blocks if not covered(k))
    assert not missing, f"config/README.md: document {missing}"


def test_readme_names_no_unknown_key():
    unknown = sorted(readme_keys() - schema_keys())
    assert not unknown, f"config/README.md names keys the schema does not have: {unknown}"


def test_readme_defaults_match_the_schema():
    """The default column of every scalar key agrees with the schema's default."""
    schema = yaml.safe_load(SCHEMA.read_text())
    rows = re.findall(r"^\| `([\w.]+)` \| `([^`|]*)` \|", README.read_text(), re.M)
    checked = 0
    for key, shown in rows:
        node = schema
        for part in key.split("."):
            node = (node.get("properties") or {}).get(part)
            if node is None:
                break
        if node is None or "default" not in node or isinstance(node["default"], (dict, list)):
            continue
        value = yaml.safe_load(shown)
        assert value == node["default"] or (key.endswith("threshold") and shown == "1/3"), (
            f"config/README.md: {key} default {shown!r}, schema {node['default']!r}"
        )
        checked += 1
    assert checked >= 30, f"only {checked} defaults compared: did the table format change?"
