"""Execution profiles: profiles/default (the workflow profile, read by Snakemake by itself) with a site
profile such as profiles/slurm layered on top."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
WORKFLOW_KEYS = {
    "cores",
    "rerun-incomplete",
    "keep-going",
    "show-failed-logs",
    "printshellcmds",
    "max-jobs-per-timespan",
}
# What a site decides: the workflow profile must leave these alone, since Snakemake lets the workflow
# profile win over --profile key by key (a whole block for the *-resources keys).
SITE_KEYS = {
    "executor", "jobs", "latency-wait", "retries", "default-resources", "set-resources", "set-threads",
    "resources", "conda-prefix", "use-conda",
}  # fmt: skip


def load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text()) or {}


def site_profiles() -> list[str]:
    return sorted(p.name for p in PROFILES.iterdir() if (p / "config.yaml").is_file() and p.name != "default")


def test_default_profile_has_the_workflow_keys():
    prof = load("default")
    assert set(prof) == WORKFLOW_KEYS, f"profiles/default: expected exactly {sorted(WORKFLOW_KEYS)}"
    assert prof["cores"] == "all"
    assert prof["max-jobs-per-timespan"] == "1000/10s"  # the scheduler's idle wake-up every 10 s, not 1 s
    assert all(prof[k] is True for k in WORKFLOW_KEYS - {"cores", "max-jobs-per-timespan"})
    assert not set(prof) & SITE_KEYS


@pytest.mark.parametrize("name", site_profiles())
def test_site_profiles_do_not_repeat_workflow_keys(name):
    """A key set in both would silently take the workflow profile's value."""
    both = sorted(set(load(name)) & set(load("default")))
    assert not both, f"profiles/{name} repeats {both} of profiles/default (whose values win)"


def cli_args(monkeypatch, *argv: str):
    from snakemake.cli import parse_args

    monkeypatch.chdir(ROOT)  # Snakemake finds profiles/default beside the Snakefile in the working dir
    return parse_args([*argv, "--dry-run"])[1]


def test_site_profile_is_layered_on_the_default(monkeypatch, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "config.yaml").write_text("jobs: 7\nlatency-wait: 33\nretries: 2\n")
    args = cli_args(monkeypatch, "--profile", str(site))
    assert (args.jobs, args.latency_wait, args.retries) == (7, 33, 2)  # from the site profile
    assert args.keep_going and args.rerun_incomplete and args.show_failed_logs and args.printshellcmds
    assert (args.max_jobs_per_timespan.max_jobs, args.max_jobs_per_timespan.timespan) == (1000, 10)
    assert cli_args(monkeypatch, "--profile", str(site), "--cores", "1").cores == 1  # the command line wins
    off = cli_args(monkeypatch, "--workflow-profile", "none")
    assert not off.keep_going and not off.rerun_incomplete  # so the keys above came from profiles/default


@pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
    reason="profiles/slurm needs snakemake-executor-plugin-slurm (pip install -e '.[slurm]')",
)
def test_slurm_profile_is_layered_on_the_default(monkeypatch):
    args = cli_args(monkeypatch, "--profile", "profiles/slurm")
    assert args.executor == "slurm" and args.slurm_status_command == "squeue"
    assert args.keep_going and args.rerun_incomplete and args.show_failed_logs
