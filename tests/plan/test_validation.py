"""Every experiment value's resolved settings and merged emm block are checked against the workflow's schema
before any job, with errors naming ``experiments.<name>...``; names that become folders are safe."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate
from snakemake_interface_common.exceptions import WorkflowError

from diffmem.plan import config as dmc

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def with_experiment(exp: dict, name: str = "bad", figures: dict | None = None) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["experiments"] = {name: exp}
    cfg["figures"] = figures or {}
    validate(cfg, schema=SCHEMA)  # the file-level schema passes: only the per-value check can catch these
    return cfg


# (experiment, what the error must name); each of these failed only inside a job, or was silently used
BAD = {
    "factor_value_range": ({"factor": "sample.n", "values": [0]}, r"experiments\.bad\.values\[0\].*sample\.n"),
    "set_type": ({"set": {"train.lr": "abc"}}, r"experiments\.bad\.set\.train\.lr.*number"),
    "factor_negative_lr": ({"factor": "train.lr", "values": [-1.0]}, r"experiments\.bad\.values\[0\].*train\.lr"),
    "set_batch_zero": ({"set": {"train.batch": 0}}, r"experiments\.bad\.set\.train\.batch.*minimum of 1"),
    "set_nested_unknown": ({"set": {"train": {"lrr": 0.1}}}, r"experiments\.bad\.set\.train.*unknown key 'lrr'"),
    "set_nested_snapshots": (
        {"set": {"train.snapshots": {"every": {"unit": "weeks", "value": 1}}}},
        r"experiments\.bad\.set\.train\.snapshots.*'weeks'",
    ),
    "tied_factor": (
        {"factor": ["train.batch", "train.lr"], "values": [[128, 0.1], [0, 0.1]]},
        r"experiments\.bad\.values\[1\] \(factor train\.batch\).*train\.batch",
    ),
    "factor_enum": ({"factor": "diffusion.precond", "values": ["vpp"]}, r"values\[0\].*diffusion\.precond.*vp"),
    "emm_unknown": ({"emm": {"hii": 5}}, r"experiments\.bad\.emm\.hii.*unknown key 'hii'"),
    "emm_tolerance_zero": ({"emm": {"tolerance": 0}}, r"experiments\.bad\.emm\.tolerance"),
    "emm_lo_string": ({"emm": {"lo": "2"}}, r"experiments\.bad\.emm\.lo.*integer"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_value_is_refused_naming_the_key(case):
    exp, pattern = BAD[case]
    cfg = with_experiment(exp)
    with pytest.raises(dmc.ConfigError, match=pattern):
        dmc.expand(cfg)


def test_labels_name_the_value():
    cfg = with_experiment({"factor": "train.lr", "values": [0.1, -2.0], "labels": ["fine", "negative"]})
    with pytest.raises(dmc.ConfigError, match=r"values\[1\] \(factor train\.lr, label 'negative'\)"):
        dmc.expand(cfg)


def test_nested_set_merges_into_the_block():
    """set: {train: {lr: 0.1}} changes lr only (it used to replace the whole train block)."""
    cfg = with_experiment({"set": {"train": {"lr": 0.1}, "train.ema": {"decay": 0.5}}})
    s = dmc.expand(cfg)["bad"][0].settings
    base = cfg["base"]["train"]
    assert s["train"]["lr"] == 0.1
    assert s["train"]["snapshots"] == base["snapshots"] and s["train"]["batch"] == base["batch"]
    assert s["train"]["ema"] == {**base["ema"], "decay": 0.5}


def test_good_values_pass_and_defaults_of_emm_are_kept():
    cfg = with_experiment({"factor": "train.lr", "values": [1e-3, 2e-3], "emm": {"lo": 4}})
    vals = dmc.expand(cfg)["bad"]
    assert [v.settings["train"]["lr"] for v in vals] == [1e-3, 2e-3]
    assert vals[0].emm["lo"] == 4 and vals[0].emm["hi"] == cfg["emm"]["hi"]


@pytest.mark.parametrize("name", ["..", ".", "a/b", ".hidden", ""])
def test_unsafe_experiment_names_are_refused(name):
    cfg = with_experiment({})  # the schema refuses them (propertyNames) ...
    cfg["experiments"] = {name: {}}
    with pytest.raises(WorkflowError, match=f"{re.escape(repr(name))} does not match"):
        validate(cfg, schema=SCHEMA)
    with pytest.raises(dmc.ConfigError, match=r"experiments: .* not a safe folder name"):  # ... and so does expand
        dmc.expand(cfg)


@pytest.mark.parametrize("name", ["..", "a/b", ".x"])
def test_unsafe_figure_names_are_refused(name):
    cfg = with_experiment({}, name="ok")
    cfg["figures"] = {name: {"kind": "sweep", "experiments": ["ok"]}}
    with pytest.raises(WorkflowError, match=f"{re.escape(repr(name))} does not match"):
        validate(cfg, schema=SCHEMA)
    with pytest.raises(dmc.ConfigError, match=r"figures: .* not a safe folder name"):
        dmc.expand(cfg)


@pytest.mark.parametrize("label", ["..", ".", ".hidden"])
def test_unsafe_labels_are_refused(label):
    cfg = with_experiment({"factor": "train.lr", "values": [0.1], "labels": [label]})
    with pytest.raises(dmc.ConfigError, match=r"experiments\.bad\.labels\[0\].*not a safe folder name"):
        dmc.expand(cfg)


def test_labels_with_slashes_become_one_folder():
    cfg = with_experiment({"factor": "train.lr", "values": [0.1, 0.2], "labels": ["a/../b", "../.."]})
    with pytest.raises(dmc.ConfigError, match=r"labels\[1\]"):  # '../..' -> '.._..' starts with a dot
        dmc.expand(cfg)
    cfg["experiments"]["bad"]["labels"] = ["a/../b", "x/y"]
    labels = [v.label for v in dmc.expand(cfg)["bad"]]
    assert all("/" not in x and not x.startswith(".") for x in labels)


def test_shipped_configs_pass():
    for name in ("config.yaml", "smoke.yaml", "paper.yaml"):
        cfg = yaml.safe_load((ROOT / "config" / name).read_text())
        validate(cfg, schema=SCHEMA)
        assert dmc.expand(cfg)


def test_validation_does_not_import_torch_or_numpy():
    """The per-value check runs while the DAG is built, which must not pay for importing torch."""
    code = (
        "import sys\n"
        "from diffmem.plan import schema as v\n"
        "for call in (lambda: v.check_settings({'train': {'lr': 'x'}}, 'e'), lambda: v.check_emm({'hii': 1}, 'e'),\n"
        "             lambda: v.check_safe_name('..', 'e')):\n"
        "    try:\n        call()\n    except ValueError:\n        pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_base_error_without_override_names_base():
    cfg = with_experiment({})
    cfg = copy.deepcopy(cfg)
    cfg["base"]["sample"]["n"] = 0  # a library caller that skipped the file-level schema
    with pytest.raises(dmc.ConfigError, match=r"experiments\.bad: base\.sample\.n"):
        dmc.expand(cfg)


# ---------------------------------------------------------------------------------------- data files
def cifar_config(path) -> dict:
    cfg = with_experiment({})
    cfg["base"]["data"].update(source="cifar10", path=str(path), resolution=8)
    return cfg


def write_tar(path, names) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))


def check_data_error(cfg) -> str:
    with pytest.raises(dmc.ConfigError) as err:
        dmc.check_data(cfg)
    return str(err.value)


def test_cifar_path_that_is_a_directory_without_the_tarball_is_refused(tmp_path):
    msg = check_data_error(cifar_config(tmp_path))
    assert "experiments.bad" in msg and "data.path" in msg and "cifar-10-python.tar.gz" in msg


def test_cifar_path_that_is_not_gzip_is_refused(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_text("<html>404 not found</html>")
    msg = check_data_error(cifar_config(path))
    assert "data.path" in msg and "not a gzip file" in msg and "cifar-10-batches-py" in msg


def test_cifar_tarball_of_something_else_is_refused(tmp_path):
    path = tmp_path / "other.tar.gz"
    write_tar(path, ["mnist/train.bin"])
    msg = check_data_error(cifar_config(path))
    assert "first member 'mnist/train.bin'" in msg and "expected the official" in msg


def test_cifar_truncated_gzip_is_refused(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00")
    assert "not a readable tar.gz" in check_data_error(cifar_config(path))


def test_cifar_extracted_folder_missing_batches_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"x")
    msg = check_data_error(cifar_config(tmp_path))
    assert "data_batch_2" in msg and "data.path" in msg


def test_cifar_tarball_in_the_official_layout_passes(tmp_path, monkeypatch):
    """The tarball (named, or the folder that holds it) is opened and read unverified, and passes; the same
    tarball without its last batch is refused: what passes is its content."""
    from diffmem.plan import checks

    opened, real = [], checks.check_path
    monkeypatch.setattr(checks, "check_path", lambda path, *a, **kw: opened.append(path) or real(path, *a, **kw))
    path = tmp_path / "cifar-10-python.tar.gz"
    write_tar(path, [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)])
    for cfg in (cifar_config(path), cifar_config(tmp_path)):  # the tarball, the folder that holds it
        cfg["base"]["data"]["verify_md5"] = False  # not the official file; the batches' pickles are the job's
        assert dmc.check_data(cfg) is None
    assert opened == [str(path), str(tmp_path)]
    write_tar(path, [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 5)])
    cfg = cifar_config(path)
    cfg["base"]["data"]["verify_md5"] = False
    assert "no file cifar-10-batches-py/data_batch_5" in check_data_error(cfg)


def test_folder_source_path_that_is_a_file_is_refused(tmp_path):
    cfg = with_experiment({})
    (tmp_path / "dogs.zip").write_bytes(b"PK")
    cfg["base"]["data"].update(
        source="digits",
        classes=1,
        blend={"source": "folder", "path": str(tmp_path / "dogs.zip"), "alpha": 0.5, "class": 0},
    )
    assert "data.blend.path" in check_data_error(cfg) and "not a folder" in check_data_error(cfg)


@pytest.mark.parametrize(
    "exp, missing",
    [
        ({"set": {"train.duration": {"unit": "epochs"}}}, "train.duration.value"),
        ({"set": {"train": {"warmup": {"value": 5}}}}, "train.warmup.unit"),
        ({"factor": "train.snapshots", "values": [{"every": {"unit": "steps"}}]}, "train.snapshots.every.value"),
    ],
)
def test_a_unit_without_its_value_is_refused_not_merged(exp, missing):
    """{unit: epochs} over {unit: steps, value: 300} would silently mean 300 epochs."""
    with pytest.raises(dmc.ConfigError, match=rf"experiments\.bad\.(set|values).*{re.escape(missing)} is missing"):
        dmc.expand(with_experiment(exp))


# ------------------------------------------------------------------ --config KEY=VALUE with nested numbers

ROOT = Path(__file__).resolve().parents[2]


def dry_run_with_config(tmp_path, *config: str) -> subprocess.CompletedProcess:
    import shutil

    for name in ("Snakefile", "workflow", "config", "envs", "src", "benchmarks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    snakemake = Path(sys.executable).with_name("snakemake")
    return subprocess.run(
        [str(snakemake), "-n", "--configfile", "config/smoke.yaml", "--config", *config],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_config_option_with_nested_numbers_works_like_a_configfile(tmp_path):
    # Snakemake reads a nested --config value with YAML's BaseLoader: every leaf a string ('0.001')
    proc = dry_run_with_config(tmp_path, "base={train: {lr: 0.001, batch: 16}, sample: {n: 32}}",
                               "emm={tolerance: 0.4, lo: 2}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is not of type" not in proc.stderr


def test_config_option_with_a_nested_non_number_is_still_refused(tmp_path):
    proc = dry_run_with_config(tmp_path, "base={train: {lr: abc}}")
    assert proc.returncode != 0
    assert "'abc' is not of type 'number'" in proc.stderr + proc.stdout


def test_emm_start_is_checked_against_the_bracket_before_any_job():
    """An opt-in fixed grid (emm.start) must run from the experiment's emm.lo to emm.hi."""
    ok = with_experiment({"emm": {"lo": 2, "hi": 8, "start": [2, 4, 8]}})
    (value,) = dmc.expand(ok)["bad"]
    assert value.emm["start"] == [2, 4, 8]
    bad = with_experiment({"emm": {"lo": 2, "hi": 16, "start": [2, 4, 8]}})
    with pytest.raises(dmc.ConfigError, match=r"experiments\.bad\.emm\.start: must run from emm\.lo=2 to emm\.hi=16"):
        dmc.expand(bad)
    plain = with_experiment({})
    assert "start" not in dmc.expand(plain)["bad"][0].emm  # no default: searches without it keep their params


def test_sizes_per_value_by_label():
    """mode sizes with a mapping: each value trains at its own sizes; a missing or unknown label is named."""
    exp = {"factor": "train.lr", "values": [0.1, 0.2], "labels": ["a", "b"], "mode": "sizes",
           "sizes": {"a": [2, 4], "b": [4, 8, 16]}}  # fmt: skip
    a, b = dmc.expand(with_experiment(exp))["bad"]
    assert (a.sizes, b.sizes) == ([2, 4], [4, 8, 16])
    with pytest.raises(dmc.ConfigError, match=r"experiments\.bad\.sizes has no entry for value 'b'"):
        dmc.expand(with_experiment({**exp, "sizes": {"a": [2]}}))
    with pytest.raises(dmc.ConfigError, match=r"experiments\.bad\.sizes names values that do not exist: \['c'\]"):
        dmc.expand(with_experiment({**exp, "sizes": {"a": [2], "b": [4], "c": [8]}}))
