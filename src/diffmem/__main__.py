"""Command line: ``python -m diffmem SUBCOMMAND ...`` (also installed as ``diffmem``).

Each subcommand is two small functions, ``_<name>_arguments(parser)`` and ``_<name>(args)`` (which returns
the exit status; ``args.parser.error`` ends a bad call with status 2), and one entry of :data:`COMMANDS`.
The work is done in the wings below; nothing is computed here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from diffmem.io import write_json
from diffmem.plan import config as dmc
from diffmem.plan import cost, memory, resources
from diffmem.plan.search_cost_report import emm_cost_report
from diffmem.results.compare import compare_text
from diffmem.results.readme_pictures import README_FIGURES, docs_figures
from diffmem.results.summary import summarize
from diffmem.results.verify import verify
from diffmem.science import schedule

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


# ---------------------------------------------------------------------------------------------------
# describe-net

# KEY=VALUE keys of describe-net and how each value is parsed (lists are comma separated).
_NET_KEYS: dict[str, str] = {
    "arch": "str",
    "resolution": "int",
    "img_channels": "int",
    "model_channels": "int",
    "channel_mult": "list",
    "channel_mult_emb": "int",
    "num_blocks": "int",
    "attn_resolutions": "list",
    "dropout": "float",
    "label_dim": "int",
    "label_dropout": "float",
    "embedding": "str",
    "channel_mult_noise": "int",
    "encoder_type": "str",
    "decoder_type": "str",
    "resample_filter": "list",
    "skip": "list",
}


def _parse_assignments(parser: argparse.ArgumentParser, items: list[str], keys: dict[str, str]) -> dict:
    """Turn ["key=value", ...] into a dict; unknown keys or malformed items end in parser.error (exit 2)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            parser.error(f"expected KEY=VALUE, got {item!r}")
        if key not in keys:
            parser.error(f"unknown key {key!r}; known keys: {', '.join(keys)}")
        if key in out:
            parser.error(f"key {key!r} given twice")
        value = value.strip()
        if keys[key] == "list":
            out[key] = [v.strip() for v in value.split(",") if v.strip() != ""]
        else:
            out[key] = value  # resolve_net_config converts and checks numbers
    return out


def _describe_net_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "assignments",
        nargs="*",
        metavar="KEY=VALUE",
        help="net settings overriding the paper's basic DDPM++ (lists comma separated, e.g. "
        "channel_mult=1,2 attn_resolutions= skip=1,0,1,1,1,1,1,1,1); keys: " + ", ".join(_NET_KEYS),
    )


