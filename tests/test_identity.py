"""Ids name what a step computes: operational keys change none, each stage's keys change its own id and
the ids below it only, and a data source is known by its content, not its path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from diffmem.plan import config as dmc
from diffmem.plan import identity

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


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


@pytest.mark.parametrize(
    ("key", "value", "changed"),
    [
        ("train.checkpoint_every", 7, ()),
        ("sample.batch", 3, ()),
        ("data.verify_md5", False, ()),  # digits: nothing to verify
        ("data.download", True, ()),
        ("score.threshold", 0.25, ("score",)),
        ("sample.n", 128, ("sample",)),
        ("sample.num_steps", 9, ("sample",)),
        ("train.lr", 0.002, ("run",)),
        ("model.model_channels", 12, ("run",)),
        ("data.seed", 5, ("data", "run")),
    ],
)
def test_each_key_changes_only_its_own_ids(key, value, changed):
    cfg = smoke()
    before = dict(zip(("data", "run", "sample", "score"), ids(cfg), strict=True))
    dmc.set_key(cfg["base"], key, value)
    after = dict(zip(("data", "run", "sample", "score"), ids(cfg), strict=True))
    assert {k for k in before if before[k] != after[k]} == set(changed)


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
