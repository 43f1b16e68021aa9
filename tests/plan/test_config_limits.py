"""Hostile but realistic configs are refused before any job, quickly, naming the file (line, column) or the
key, the number it implies and the limit (issue 21): YAML read with limits (diffmem.plan.load.read_yaml),
every number finite, distinct sweep values and labels (diffmem.plan.expand), and the cost of every job within
what a job can get (diffmem.plan.bounds)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from diffmem.errors import ConfigError
from diffmem.plan import bounds
from diffmem.plan import config as dmc
from diffmem.plan.load import MAX_ALIAS_NODES, MAX_BYTES, load_config, read_yaml
from diffmem.plan.plan import Plan

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "config").glob("*.yaml"))
SMOKE = (ROOT / "config" / "smoke.yaml").read_text()


def laughs(levels: int = 9) -> str:
    """A 'billion laughs': 9 levels of 9 aliases each expand to 9^10 (3.5e9) strings."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def smoke_with(tmp_path: Path, old: str, new: str) -> Path:
    """config/smoke.yaml with one piece of text replaced (the file a user would write)."""
    assert SMOKE.count(old) == 1, old
    return write(tmp_path, SMOKE.replace(old, new))


def refused(path: Path) -> str:
    """The ConfigError a config file gets before any job: reading it, or building its plan."""
    with pytest.raises(ConfigError) as err:
        Plan.build(load_config([str(path)]), check_files=False)
    return str(err.value)


# ------------------------------------------------------------------------------------------------ YAML
def test_billion_laughs_is_refused_in_well_under_a_second(tmp_path):
    path = write(tmp_path, laughs())
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config([str(path)])
    took = time.perf_counter() - start
    msg = str(err.value)
    assert took < 0.5, f"{took:.2f} s"
    assert msg.startswith(f"{path}: a4[0]: an alias to the node at line 4, column 5 ")
    assert "billion laughs" in msg and f"{MAX_ALIAS_NODES:,}" in msg and len(msg) < 300


def test_recursive_alias_is_refused(tmp_path):
    msg = str(pytest.raises(ConfigError, read_yaml, write(tmp_path, "a: &x [1, *x]\n")).value)
    assert "a[1]: an alias to the node at line 1, column 4 is inside that node (a recursive alias)" in msg


def test_a_few_anchors_and_merge_keys_read_as_yaml_reads_them(tmp_path):
    text = "b: &b {x: 1, y: 2}\nc: {<<: *b, x: 3}\nd: &d {<<: *b, z: 1}\ne: {<<: *d, w: 1}\nf: [*b, *b]\n"
    assert read_yaml(write(tmp_path, text)) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("name: x\nexperiments:\n\tbasic: {}\n", "line 3, column 1", "never tabs"),
        ("name: x\nexperiments: {basic: [1, 2}\n", "line 2, column 27", "flow sequence at line 2, column 22"),
        ("name: x\n---\nname: y\n", "line 2, column 1", "expected a single document"),
    ],
    ids=["tab", "unclosed_bracket", "two_documents"],
)
def test_invalid_yaml_names_file_line_and_column(tmp_path, text, where, what):
    path = write(tmp_path, text)
    msg = str(pytest.raises(ConfigError, load_config, [str(path)]).value)
    assert msg.startswith(f"{path}, {where}: ") and what in msg


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("name: a\nexperiments: {basic: {}}\nname: b\n", "name", 3, 1),
        ("name: x\nbase:\n  train:\n    lr: 0.1\n    batch: 3\n    lr: 0.2\n", "base.train.lr", 6, 4),
        ("experiments:\n  e:\n    set: {train.lr: 0.1, train.lr: 0.2}\n", "experiments.e.set.train.lr", 3, 3),
        ("a:\n  - {x: 1}\n  - {y: 1, y: 2}\n", "a[1].y", 3, 3),
    ],
    ids=["top", "deep", "flow", "in_a_list"],
)
def test_duplicate_key_is_refused_naming_it(tmp_path, text, key, line, first):
    path = write(tmp_path, text)
    msg = str(pytest.raises(ConfigError, read_yaml, path).value)
    assert msg.startswith(f"{path}, line {line}, column ")
    assert f"duplicate key {key!r} (first at line {first})" in msg


