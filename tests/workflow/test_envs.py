"""The conda env files agree with pyproject.toml and with the rules that name them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
RULE_ENV = ROOT / "envs" / "diffmem.yaml"  # the env every rule names


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def pyproject_deps() -> dict[str, Requirement]:
    reqs = (Requirement(s) for s in pyproject()["project"]["dependencies"])
    return {canonicalize_name(r.name): r for r in reqs}


def env_parts(path: Path) -> tuple[list[str], list[str]]:
    """(conda dependencies as strings, pip lines) of one env file."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict), f"{path.name}: not a YAML mapping"
    conda, pip = [], []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{path.name}: unexpected block {dep}"
            pip.extend(str(x) for x in dep["pip"])
        else:
            conda.append(str(dep))
    return conda, pip


def pinned(pip_lines: list[str]) -> dict[str, Version]:
    """Name -> exact version of the pip lines that are requirements (not -e / options)."""
    out = {}
    for line in pip_lines:
        if line.startswith("-"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"pin one exact version: {line!r}"
        out[canonicalize_name(req.name)] = Version(specs[0].version)
    return out


def test_there_are_env_files():
    assert ENV_FILES, "envs/*.yaml missing"
    assert (ROOT / "envs" / "diffmem.yaml") in ENV_FILES


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_lists_python_and_pip(path):
    conda, pip = env_parts(path)
    pythons = [d for d in conda if re.match(r"^python([<>=!~ ]|$)", d)]
    assert len(pythons) == 1, f"{path.name}: name python exactly once, got {pythons}"
    m = re.match(r"^python\s*=?=?\s*(\d+\.\d+)", pythons[0])
    assert m, f"{path.name}: pin python to a minor version, got {pythons[0]!r}"
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    assert Version(m.group(1)) in requires, f"{path.name}: python {m.group(1)} outside {requires}"
    if pip:
        assert "pip" in conda, f"{path.name}: a pip block needs `- pip` among the conda dependencies"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject(path):
    _, pip = env_parts(path)
    deps = pyproject_deps()
    pins = pinned(pip)
    for name, version in pins.items():
        assert name in deps, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert version in deps[name].specifier, (
            f"{path.name}: {name}=={version} outside pyproject's {deps[name].specifier}"
        )
    if path == RULE_ENV:  # jobs import diffmem from src/, so the env must carry all of its dependencies
        missing = sorted(set(deps) - set(pins))
        assert not missing, f"{path.name}: pin these pyproject dependencies too: {missing}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_files_hold_third_party_pins_only(path):
    """No diffmem, no checkout path, no pip option: Snakemake hashes the env file's content only, so an
    env that installed the checkout (`-e ${DIFFMEM_ROOT}`) would be shared across checkouts with stale
    code, and could not be containerized. Jobs import the checkout's src/ instead (see the Snakefile)."""
    conda, pip = env_parts(path)
    options = [line for line in pip if line.lstrip().startswith("-") or "$" in line or "/" in line]
    assert not options, f"{path.name}: only `name==version` pip lines, got {options}"
    names = {canonicalize_name(Requirement(line).name) for line in pip} | {
        canonicalize_name(re.split(r"[<>=!~ ]", d, maxsplit=1)[0]) for d in conda
    }
    assert "diffmem" not in names, f"{path.name}: installs diffmem; jobs import the checkout's src/ instead"


def torchvision_minor_for(torch: Version) -> int:
    """torchvision 0.(m+15) is built for torch 2.m (2.4 -> 0.19, 2.14 -> 0.29)."""
    assert torch.major == 2, torch
    return torch.minor + 15


def constraints_pins() -> dict[str, Version]:
    """Name -> exact version of constraints.txt (the versions the project is tested with)."""
    lines = [ln.split("#", 1)[0].strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()]
    return pinned([ln for ln in lines if ln])


def test_env_pins_are_the_tested_ones():
    tested = constraints_pins()
    for path in ENV_FILES:
        for name, version in pinned(env_parts(path)[1]).items():
            assert tested.get(name) == version, (
                f"{path.name}: {name}=={version}, constraints.txt (the tested pins) has {tested.get(name)}"
            )


def test_torch_pins_are_a_pair():
    tested = constraints_pins()
    upper = {name: tested[name] for name in ("torch", "torchvision")}
    # constraints.txt pins the pair on the reference machine's disk: a matching pair
    assert upper["torchvision"].minor == torchvision_minor_for(upper["torch"])
    for path in ENV_FILES:
        pins = pinned(env_parts(path)[1])
        if "torch" in pins or "torchvision" in pins:
            assert "torch" in pins and "torchvision" in pins, f"{path.name}: pin torch and torchvision together"
            assert pins["torchvision"].minor == torchvision_minor_for(pins["torch"]), (
                f"{path.name}: torch {pins['torch']} with torchvision {pins['torchvision']}"
            )
            assert pins["torch"] == upper["torch"] and pins["torchvision"] == upper["torchvision"], (
                f"{path.name}: pin the pair constraints.txt names ({upper}), so the env runs "
                "the versions the project is tested with"
            )


# ---------------------------------------------------------------- rules -> env files
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk")) + [
    p for p in [ROOT / "Snakefile", ROOT / "workflow" / "Snakefile"] if p.exists()
]
RULE_HEAD = re.compile(r"^([ \t]*)(?:rule|checkpoint)[ \t]+(\w+)[ \t]*:", re.M)
CONDA = re.compile(r"^[ \t]*conda[ \t]*:[ \t]*(?:#.*)?(?:\n[ \t]*)?([^\s#][^#\n]*?)[ \t]*(?:#.*)?$", re.M)
STRING = re.compile(r"""^(?:f?)(["'])(.+)\1,?$""")
CONSTANT = re.compile(r"""^(\w+)\s*=\s*(["'])(.+?)\2\s*(?:#.*)?$""", re.M)