def _describe_net(args: argparse.Namespace) -> int:
    from diffmem.science.nets import PAPER_NET, describe_net

    overrides = _parse_assignments(args.parser, args.assignments, _NET_KEYS)
    try:
        info = describe_net({**PAPER_NET, **overrides})
    except ValueError as err:
        args.parser.error(str(err))
    print(json.dumps(info, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------------
# summarize


def _summarize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a results/<name> folder of the workflow")


def _summarize(args: argparse.Namespace) -> int:
    try:
        print(summarize(args.results))
    except FileNotFoundError as err:
        args.parser.error(str(err))
    return 0


# ---------------------------------------------------------------------------------------------------
# compare


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a results/<name> folder of the workflow")
    parser.add_argument("--configfile", nargs="+", default=None, help="the config(s) of the run (default: the "
                        "config/*.yaml whose name is the folder's name)")  # fmt: skip
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--write-into", metavar="FILE", default=None, help="write the Markdown into FILE, "
                        "between its <!-- compare:begin --> and <!-- compare:end --> lines")  # fmt: skip


def _compare(args: argparse.Namespace) -> int:
    try:
        print(compare_text(args.results, args.configfile, args.markdown, args.write_into), end="")
    except (OSError, ValueError, dmc.ConfigError) as err:
        args.parser.error(str(err))
    return 0


# ---------------------------------------------------------------------------------------------------
# docs-figures


def _docs_figures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a finished results/<name> folder (the README uses results/default)")
    parser.add_argument("out", help="folder to write the PNGs to (the README uses docs/)")
    parser.add_argument(
        "--figures", default=",".join(README_FIGURES), help="comma-separated figure names (default: %(default)s)"
    )
    parser.add_argument("--max-width", type=int, default=900, help="pixels (default: %(default)s)")


def _docs_figures(args: argparse.Namespace) -> int:
    names = [n for n in args.figures.split(",") if n]
    try:
        for path in docs_figures(args.results, args.out, names, max_width=args.max_width):
            print(path)
    except (FileNotFoundError, ValueError) as err:
        args.parser.error(str(err))
    return 0


# ---------------------------------------------------------------------------------------------------
# cost


def _cost_arguments(parser: argparse.ArgumentParser) -> None:
    _configfile_argument(parser)
    parser.add_argument("--device", default=None, help="device kind of the throughput model (a kind measured "
                        "in benchmarks/, e.g. cpu, h200; default: the config's compute.device, else h200 "
                        "when gpu is true)")  # fmt: skip
    parser.add_argument("--speed", type=float, default=None, help="your device's speed relative to that kind")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")


def _cost(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    if args.device:
        cfg["compute"]["device"] = args.device
    if args.speed:
        cfg["compute"]["speed"] = args.speed
    try:
        result = cost.estimate(cfg)
    except (resources.UnknownDevice, dmc.ConfigError) as err:
        args.parser.error(str(err))
    print(json.dumps(result, indent=2) if args.json else cost.format_table(result))
    return 0


# ---------------------------------------------------------------------------------------------------
# emm-cost


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


# ---------------------------------------------------------------------------------------------------
# schedule


def _schedule_arguments(parser: argparse.ArgumentParser) -> None:
    _configfile_argument(parser)
    parser.add_argument("--experiment", required=True, help="an experiment of the config")
    parser.add_argument("--value", default=None, help="the value's label (needed when the experiment has several)")
    parser.add_argument("--size", type=int, required=True, help="the training-set size |D|")
    parser.add_argument("--steps", required=True,
                        help="0-based optimizer step indices, comma separated (e.g. 0,1,390,78124)")  # fmt: skip


def _schedule(args: argparse.Namespace) -> int:
    """One JSON object per requested step: step, images seen before it, lr, ema_beta, ema_halflife_images,
    as diffmem.science.schedule computes them for the training loop."""
    cfg = _load_config(args)
    try:
        values = dmc.expand(cfg).get(args.experiment)
        if values is None:
            args.parser.error(
                f"--experiment {args.experiment!r} is not in the config; it has {', '.join(cfg['experiments'])}"
            )
        chosen = [v for v in values if args.value in (None, v.label)]
        if len(chosen) != 1:
            args.parser.error(f"--value: experiment {args.experiment} has values {', '.join(v.label for v in values)}; "
                              "name one")  # fmt: skip
        steps = [int(k) for k in args.steps.split(",") if k.strip()]
        rows = schedule.schedule_rows(chosen[0].settings["train"], args.size, steps)
    except (OSError, ValueError, dmc.ConfigError) as err:
        args.parser.error(str(err))
    print(json.dumps(rows, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------------
# verify


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="a results/<name> folder of the workflow")
    parser.add_argument("--fix", action="store_true", help="remove missing/corrupt files and what was made from "
                        "them (and stale files), so that the next snakemake run rebuilds exactly those")  # fmt: skip


def _verify(args: argparse.Namespace) -> int:
    try:
        return verify(args.results, do_fix=args.fix)
    except FileNotFoundError as err:
        args.parser.error(str(err))


# ---------------------------------------------------------------------------------------------------
# plot-loss


def _plot_loss_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stats", help="a run folder (results/<name>/runs/<run_id>/n<size>), its train/, or a stats.jsonl"
    )
    parser.add_argument("--out", default="loss.png", help="the figure to write, .png or .pdf (default loss.png)")


def _plot_loss(args: argparse.Namespace) -> int:
    from diffmem.results.loss_curve import plot_loss

    try:
        out = plot_loss(args.stats, args.out)
    except (FileNotFoundError, ValueError) as err:
        args.parser.error(str(err))
    print(out)
    return 0


# ---------------------------------------------------------------------------------------------------
# dog-pool


def _dog_pool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--imagenet", required=True, help="the ImageNet train folder (<wnid>/*.JPEG)")
    parser.add_argument("--out", required=True, help="the pool folder to write (new or empty), e.g. data/imagenet-dogs")
    parser.add_argument("--n", type=int, help="images in the pool (default: 2,000, the paper's)")
    parser.add_argument("--seed", type=int, help="seed of the draw and the shuffle (default: 0)")


def _dog_pool(args: argparse.Namespace) -> int:
    from diffmem.data.dog_pool import build_dog_pool

    try:
        given = {k: v for k, v in (("n", args.n), ("seed", args.seed)) if v is not None}
        manifest = build_dog_pool(args.imagenet, args.out, **given)
    except (OSError, ValueError) as err:
        args.parser.error(str(err))
    print(f"{args.out}: {manifest['about']}, sha256 {manifest['sha256']}")
    return 0


# ---------------------------------------------------------------------------------------------------
# count-activations


def _count_activations_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", help="config files whose nets to count (each read on its own)")
    parser.add_argument("--out", default=str(memory.ACTIVATIONS), help="JSON to update (default: %(default)s)")


def _count_activations(args: argparse.Namespace) -> int:
    from diffmem.science.activations import count_nets

    models = []
    for path in args.configs:
        try:
            plan = dmc.expand(dmc.load_config([path]))
        except (OSError, dmc.ConfigError) as err:
            args.parser.error(f"{path}: {err}")
        models += [v.settings["model"] for vals in plan.values() for v in vals]
    out = Path(args.out)
    known = json.loads(out.read_text())["nets"] if out.is_file() else []
    have = {memory.net_key(r["net"]) for r in known}
    new = count_nets([m for m in models if memory.net_key(m) not in have], memory.net_key)
    nets = sorted(known + new, key=memory.net_key)
    about = "bytes autograd saves per training image (fp32, VP loss, batch 2, CPU): diffmem.science.activations"
    write_json(out, {"about": about, "nets": nets})
    print(f"{out}: {len(new)} nets counted, {len(nets)} in all")
    return 0


# ---------------------------------------------------------------------------------------------------
# Registry and entry point: one entry per subcommand, in the order ``--help`` lists them.


class Command(NamedTuple):
    """A subcommand: what it adds to its parser, what it runs, its line of ``--help``."""

    arguments: Callable[[argparse.ArgumentParser], None]  # adds the subcommand's options to its parser
    run: Callable[[argparse.Namespace], int]  # does it; returns the exit status
    help: str  # one line for --help


COMMANDS: dict[str, Command] = {
    "describe-net": Command(
        _describe_net_arguments,
        _describe_net,
        "print the parameter count and resolved config of a U-Net as JSON",
    ),
    "cost": Command(
        _cost_arguments,
        _cost,
        "estimate runs, images, samples and device-hours of a config before running it",
    ),
    "emm-cost": Command(
        _emm_cost_arguments,
        _emm_cost,
        "the EMM search's runs, images and rounds against a grid of the same resolution",
    ),
    "summarize": Command(
        _summarize_arguments,
        _summarize,
        "print a Markdown table of the EMM of every experiment value of a workflow run",
    ),
    "compare": Command(
        _compare_arguments,
        _compare,
        "hold a run against the paper: its published points (at its settings) and its directions",
    ),
    "schedule": Command(
        _schedule_arguments,
        _schedule,
        "print the learning rate and EMA weight of given optimizer steps of a run as JSON",
    ),
    "verify": Command(
        _verify_arguments,
        _verify,
        "check every file of a results folder against its manifest (size, SHA-256); --fix removes bad ones",
    ),
    "docs-figures": Command(
        _docs_figures_arguments,
        _docs_figures,
        "copy the README's figures of a finished run, shrunk, into a folder (docs/)",
    ),
    "count-activations": Command(
        _count_activations_arguments,
        _count_activations,
        "count the activations each net of some configs saves per training image (the GPU memory model's data)",
    ),
    "plot-loss": Command(
        _plot_loss_arguments,
        _plot_loss,
        "plot a run's training loss (and running average, learning rate) against images seen from stats.jsonl",
    ),
    "dog-pool": Command(
        _dog_pool_arguments,
        _dog_pool,
        "build the paper's ImageNet dog pool (2,000 images of 123 classes, 32x32) as an image folder",
    ),
}


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