def test_file_size_and_top_level_are_bounded(tmp_path):
    big = write(tmp_path, "name: x\n" + "# filler\n" * (MAX_BYTES // 9 + 1))
    assert f"{big.stat().st_size:,} bytes; a config file is at most {MAX_BYTES:,} bytes" in str(
        pytest.raises(ConfigError, read_yaml, big).value
    )
    assert "expected a mapping" in str(pytest.raises(ConfigError, read_yaml, write(tmp_path, "- 1\n- 2\n")).value)
    assert read_yaml(write(tmp_path, "# nothing\n")) == {}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_reads_as_yaml_reads_it_and_passes(path):
    assert read_yaml(path) == (yaml.safe_load(path.read_text()) or {})
    start = time.perf_counter()
    Plan.build(load_config([str(path)]), check_files=False)
    assert time.perf_counter() - start < 10


# --------------------------------------------------------------------------------------- sweep values
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("values: [0.0, 0.1]", "values: [0.0, 0.0]", "experiments.weight_decay: values[0] and values[1] are both 0.0"),
        (
            "values: [8, 12]",
            "values: [8, 8.0]",
            "experiments.width: values[0] 8 and values[1] 8.0 both give the label '8' (a folder name)",
        ),
        (
            "labels: [unconditional, random C=5, unique]",
            "labels: [unconditional, random C=5, random C_5]",
            "experiments.conditioning: labels[1] 'random C=5' and labels[2] 'random C_5' both give the label "
            "'random_C_5'",
        ),
        (
            "values: [[none, null], [random, 5], [unique, null]]",
            "values: [[none, null], [random, 5], [random, 5]]",
            "experiments.conditioning: values[1] and values[2] are both ['random', 5]",
        ),
    ],
    ids=["same_value", "same_label_after_slug", "labels_collide_after_slug", "tied_values"],
)
def test_duplicate_sweep_values_and_labels_are_refused(tmp_path, old, new, message):
    assert message in refused(smoke_with(tmp_path, old, new))


# ------------------------------------------------------------------------------------------- finite
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("lr: 0.005", "lr: .nan", "base.train.lr: nan is not a finite number"),
        (
            "duration: {unit: steps, value: 100}",
            "duration: {unit: steps, value: .inf}",
            "base.train.duration.value: inf",
        ),
        ("values: [0.0, 0.1]", "values: [0.0, -.inf]", "experiments.weight_decay.values[1]: -inf is not a finite"),
        ("threshold: 0.9", "threshold: .nan", "emm.threshold: nan"),
    ],
    ids=["nan_lr", "inf_duration", "inf_value", "nan_emm"],
)
def test_nan_and_inf_are_refused_naming_the_key(tmp_path, old, new, message):
    assert message in refused(smoke_with(tmp_path, old, new))


def test_nan_is_refused_on_the_config_snakemake_read(tmp_path):
    """Inside Snakemake the config does not come through load_config: Plan.build checks it itself."""
    cfg = load_config([str(ROOT / "config" / "smoke.yaml")])
    cfg["base"]["sample"]["sigma_max"] = float("inf")
    with pytest.raises(ConfigError, match=r"^base\.sample\.sigma_max: inf is not a finite number"):
        Plan.build(cfg, check_files=False)


# ------------------------------------------------------------------------------------------- bounds
WHERE = "experiments.basic value 'base' at |D|=16 (emm.hi): "


def test_a_trillion_samples_are_refused_naming_the_memory(tmp_path):
    msg = refused(smoke_with(tmp_path, "sample: {n: 64,", "sample: {n: 1.0e+12,"))
    # ~1300 MB + (2 x 1 snapshot x 1e12 + 3 x 16) x 64 pixels / 1e6 = 128,001,301 MB (resources.sample_mem_mb)
    assert msg == (
        WHERE + "sample.n=1e+12 x 1 snapshot(s) of 1x8x8 need 128,001 GB of host memory in a sample job; "
        "limit compute.max_mem_gb=512 GB"
    )


