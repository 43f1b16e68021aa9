"""Building the DAG needs Snakemake alone (+ PyYAML, which it brings): no torch, no numpy, no installed
diffmem; and every job imports the checkout's src/, not an installed diffmem.

This is what `snakemake --use-conda` relies on: the user's Snakemake env has no diffmem and no torch, the
jobs' conda env (envs/diffmem.yaml) has the third-party packages but not diffmem.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("Snakefile", "workflow", "config", "envs", "profiles", "src", "benchmarks")  # a user's checkout
CONFIGS = {
    "default": [],
    "smoke": ["--configfile", "config/smoke.yaml"],
    "paper": ["--configfile", "config/paper.yaml"],
}
# Configs whose DAG loads data (numpy, scikit-learn) for their allowed training-set sizes: none since the
# per-class counts of digits (and of patches, fonts, blends of them) are facts in diffmem.data.sources.
# A config listed here must fail a Snakemake-only dry run on exactly that (the test says when it no longer does).
LOADS_DIGITS: set[str] = set()


def snakemake_pin() -> str:
    """The tested Snakemake (constraints.txt pins it; pyproject's `workflow` extra only bounds it)."""
    pins = re.findall(r"^snakemake==\S+$", (ROOT / "constraints.txt").read_text(), re.M)
    assert len(pins) == 1, f"constraints.txt: expected one snakemake==X line, got {pins}"
    return pins[0]


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dest / name)
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would add packages to another interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="session")
def minimal_venv(pytestconfig, tmp_path_factory) -> Path:
    """A venv with only Snakemake (and what it depends on), cached in .pytest_cache between runs."""
    pin = snakemake_pin()
    cache = (
        pytestconfig.cache.mkdir("dag-minimal-venv")
        if getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
        else tmp_path_factory.mktemp("dag-minimal-venv")
    )
    venv, stamp = cache / "venv", cache / "installed.txt"
    with open(cache / "lock", "w") as lock:  # several test runs may share one checkout
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.is_file() and stamp.read_text() == pin and (venv / "bin" / "snakemake").is_file()):
            stamp.unlink(missing_ok=True)
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, env=clean_env())
            proc = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), pin],
                capture_output=True, text=True, env=clean_env(), timeout=600,
            )  # fmt: skip
            assert proc.returncode == 0, f"pip install {pin} failed:\n{proc.stderr[-3000:]}"
            stamp.write_text(pin)
    return venv


def test_minimal_venv_has_no_science_packages(minimal_venv):
    """Otherwise the dry runs below would prove nothing."""
    code = "import importlib.util as u; print([m for m in ('torch', 'numpy', 'diffmem') if u.find_spec(m)])"
    out = subprocess.run(
        [str(minimal_venv / "bin" / "python"), "-c", code], capture_output=True, text=True, env=clean_env(),
        cwd="/", check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_dry_run_with_snakemake_only(minimal_venv, tmp_path, name):
    work = copy_project(tmp_path)
    proc = subprocess.run(
        [str(minimal_venv / "bin" / "snakemake"), "--dry-run", *CONFIGS[name]],
        cwd=work, capture_output=True, text=True, env=clean_env(), timeout=300,
    )  # fmt: skip
    out = proc.stdout[-3000:] + proc.stderr[-3000:]
    if name in LOADS_DIGITS:
        assert proc.returncode != 0, f"{name} now builds with Snakemake alone: remove it from LOADS_DIGITS"
        if re.search(r"No module named '(numpy|sklearn)'", out) and "allowed_sizes" in out:
            pytest.xfail("check_plan loads the digits data (numpy, scikit-learn) for its allowed sizes")
    assert proc.returncode == 0, f"snakemake -n ({name}) failed:\n{out}"
    assert re.search(r"^total\s+\d+", proc.stdout, re.M), f"no job table in the dry run:\n{proc.stdout[-2000:]}"


MARK = """
import os as _os

if _os.environ.get("DIFFMEM_IMPORT_MARK"):  # added by tests/workflow/test_dag_minimal.py
    with open(_os.environ["DIFFMEM_IMPORT_MARK"], "a") as _f:
        _f.write(f"{_os.getpid()} {__file__}\\n")
"""


def test_jobs_import_the_checkouts_src(tmp_path):
    """A job (local, no conda) imports diffmem from the checkout it runs in, even where the Python that
    runs it has another checkout installed (this project's .venv has /work/.../src installed editable)."""
    work = copy_project(tmp_path / "checkout")
    with open(work / "src" / "diffmem" / "__init__.py", "a") as f:
        f.write(MARK)
    mark = tmp_path / "imports.txt"
    snakemake = [str(Path(sys.executable).with_name("snakemake")), "--configfile", "config/smoke.yaml"]
    env = clean_env(DIFFMEM_IMPORT_MARK=str(mark))
    plan = subprocess.run([*snakemake, "--dry-run"], cwd=work, capture_output=True, text=True, env=env)
    assert plan.returncode == 0, plan.stderr[-3000:]
    targets = sorted(set(re.findall(r"(results/\S+/run\.json)", plan.stdout)))
    assert targets, f"no run.json in the plan:\n{plan.stdout[-2000:]}"
    mark.unlink()
    proc = subprocess.run(
        [*snakemake, "--cores", "1", targets[0]], cwd=work, capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imports = [line.split(" ", 1) for line in mark.read_text().splitlines()]
    assert len({pid for pid, _ in imports}) >= 2, f"expected the DAG and the job to import diffmem: {imports}"
    expected = str(work / "src" / "diffmem" / "__init__.py")
    assert all(path == expected for _, path in imports), imports


PLAN_WITHOUT_TORCH = """
import sys
for name in ("torch", "numpy"):
    sys.modules[name] = None  # any import of them now raises ImportError
import yaml
from snakemake.utils import validate
from diffmem.plan import config as dmc
for path in sys.argv[1:]:
    cfg = yaml.safe_load(open(path))
    validate(cfg, "workflow/schemas/config.schema.yaml")
    assert dmc.expand(cfg), path
heavy = ("torch", "numpy", "pandas", "sklearn", "matplotlib", "torchvision")
print(sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in heavy))
"""


def test_plan_is_torch_and_numpy_free():
    """The settings of every run (nets resolved to canonical form for their ids) come from torch- and
    numpy-free modules, for all three configs; fast, and independent of the digits caveat above."""
    configs = [str(ROOT / "config" / f) for f in ("config.yaml", "smoke.yaml", "paper.yaml")]
    proc = subprocess.run(
        [sys.executable, "-c", PLAN_WITHOUT_TORCH, *configs], cwd=ROOT, capture_output=True, text=True,
        env=clean_env(PYTHONPATH=str(ROOT / "src")),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
