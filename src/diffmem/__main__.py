"""Command line: ``python -m diffmem SUBCOMMAND ...`` (also installed as ``diffmem``).

Each subcommand is two small functions, ``_<name>_arguments(parser)`` and ``_<name>(args)`` (which returns
the exit status; an error of the kinds its :func:`_usage_errors` names, or ``args.parser.error``, ends a bad
call with status 2, naming why), and one entry of :data:`COMMANDS`. The work is done in the wings below;
nothing is computed here.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from diffmem.plan import config as dmc
from diffmem.plan import cost, memory, resources
from diffmem.plan.expand import one_value
from diffmem.plan.lock import ResultsLockError
from diffmem.plan.search_cost_report import emm_cost_report
from diffmem.results.compare import compare_text
from diffmem.results.readme_pictures import README_FIGURES, docs_figures
from diffmem.results.summary import summarize
from diffmem.results.verify import verify
from diffmem.science import schedule
from diffmem.science.netconfig import NET_DEFAULTS, parse_assignments

# ---------------------------------------------------------------------------------------------------
# What several subcommands share.


def _configfile_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configfile", nargs="+", default=["config/config.yaml"],
                        help="config file(s), later ones layered over earlier ones as Snakemake does "
                             "(default: %(default)s)")  # fmt: skip


def _load_config(args: argparse.Namespace) -> dict:
    """The config of ``--configfile``; a missing or invalid one ends the call (exit 2) naming why."""
    try:
        return dmc.load_config(args.configfile)
    except (OSError, dmc.ConfigError) as err:
        args.parser.error(str(err))


def _usage_errors(*kinds: type[Exception]):
    """A subcommand whose errors of ``kinds`` (a missing folder, a bad value) end the call with exit status 2
    and the error's message, as a bad option does."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def checked(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except kinds as err:
                args.parser.error(str(err))

        return checked

    return wrap


# --- describe-net ----------------------------------------------------------------------------------


def _describe_net_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "assignments",
        nargs="*",
        metavar="KEY=VALUE",
        help="net settings overriding the paper's basic DDPM++ (lists comma separated, e.g. "
        "channel_mult=1,2 attn_resolutions= skip=1,0,1,1,1,1,1,1,1); keys: " + ", ".join(NET_DEFAULTS),
    )


@_usage_errors(ValueError)
def _describe_net(args: argparse.Namespace) -> int:
    from diffmem.science.nets import PAPER_NET, describe_net

    print(json.dumps(describe_net({**PAPER_NET, **parse_assignments(args.assignments)}), indent=2))
    return 0


# --- summarize -------------------------------------------------------------------------------------


def _summarize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a results/<name> folder of the workflow")


@_usage_errors(FileNotFoundError)
def _summarize(args: argparse.Namespace) -> int:
    print(summarize(args.results))
    return 0


# --- compare ---------------------------------------------------------------------------------------


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a results/<name> folder of the workflow")
    parser.add_argument("--configfile", nargs="+", default=None, help="the config(s) of the run (default: the "
                        "config/*.yaml whose name is the folder's name)")  # fmt: skip
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--write-into", metavar="FILE", default=None, help="write the Markdown into FILE, "
                        "between its <!-- compare:begin --> and <!-- compare:end --> lines")  # fmt: skip


@_usage_errors(OSError, ValueError, dmc.ConfigError)
def _compare(args: argparse.Namespace) -> int:
    print(compare_text(args.results, args.configfile, args.markdown, args.write_into), end="")
    return 0


# --- docs-figures ----------------------------------------------------------------------------------


def _docs_figures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a finished results/<name> folder (the README uses results/default)")
    parser.add_argument("out", help="folder to write the PNGs to (the README uses docs/)")
    parser.add_argument(
        "--figures", default=",".join(README_FIGURES), help="comma-separated figure names (default: %(default)s)"
    )
    parser.add_argument("--max-width", type=int, default=900, help="pixels (default: %(default)s)")


