"""Ids name what a step computes. Every leaf key of the schema, set to another valid value, moves exactly
the ids that a declared table gives its section (data: data and run; model, diffusion, train: run; sample:
sample; score: score), operational keys and everything outside ``base`` (compute, emm, gpu, results, name,
figures) none, so a key added to the schema is covered without editing this file; a data source is known
by its content, not its path; run.json hashes to its own folder."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from diffmem.plan import config as dmc
from diffmem.plan import identity
from diffmem.plan.identity import canonical_json
from diffmem.plan.load import fill_defaults

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
SCHEMA_DOC = yaml.safe_load(Path(SCHEMA).read_text())


def smoke() -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    validate(cfg, schema=SCHEMA)
    return cfg


def ids(cfg: dict) -> tuple[str, str, str, str]:
    v = dmc.expand(cfg)["basic"][0]
    return v.data_id, v.run_id, v.sample_id, v.score_id


def test_digest_is_stable_and_order_free():
    a = {"x": 1, "y": [1, 2]}
    assert identity.digest(a) == identity.digest({"y": [1, 2], "x": 1})
    assert identity.short_id(a) != identity.short_id({"x": 2, "y": [1, 2]})
    assert len(identity.short_id(a)) == identity.ID_LENGTH


# ------------------------------------------------------------------------ every key of the schema
# The truth the walk below checks, declared once: which ids a change of each section of ``base`` moves. A
# key follows its section unless named here, so a key added to the schema is walked without editing this
# file (and a new section fails test_every_section_of_base_is_declared until it is declared).
IDS = ("data", "run", "sample", "score")
IDS_OF_SECTION = {
    "data": {"data", "run"},  # the subset's images and labels, and so every run trained on it
    "model": {"run"},
    "diffusion": {"run"},
    "train": {"run"},
    "sample": {"sample"},  # sampled again under the same run
    "score": {"score"},  # scored again, the same samples
}
#: Keys of base that change no number (where files lie, how often a state is saved, how many samples go
#: through the net at once): no id moves.
OPERATIONAL = {"data.path", "data.download", "data.verify_md5", "data.blend.path", "data.blend.download",
               "data.blend.verify_md5", "train.checkpoint_every", "sample.batch"}  # fmt: skip
#: Keys added after ids were issued, at the value their absence means: written out, no id moves.
SAME_AS_ABSENT = {"score.ties": "memorized", "train.snapshots.timing": "images"}
#: Values that spell the resolved default another way: the resolved settings, and so the ids, stay.
SAME_SPELLING = [("model.embedding", "positional")]  # the net ddpmpp uses
#: Blocks a config writes only in some settings (a oneOf with a block, or a block without a default), with
#: the settings that make each present: its own keys are walked there, and elsewhere it is one key.
CONTEXTS = {
    "data.blend": {"data.classes": 1, "data.blend": {"source": "fonts", "alpha": 0.5, "class": 0}},
    "data.patches": {"data.source": "patches", "data.patches": {"side": 16, "min_std": 30}, "data.classes": 2},
    "train.snapshots": {"train.snapshots": {"every": {"unit": "images", "value": 100_000}}},
}
#: Other valid values where the schema's types give none (arrays, strings) or an invalid one.
VALUES = {
    "base.data.source": ["fonts", "cifar10", "patches", "folder"],
    "base.data.classes": [5],  # digits has 10
    "base.data.resolution": [16, 4],
    "base.model.resolution": [16],  # a multiple of data.resolution
    "base.model.model_channels": [24],  # a multiple of 4 (GroupNorm)
    "base.model.channel_mult": [[1, 2, 2]],
    "base.model.attn_resolutions": [[4]],
    "base.model.skip": [[1, 0, 1, 1]],  # (blocks + 1) x levels
    "base.train.betas": [[0.8, 0.99]],
    "emm.start": [[10, 100, 1000]],  # from lo to hi
    "compute.device": ["h200"],  # a device kind measured in benchmarks/
}
#: What a value needs beside it to be valid: key -> value -> other keys of base.
COMPANIONS = {
    "base.data.labels": {"random": {"data.label_classes": 3}},
    "base.data.source": {"patches": CONTEXTS["data.patches"], "folder": {"data.path": str(ROOT / "config")}},
}
_ABSENT = object()  # a key the config does not write


def _conditional(node: dict, required: bool = False) -> bool:
    """A block written only in some settings: a oneOf with a block, or a block without a default that its
    parent does not require."""
    return any(b.get("type") == "object" for b in node.get("oneOf", [])) or (
        "properties" in node and "default" not in node and not required
    )


def _block(node: dict) -> dict:
    return next((b for b in node.get("oneOf", []) if b.get("type") == "object"), node)


def _leaves(node: dict, path: str, inside: str, required: bool = False):
    """(dotted key, schema node, conditional) of every leaf at or under ``path``; a conditional block is
    opened only as ``inside`` (a context's block, whose leaves alone are given), else it is one leaf."""
    block, conditional = _block(node), bool(path) and _conditional(node, required)
    if "properties" in block and (not conditional or path == inside):
        for key, sub in block["properties"].items():
            yield from _leaves(sub, f"{path}.{key}" if path else key, inside, key in block.get("required", ()))
    elif (not inside or path == inside or path.startswith(inside + ".")) and "not" not in node:
        yield path, node, conditional  # (a removed key, train.tf32, has no valid value)


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return _ABSENT
        cfg = cfg[part]
    return cfg


def _put(cfg: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        cfg = cfg[part]
    cfg[last] = copy.deepcopy(value)


def _number(node: dict, cur, kind: type):
    """Another number the schema allows: one more (an integer) or twice (a number), else one less or half;
    from null or absent, the smallest allowed integer or a number inside the range."""
    lo, hi = node.get("minimum", node.get("exclusiveMinimum", 0)), node.get("maximum", float("inf"))
    if cur is None or cur is _ABSENT:
        return max(lo, 1) if kind is int else min(hi, 2 * lo or 0.5)
    up = cur + 1 if kind is int else (2 * cur if cur else min(hi, 0.5))
    return up if up <= hi else (cur - 1 if kind is int else cur / 2)


def _alternatives(key: str, node: dict, cur) -> list:
    """Other valid values of one leaf: the declared VALUES, a context's block, every other value of an
    enum, null for a nullable key that is set, the booleans, another string, another number."""
    if key in VALUES:
        out = VALUES[key]
    elif key.removeprefix("base.") in CONTEXTS:
        out = [CONTEXTS[key.removeprefix("base.")][key.removeprefix("base.")]]
    elif "enum" in node:
        out = node["enum"]
    else:
        types = node.get("type") or [b.get("type") for b in node.get("oneOf", [])]
        types = types if isinstance(types, list) else [types]
        out = [None] if "null" in types and cur not in (None, _ABSENT) else []
        out += [True, False] if "boolean" in types else []
        out += ["other"] if "string" in types else []
        if "integer" in types:
            out.append(_number(node, cur if isinstance(cur, int) else None, int))
        elif "number" in types:
            out.append(_number(node, cur if isinstance(cur, (int, float)) else None, float))
        assert out, f"{key}: the schema gives no other valid value; declare one in VALUES"
    return [v for v in out if cur is _ABSENT or v != cur]


@functools.cache
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(SCHEMA_DOC)


@functools.cache
def _default_config() -> str:
    cfg = {"name": "x", "experiments": {"basic": {}}}
    validate(cfg, schema=SCHEMA)  # every default filled in
    return json.dumps(cfg)


def _config(context: str) -> dict:
    """The schema's defaults, with the settings of a context and the defaults inside them."""
    cfg = json.loads(_default_config())
    for k, v in CONTEXTS.get(context, {}).items():
        _put(cfg["base"], k, v)
    fill_defaults(cfg, SCHEMA_DOC)
    return cfg


def _cases():
    """(context, dotted key, value) for every other valid value of every leaf of the schema."""
    schema = {"properties": {k: v for k, v in SCHEMA_DOC["properties"].items() if k not in ("experiments", "figures")}}
    for context in ("", *CONTEXTS):
        cfg = _config(context)
        for key, node, _ in _leaves(schema, "", f"base.{context}" if context else ""):
            for value in _alternatives(key, node, _get(cfg, key)):
                yield pytest.param(context, key, value, id=f"{context or 'default'}:{key}={value!r}")


def _companions(key: str, value) -> dict:
    """What ``key`` set to ``value`` needs beside it (COMPANIONS; a conditional block: its context)."""
    if key.removeprefix("base.") in CONTEXTS:
        return CONTEXTS[key.removeprefix("base.")]
    return COMPANIONS.get(key, {}).get(value, {}) if isinstance(value, str) else {}


def _ids_of(cfg: dict) -> dict:
    v = dmc.expand(cfg)["basic"][0]
    digest = identity.train_digest(dmc.run_settings(v.settings, 10))
    return {"data": v.data_id, "run": (v.run_id, digest), "sample": v.sample_id, "score": v.score_id,
            "settings": v.settings, "emm": v.emm}  # fmt: skip


@pytest.mark.parametrize(("context", "key", "value"), list(_cases()))
def test_every_key_moves_exactly_the_ids_of_its_section(context, key, value):
    """Each key of the schema, set to another valid value: the sections of the resolved settings it changes
    move exactly their declared ids (IDS_OF_SECTION), an operational key or anything outside base none."""
    cfg = _config(context)
    before = _ids_of(cfg)
    _put(cfg, key, value)
    for k, v in _companions(key, value).items():
        _put(cfg["base"], k, v)
    _validator().validate(cfg)  # a valid config: the value, and what it needs beside it
    after = _ids_of(cfg)
    moved = {name for name in IDS if before[name] != after[name]}
    assert (after["run"][0] != before["run"][0]) == (after["run"][1] != before["run"][1])  # digest with id
    name = key.removeprefix("base.")
    changed = {
        s for s in IDS_OF_SECTION if canonical_json(before["settings"][s]) != canonical_json(after["settings"][s])
    }
    if not key.startswith("base."):
        assert not moved, f"{key} is not an identity"
        assert after["emm"] != before["emm"] or not key.startswith("emm."), f"{key} changed no search setting"
        return
    if (name, value) in SAME_SPELLING or SAME_AS_ABSENT.get(name, _ABSENT) == value:
        assert not moved
        return
    assert name.split(".")[0] in changed, f"{key}={value!r} changed no resolved setting of its section"
    want = set() if name in OPERATIONAL else set().union(*(IDS_OF_SECTION[s] for s in changed))
    assert moved == want, f"{key}={value!r} changed the sections {sorted(changed)}"


def test_every_section_of_base_is_declared():
    assert set(SCHEMA_DOC["properties"]["base"]["properties"]) == set(IDS_OF_SECTION)


def test_every_conditional_block_has_a_context_and_every_key_is_walked():
    """A block written only in some settings (data.blend, data.patches, train.snapshots) is walked inside
    its context: a new one fails here until CONTEXTS names it; and the walk reaches each section."""
    base = SCHEMA_DOC["properties"]["base"]
    blocks = [key for key, node, conditional in _leaves(base, "", "") if conditional]
    assert sorted(blocks) == sorted(CONTEXTS)
    keys = {c.values[1] for c in _cases()}
    assert {k.split(".")[1] for k in keys if k.startswith("base.")} == set(IDS_OF_SECTION)
    assert {"base.data.blend.alpha", "base.train.snapshots.timing", "base.data.patches.side", "emm.lo"} <= keys
    assert {"compute.max_runtime", "gpu", "gpus_per_run", "results"} <= keys


def test_a_figure_moves_no_id():
    cfg = _config("")
    before = _ids_of(cfg)
    cfg["figures"] = {"f": {"kind": "sweep", "experiments": ["basic"]}}
    assert {k: _ids_of(cfg)[k] for k in IDS} == {k: before[k] for k in IDS}


def test_run_json_hashes_to_its_own_folder():
    v = dmc.expand(smoke())["basic"][0]
    rec = dmc.run_record(dmc.run_settings(v.settings, 8))
    assert identity.train_id(rec) == v.run_id  # idempotent: the identity of an identity is itself
    assert identity.train_digest(rec) == identity.train_digest(dmc.run_settings(v.settings, 8))
    assert "8 8x8 images of digits" in rec["about"]


def test_every_run_json_hashes_to_its_folder():
    """Unique labels (label_dim = |D|) and snapshot-every specs included: run.json names its own folder."""
    cfg = smoke()
    cfg["base"]["train"]["snapshots"] = {"every": {"unit": "images", "value": 960}}
    for vals in dmc.expand(cfg).values():
        for v in vals:
            rec = identity.canonical(dmc.run_record(dmc.run_settings(v.settings, 8)))
            assert identity.train_id(rec) == v.run_id, (v.experiment, v.label)


def test_folder_source_is_known_by_content_not_path(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "dog").mkdir(parents=True)
        (root / "dog" / "x.png").write_bytes(b"same bytes")
    data = {"source": "folder", "path": str(a), "resolution": 8, "classes": 1, "labels": "none", "seed": 0}
    moved = {**data, "path": str(b)}
    assert identity.data_id({"data": data}) == identity.data_id({"data": moved})
    (b / "dog" / "x.png").write_bytes(b"other bytes")
    assert identity.data_id({"data": data}) != identity.data_id({"data": moved})
    missing = {**data, "path": str(tmp_path / "nowhere")}
    assert identity.data_identity(missing)["fingerprint"].startswith("missing:")


def test_verified_cifar10_is_pinned_by_its_md5(tmp_path):
    data = {"source": "cifar10", "path": "x.tar.gz", "verify_md5": True, "resolution": 32, "classes": 10,
            "labels": "none", "seed": 0}  # fmt: skip
    elsewhere = {**data, "path": "/elsewhere/cifar.tar.gz"}
    assert identity.data_id({"data": data}) == identity.data_id({"data": elsewhere})
    blend = copy.deepcopy(data)
    blend["blend"] = {"source": "folder", "path": str(tmp_path), "alpha": 0.5, "class": 5}
    assert identity.data_id({"data": blend}) != identity.data_id({"data": data})


def test_defaults_inside_a_value_are_filled_so_two_spellings_are_one_run():
    cfg = smoke()
    blend = {"source": "fonts", "alpha": 0.5, "class": 0}
    cfg["experiments"]["blend"] = {
        "set": {"data.classes": 1},
        "factor": "data.blend",
        "values": [blend, {**blend, "rounding": "round"}],  # "round" is the schema's default
        "labels": ["short", "spelled"],
    }
    short, spelled = dmc.expand(cfg)["blend"]
    assert short.settings["data"]["blend"]["rounding"] == "round"
    assert short.run_id == spelled.run_id and short.data_id == spelled.data_id


def test_a_sweep_over_preconditioning_trains_each_in_its_own_folder():
    """VP, VE and EDM runs of one net never share a run folder (nor reuse each other's weights): three run
    ids, three training digests; their subsets, samples and scores settings are one."""
    cfg = smoke()
    cfg["experiments"] = {"precond": {"factor": "diffusion.precond", "values": ["vp", "ve", "edm"]}}
    vals = dmc.expand(cfg)["precond"]
    assert len({v.run_id for v in vals}) == 3
    assert len({identity.train_digest(dmc.run_settings(v.settings, 8)) for v in vals}) == 3
    assert len({(v.data_id, v.sample_id, v.score_id) for v in vals}) == 1


def test_operational_settings_move_no_folder_of_a_whole_config():
    """Every value of the smoke config keeps its four ids when only how jobs run changes: the sample batch,
    the checkpoint interval, GPUs, the site's limits, where results go."""
    cfg = smoke()
    before = {(e, v.label): (v.data_id, v.run_id, v.sample_id, v.score_id) for e, vals in dmc.expand(cfg).items()
              for v in vals}  # fmt: skip
    cfg["base"]["sample"]["batch"] = 7
    cfg["base"]["train"]["checkpoint_every"] = 3
    cfg.update(gpu=True, gpus_per_run=2, results="elsewhere")
    cfg["compute"] = {**cfg["compute"], "max_runtime": 60, "speed": 3.0}
    after = {(e, v.label): (v.data_id, v.run_id, v.sample_id, v.score_id) for e, vals in dmc.expand(cfg).items()
             for v in vals}  # fmt: skip
    assert after == before and len(before) > 10
