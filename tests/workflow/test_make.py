"""The two commands of the README (`make run`, `make test`) and the pins they install with.

The real thing runs in CI: `.ci/run` is `make test` then `make run SNAKEMAKE_ARGS=-n` on a fresh clone
with no environment. These tests check, without installing anything (`make -n` prints what make would
run), that a missing venv is created and installed with constraints.txt, that a set-up stamp keyed on
pyproject.toml + constraints.txt skips the install, and that constraints.txt pins every dependency.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
INSTALL = 'pip install -c constraints.txt -e ".[workflow,test]"'

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def make_n(*args: str) -> str:
    """What `make -n <args>` would run, from the repository root."""
    out = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def setup_key() -> str:
    data = (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


@needs_make
@pytest.mark.parametrize("target, command", [("run", "snakemake --cores all"), ("test", "python -m pytest -q")])
def test_fresh_clone_creates_venv_and_installs(tmp_path, target, command):
    venv = tmp_path / "venv"  # does not exist: a fresh clone
    out = make_n(target, f"VENV={venv}")
    assert f"python3 -m venv {venv}" in out
    assert f"{venv}/bin/python -m {INSTALL}" in out
    assert command in out
    assert out.index(INSTALL) < out.index(command), "set-up must come before the command"
    assert not venv.exists(), "make -n must not create anything"


@needs_make
@pytest.mark.parametrize("target", ["run", "test"])
def test_second_call_skips_setup(tmp_path, target):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / f".diffmem-setup-{setup_key()}").touch()
    out = make_n(target, f"VENV={venv}")
    assert "pip install" not in out and "-m venv" not in out, out
    assert ("snakemake --cores all" if target == "run" else "pytest -q") in out


@needs_make
def test_changed_pins_redo_setup(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".diffmem-setup-0123456789abcdef").touch()  # a stamp of other pyproject/constraints contents
    out = make_n("run", f"VENV={venv}")
    assert INSTALL in out


@needs_make
def test_snakemake_args_pass_through(tmp_path):
    out = make_n("run", f"VENV={tmp_path / 'venv'}", "SNAKEMAKE_ARGS=-n --configfile config/smoke.yaml")
    assert "snakemake --cores all -n --configfile config/smoke.yaml" in out


def test_ci_runs_the_two_commands():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines
    assert any(ln.startswith("make run SNAKEMAKE_ARGS=-n") for ln in lines)


# ------------------------------------------------------------------------- pins
def constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"constraints.txt: pin one exact version: {line!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt: {name} twice"
        pins[name] = Version(specs[0].version)
    return pins


def declared() -> list[Requirement]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return [Requirement(r) for r in reqs]


def test_constraints_pin_every_declared_dependency_inside_its_bounds():
    pins = constraints()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt: pin {name} (a dependency in pyproject.toml)"
        assert pins[name] in req.specifier, f"constraints.txt: {name}=={pins[name]} outside pyproject's {req}"


def test_pyproject_declares_floors_not_pins():
    # the tested versions live in constraints.txt; pyproject says what the code needs
    for req in declared():
        ops = {s.operator for s in req.specifier}
        assert not ops & {"==", "==="}, f"pyproject.toml: {req} pins a version (put it in constraints.txt)"
        assert ">=" in ops, f"pyproject.toml: {req} needs a floor"