def test_a_billion_images_per_batch_are_refused(tmp_path):
    path = smoke_with(tmp_path, "batch: 32", "batch: 1.0e+9")
    msg = refused(path)  # 8x8 digits: 256 GB per batch fits, but the batch's activations on the CPU do not
    assert msg == WHERE + (  # 1e9 x 138,668 bytes saved per image (benchmarks/memory/activations.json)
        "a training job needs 138,669 GB of host memory (|D| images of 1x8x8 and, on the cpu, the activations of "
        "train.batch=1,000,000,000); limit compute.max_mem_gb=512 GB"
    )
    path.write_text(path.read_text().replace("resolution: 8,", "resolution: 32,"))
    assert refused(path) == (  # 1e9 x 1 x 32 x 32 x 4 bytes
        WHERE + "train.batch=1,000,000,000 images of 1x32x32 are 4,096 GB in float32; limit compute.max_mem_gb=512 GB"
    )


def test_a_training_of_1e20_steps_is_refused(tmp_path):
    msg = refused(
        smoke_with(tmp_path, "duration: {unit: steps, value: 100}", "duration: {unit: steps, value: 1.0e+20}")
    )
    assert msg.startswith(WHERE + "training 3.2e+21 images (train.duration 1e+20 steps x train.batch=32) takes about ")
    assert "jobs of compute.max_runtime=4320 min; limit compute.max_chain=100 jobs" in msg


def test_a_billion_snapshots_are_refused_without_listing_them(tmp_path):
    start = time.perf_counter()
    msg = refused(smoke_with(tmp_path, "snapshots: 1\n", "snapshots: 1000000000\n"))
    assert time.perf_counter() - start < 5
    assert msg == WHERE + (
        "train.snapshots=1000000000 gives about 1e+09 snapshots in 100 steps; limit 10,000 per run "
        "(diffmem.plan.bounds.MAX_SNAPSHOTS)"
    )


def test_the_limits_are_the_sites(tmp_path):
    """compute.max_mem_gb and compute.max_chain are the config's: config/rehearsal.yaml chains 3 jobs of
    1 minute, and every job asks for 1.3 GB."""
    cfg = load_config([str(ROOT / "config" / "rehearsal.yaml")])
    assert cfg["compute"]["max_mem_gb"] == 512 and cfg["compute"]["max_chain"] == 100  # the schema's defaults
    Plan.build(cfg, check_files=False)
    cfg["compute"]["max_chain"] = 2
    with pytest.raises(ConfigError, match=r"3 jobs of compute\.max_runtime=1 min; limit compute\.max_chain=2 jobs$"):
        Plan.build(cfg, check_files=False)
    cfg["compute"]["max_mem_gb"] = 1
    with pytest.raises(ConfigError, match=r"needs 1\.3 GB of host memory .*; limit compute\.max_mem_gb=1\.0 GB$"):
        Plan.build(cfg, check_files=False)


def test_paper_fits_the_default_limits():
    """config/paper.yaml's widest net (model_channels 320 at |D| = emm.hi) needs 50 jobs of 3 days."""
    cfg = load_config([str(ROOT / "config" / "paper.yaml")])
    cfg["compute"]["max_chain"] = 49
    with pytest.raises(ConfigError, match=r"^experiments\.width value '320' .* 50 jobs of compute\.max_runtime=4320"):
        bounds.check_bounds(cfg, dmc.expand(cfg))


# ---------------------------------------------------------------------------------------- Snakemake
def test_snakemake_refuses_a_billion_laughs_before_any_check_walks_it(tmp_path):
    """Snakemake parses --configfile itself (aliases stay shared, so that is quick); the Snakefile then reads
    it with limits before the schema's validation would print it (minutes, megabytes)."""
    path = write(tmp_path, laughs())
    snakemake = Path(sys.executable).with_name("snakemake")
    start = time.perf_counter()
    proc = subprocess.run(
        [str(snakemake), "-n", "--cores", "1", "--configfile", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and time.perf_counter() - start < 60 and len(out) < 2000, out
    assert f"config error: {path}: a4[0]: an alias to the node at line 4, column 5" in out