@_usage_errors(FileNotFoundError, ValueError)
def _docs_figures(args: argparse.Namespace) -> int:
    names = [n for n in args.figures.split(",") if n]
    for path in docs_figures(args.results, args.out, names, max_width=args.max_width):
        print(path)
    return 0


# --- cost ------------------------------------------------------------------------------------------


def _cost_arguments(parser: argparse.ArgumentParser) -> None:
    _configfile_argument(parser)
    parser.add_argument("--device", default=None, help="device kind of the throughput model (a kind measured "
                        "in benchmarks/, e.g. cpu, h200; default: the config's compute.device, else h200 "
                        "when gpu is true)")  # fmt: skip
    parser.add_argument("--speed", type=float, default=None, help="your device's speed relative to that kind")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")


@_usage_errors(resources.UnknownDevice, dmc.ConfigError)
def _cost(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    cfg["compute"].update({k: v for k, v in (("device", args.device), ("speed", args.speed)) if v})
    result = cost.estimate(cfg)
    print(json.dumps(result, indent=2) if args.json else cost.format_table(result))
    return 0


# --- emm-cost --------------------------------------------------------------------------------------


def _emm_cost_arguments(parser: argparse.ArgumentParser) -> None:
    _configfile_argument(parser)
    parser.add_argument("--per-round", default="1,2,3,4,6", help="comma-separated per_round values to compare")
    parser.add_argument("--curves", type=int, default=48, help="synthetic curves per kind (true EMMs over [lo, hi])")
    parser.add_argument("--results", default=None, help="a workflow run folder (results/<name>) with emm/*/*/emm.json")
    parser.add_argument("--json", default=None, help="also write every number to this JSON file")


def _emm_cost(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    per_rounds = [int(p) for p in args.per_round.split(",") if p.strip()]
    text, report = emm_cost_report(cfg, per_rounds, curves=args.curves, results=args.results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


# --- schedule --------------------------------------------------------------------------------------


def _schedule_arguments(parser: argparse.ArgumentParser) -> None:
    _configfile_argument(parser)
    parser.add_argument("--experiment", required=True, help="an experiment of the config")
    parser.add_argument("--value", default=None, help="the value's label (needed when the experiment has several)")
    parser.add_argument("--size", type=int, required=True, help="the training-set size |D|")
    parser.add_argument("--steps", required=True,
                        help="0-based optimizer step indices, comma separated (e.g. 0,1,390,78124)")  # fmt: skip


@_usage_errors(OSError, ValueError, dmc.ConfigError)
def _schedule(args: argparse.Namespace) -> int:
    """One JSON object per requested step: step, images seen before it, lr, ema_beta, ema_halflife_images,
    as diffmem.science.schedule computes them for the training loop."""
    value = one_value(dmc.expand(_load_config(args)), args.experiment, args.value)
    steps = [int(k) for k in args.steps.split(",") if k.strip()]
    print(json.dumps(schedule.schedule_rows(value.settings["train"], args.size, steps), indent=2))
    return 0


# --- verify ----------------------------------------------------------------------------------------


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a results/<name> folder of the workflow")
    parser.add_argument("--fix", action="store_true", help="remove missing/corrupt files and what was made from "
                        "them (and stale files), so that the next snakemake run rebuilds exactly those")  # fmt: skip
    parser.add_argument("--configfile", nargs="+", default=None, help="the config(s) of the run, whose plan "
                        "says which files are lost (default: the config/*.yaml named like the folder)")  # fmt: skip


@_usage_errors(OSError, dmc.ConfigError, ResultsLockError)  # not a results folder, a bad config, in use
def _verify(args: argparse.Namespace) -> int:
    return verify(args.results, do_fix=args.fix, configfile=args.configfile)


# --- plot-loss -------------------------------------------------------------------------------------


def _plot_loss_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stats", help="a run folder (results/<name>/runs/<run_id>/n<size>), its train/, or a stats.jsonl"
    )
    parser.add_argument("--out", default="loss.png", help="the figure to write, .png or .pdf (default loss.png)")


@_usage_errors(FileNotFoundError, ValueError)
def _plot_loss(args: argparse.Namespace) -> int:
    from diffmem.results.loss_curve import plot_loss

    print(plot_loss(args.stats, args.out))
    return 0


# --- dog-pool --------------------------------------------------------------------------------------


def _dog_pool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--imagenet", required=True, help="the ImageNet train folder (<wnid>/*.JPEG)")
    parser.add_argument("--out", required=True, help="the pool folder to write (new or empty), e.g. data/imagenet-dogs")
    parser.add_argument("--n", type=int, help="images in the pool (default: 2,000, the paper's)")
    parser.add_argument("--seed", type=int, help="seed of the draw and the shuffle (default: 0)")


@_usage_errors(OSError, ValueError)
def _dog_pool(args: argparse.Namespace) -> int:
    from diffmem.data.dog_pool import build_dog_pool

    given = {k: v for k, v in (("n", args.n), ("seed", args.seed)) if v is not None}
    manifest = build_dog_pool(args.imagenet, args.out, **given)
    print(f"{args.out}: {manifest['about']}, sha256 {manifest['sha256']}")
    return 0


# --- count-activations -----------------------------------------------------------------------------


def _count_activations_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", help="config files whose nets to count (each read on its own)")
    parser.add_argument("--out", default=str(memory.ACTIVATIONS), help="JSON to update (default: %(default)s)")


def _count_activations(args: argparse.Namespace) -> int:
    models = []
    for path in args.configs:
        try:
            models += [v.settings["model"] for vals in dmc.expand(dmc.load_config([path])).values() for v in vals]
        except (OSError, dmc.ConfigError) as err:
            args.parser.error(f"{path}: {err}")
    new, total = memory.update_counts(models, args.out)
    print(f"{args.out}: {new} nets counted, {total} in all")
    return 0


# ---------------------------------------------------------------------------------------------------
# Registry and entry point: one entry per subcommand, in the order ``--help`` lists them.


class Command(NamedTuple):
    """A subcommand: what it adds to its parser, what it runs, its line of ``--help``."""

    arguments: Callable[[argparse.ArgumentParser], None]  # adds the subcommand's options to its parser
    run: Callable[[argparse.Namespace], int]  # does it; returns the exit status
    help: str  # one line for --help


COMMANDS: dict[str, Command] = {
    "describe-net": Command(_describe_net_arguments, _describe_net,
        "print the parameter count and resolved config of a U-Net as JSON"),
    "cost": Command(_cost_arguments, _cost,
        "estimate runs, images, samples and device-hours of a config before running it"),
    "emm-cost": Command(_emm_cost_arguments, _emm_cost,
        "the EMM search's runs, images and rounds against a grid of the same resolution"),
    "summarize": Command(_summarize_arguments, _summarize,
        "print a Markdown table of the EMM of every experiment value of a workflow run"),
    "compare": Command(_compare_arguments, _compare,
        "hold a run against the paper: its published points (at its settings) and its directions"),
    "schedule": Command(_schedule_arguments, _schedule,
        "print the learning rate and EMA weight of given optimizer steps of a run as JSON"),
    "verify": Command(_verify_arguments, _verify,
        "check every file of a results folder against its manifest (size, SHA-256); --fix removes bad ones"),
    "docs-figures": Command(_docs_figures_arguments, _docs_figures,
        "copy the README's figures of a finished run, shrunk, into a folder (docs/)"),
    "count-activations": Command(_count_activations_arguments, _count_activations,
        "count the activations each net of some configs saves per training image (the GPU memory model's data)"),
    "plot-loss": Command(_plot_loss_arguments, _plot_loss,
        "plot a run's training loss (and running average, learning rate) against images seen from stats.jsonl"),
    "dog-pool": Command(_dog_pool_arguments, _dog_pool,
        "build the paper's ImageNet dog pool (2,000 images of 123 classes, 32x32) as an image folder"),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m diffmem``: a subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="diffmem", description="On Memorization in Diffusion Models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.arguments(p)
        p.set_defaults(run=command.run, parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m diffmem`` with ``argv`` (default: the process's); return the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