def rule_blocks(text: str) -> dict[str, str]:
    """Rule name -> its text (up to the next line indented no deeper than the rule head)."""
    heads = list(RULE_HEAD.finditer(text))
    out = {}
    lines_after = text.splitlines(keepends=True)
    for h in heads:
        indent = len(h.group(1))
        start_line = text.count("\n", 0, h.start())
        body = [lines_after[start_line]]
        for line in lines_after[start_line + 1 :]:
            stripped = line.strip()
            if stripped and not stripped.startswith("#") and len(line) - len(line.lstrip()) <= indent:
                break
            body.append(line)
        out[h.group(2)] = "".join(body)
    return out


def conda_targets() -> list[tuple[str, str, Path | None, str]]:
    """(file, rule, resolved env path or None, raw value) for every conda: directive."""
    constants = {}
    for f in RULE_FILES:
        for m in CONSTANT.finditer(f.read_text()):
            constants[m.group(1)] = (f, m.group(3))
    found = []
    for f in RULE_FILES:
        for rule, block in rule_blocks(f.read_text()).items():
            for m in CONDA.finditer(block):
                raw = m.group(1)
                s = STRING.match(raw)
                if s:
                    found.append((f.name, rule, (f.parent / s.group(2)).resolve(), raw))
                elif raw.rstrip(",") in constants:
                    # a constant holds a path relative to the file of the rule that uses it
                    found.append((f.name, rule, (f.parent / constants[raw.rstrip(",")][1]).resolve(), raw))
                else:
                    found.append((f.name, rule, None, raw))
    return found


def script_rules() -> list[tuple[str, str, bool]]:
    """(file, rule, has conda:) for every rule that runs Python: script:, notebook:, or a shell:
    that calls python or diffmem."""
    out = []
    for f in RULE_FILES:
        for rule, block in rule_blocks(f.read_text()).items():
            runs_python = re.search(r"^\s*(script|notebook)\s*:", block, re.M) or (
                re.search(r"^\s*shell\s*:", block, re.M) and re.search(r"\b(python3?|diffmem)\b", block)
            )
            if runs_python:
                out.append((f.name, rule, bool(CONDA.search(block))))
    return out


def test_rule_parser_on_a_sample():
    text = (
        'ENV = "../../envs/diffmem.yaml"\n'
        "rule train:\n    input: 'a'\n    conda:\n        ENV\n    script: 'x.py'\n\n"
        "checkpoint emm_round:\n    conda: \"../../envs/diffmem.yaml\"\n    script: 'y.py'\n"
        "rule all:\n    input: 'z'\n"
    )
    blocks = rule_blocks(text)
    assert set(blocks) == {"train", "emm_round", "all"}
    assert [m.group(1) for m in CONDA.finditer(blocks["train"])] == ["ENV"]
    assert STRING.match(CONDA.search(blocks["emm_round"]).group(1)).group(2) == "../../envs/diffmem.yaml"
    assert not CONDA.search(blocks["all"])


def test_every_conda_directive_names_an_env_file():
    if not any(f.suffix == ".smk" for f in RULE_FILES):
        pytest.skip("workflow/rules/*.smk not written yet")
    targets = conda_targets()
    assert targets, "no rule has a conda: directive (`--use-conda` would do nothing)"
    for fname, rule, path, raw in targets:
        assert path is not None, f"{fname}: rule {rule}: cannot resolve conda: {raw} (use a string literal)"
        assert path.is_file(), f"{fname}: rule {rule}: conda env {path} does not exist"
        assert path.parent == ROOT / "envs", f"{fname}: rule {rule}: env {path} is not under envs/"


def test_every_script_rule_has_a_conda_env():
    if not any(f.suffix == ".smk" for f in RULE_FILES):
        pytest.skip("workflow/rules/*.smk not written yet")
    missing = [f"{f}:{r}" for f, r, has in script_rules() if not has]
    assert not missing, f"rules without conda: (they would run outside the env): {missing}"


def test_no_diffmem_root_left():
    """The env no longer installs the checkout, so nothing may still set or expand DIFFMEM_ROOT."""
    users = [p.name for p in RULE_FILES + ENV_FILES if "DIFFMEM_ROOT" in p.read_text()]
    assert not users, f"DIFFMEM_ROOT is still used in {users}"
