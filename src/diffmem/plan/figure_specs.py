"""What a figure's jobs are told: its config entry, where each of its values' results lie, and a caption.

:func:`figure_spec` is the ``figure`` param of the table, figure and table_html rules; :func:`figure_caption`
says what a figure varies and how to read it (unless the config gives a caption).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from diffmem.errors import ConfigError
from diffmem.plan import layout
from diffmem.plan.expand import Value

_HOW_TO_READ = {
    "sweep": (
        "Left: memorization ratio (share of generated samples whose distance d1 to the nearest training image "
        "is below {ratio_threshold} of the distance d2 to the second nearest, d1/d2 < {ratio_threshold}) against "
        "the training-set size |D| on a log axis, with its 95% Wilson interval; the dashed line is the EMM "
        "threshold ({emm_threshold}), and the strip above marks each value's EMM bracket. Right: the EMM of each "
        "value (the largest |D| whose ratio is still >= {emm_threshold}) as a bracket; higher EMM means more "
        "memorization."
    ),
    "epochs": (
        "Memorization ratio of each snapshot against the number of training images seen, one line per "
        "training-set size (and value), with 95% Wilson intervals; a sample is memorized when "
        "d1/d2 < {ratio_threshold}, and the dashed line is the EMM threshold ({emm_threshold})."
    ),
    "optimum": (
        "Samples (left) and the same samples above their nearest training images (middle) for each run, "
        "and the memorization ratio of each run (right, d1/d2 < {ratio_threshold}): the closed-form optimal "
        "denoiser copies its training set; a trained model copies it only below its EMM."
    ),
    "fixed": (
        "Memorization ratio (share of generated samples with d1/d2 < {ratio_threshold}) against the value of the "
        "factor, at fixed training-set sizes |D|, one series per |D|, with its 95% Wilson interval; the dashed "
        "line is the EMM threshold ({emm_threshold}); open markers, where drawn, are the paper's published values."
    ),
}


def threshold_text(x: float) -> str:
    """A threshold as a reader writes it: 1/3 for 0.333..., 0.25 for 0.25, 90% is the caller's choice."""
    f = Fraction(float(x)).limit_denominator(12)
    if f.denominator > 1 and f.numerator < 10 and abs(float(f) - float(x)) < 1e-9 and len(f"{float(x):g}") > 4:
        return f"{f.numerator}/{f.denominator}"
    return f"{float(x):g}"


def figure_caption(
    name: str, fig: dict, experiments: dict, *, ratio_threshold: float | None, emm_threshold: float | None
) -> str:
    """What a figure varies and how to read it (for the HTML report), unless the config gives a caption.

    ``ratio_threshold`` (score.threshold, d1/d2) and ``emm_threshold`` (emm.threshold): the settings the
    figure's runs use; None where its values differ (the caption then names the setting)."""
    if fig.get("caption"):
        return fig["caption"]
    parts = [f"{fig.get('title', name)}" + (f" (paper {fig['paper']})" if fig.get("paper") else "") + "."]
    for exp in fig["experiments"]:
        spec = experiments[exp]
        title = spec.get("title", exp)
        factor = spec.get("factor")
        fixed = ", ".join(f"{k}={v}" for k, v in (spec.get("set") or {}).items())
        if factor:
            keys = factor if isinstance(factor, str) else " + ".join(factor)
            shown = spec.get("labels") or spec.get("values")
            text = f"{title}: varies {keys} over {', '.join(str(x) for x in shown)}"
        else:
            text = f"{title}: the base settings"
        if fixed:
            text += f" (with {fixed})"
        if spec.get("mode") == "sizes":
            text += f" at |D| = {', '.join(str(x) for x in spec['sizes'])}"
        parts.append(text + "; everything else as in the base config.")
    parts.append(
        _HOW_TO_READ[fig["kind"]].format(
            ratio_threshold="score.threshold" if ratio_threshold is None else threshold_text(ratio_threshold),
            emm_threshold="emm.threshold" if emm_threshold is None else f"{emm_threshold:.0%}",
        )
    )
    return " ".join(parts)


def value_key(x) -> str:
    """A comparable form of a value's name as a figure key writes it (a YAML 8 names the value labelled "8",
    1e-05 the one labelled "1e-05"), as the figure step compares them."""
    if isinstance(x, bool) or x is None:
        return str(x)
    try:
        return repr(float(x))
    except (TypeError, ValueError):
        return str(x)


def _is_number(x) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return not isinstance(x, bool)


def check_figure(name: str, fig: dict, plan: dict[str, list[Value]]) -> None:
    """The keys of figure ``name`` that name values or sizes name ones its experiments have: ``group_by``,
    ``x`` and ``reference[].value`` a value (label, display text or replicated label; ``x`` and kind fixed's
    numbers on a numeric axis may place a published point where no value stands), ``sizes`` a |D| its
    experiments measure (any, where one searches for its EMM: the sizes are not known in advance).
    ConfigError naming ``figures.<name>.<key>`` and the unknown entries."""
    vals = [v for exp in fig["experiments"] if exp in plan for v in plan[exp]]
    known = {value_key(n) for v in vals for n in (v.label, v.display, v.group)}
    refs = fig.get("reference") or []
    numeric = fig["kind"] == "fixed" and fig.get("x_scale") != "category"
    placed = {value_key(k) for k in fig.get("x") or {}} if numeric else set()
    ref_ok = {value_key(p["value"]) for p in refs if numeric and _is_number(p["value"])}  # stands at its number
    checks = {
        "group_by": list(fig.get("group_by") or {}),
        "x": [k for k in fig.get("x") or {} if value_key(k) not in {value_key(p["value"]) for p in refs}],
        "reference[].value": [p["value"] for p in refs if value_key(p["value"]) not in placed | ref_ok],
    }
    for key, names in checks.items():
        unknown = [n for n in names if value_key(n) not in known]
        if unknown:
            have = ", ".join(dict.fromkeys(str(v.display) for v in vals))
            raise ConfigError(f"figures.{name}.{key} names {unknown}, not a value of its experiments ({have})")
    if fig.get("sizes") and all(v.mode == "sizes" for v in vals):
        measured = {int(s) for v in vals for s in v.sizes}
        unknown = [s for s in fig["sizes"] if int(s) not in measured]
        if unknown:
            raise ConfigError(f"figures.{name}.sizes names |D| {unknown} that none of its experiments measures "
                              f"(they measure {sorted(measured)})")  # fmt: skip


def figure_spec(config: dict, plan: dict[str, list[Value]], name: str, results) -> dict:
    """A figure's config entry plus, per experiment value, where its results lie under ``results``
    (the ``results/<name>`` folder; file names from :mod:`diffmem.plan.layout`) and its caption; where the
    entry names the paper's panels (``paper_points``), each value's resolved settings too (the figure step
    draws a published point on the value whose settings are the paper's for it)."""
    results = Path(results)
    fig = dict(config["figures"][name])
    fig["name"] = name
    values = []
    for exp in fig["experiments"]:
        spec = config["experiments"][exp]
        for v in plan[exp]:
            values.append(
                {
                    "experiment": exp,
                    "title": spec.get("title", exp),
                    "factor": spec.get("factor"),
                    "label": v.label,
                    "display": v.display,
                    "group": v.group,  # the value a replicate repeats (experiment key replicates)
                    "seed": v.settings["data"]["seed"],
                    "mode": v.mode,
                    "run_id": v.run_id,
                    "emm": str(results / layout.emm_result(exp, v.label)) if v.mode == "emm" else None,
                    "scores": {
                        str(s): str(results / layout.memorization(v.run_id, s, v.sample_id, v.score_id))
                        for s in v.sizes
                    },
                    # (samples grid, nearest-neighbour grid) per size, drawn by kind optimum
                    "grids": {
                        str(s): [
                            str(results / layout.sample_files(v.run_id, s, v.sample_id)["grid"]),
                            str(results / layout.score_files(v.run_id, s, v.sample_id, v.score_id)["nearest"]),
                        ]
                        for s in v.sizes
                    },
                    "ratio_threshold": v.settings["score"]["threshold"],
                    "emm_threshold": v.emm.get("threshold", config["emm"]["threshold"]),
                    # a figure that names the paper's panels: the figure step matches its values to them
                    **({"settings": v.settings} if fig.get("paper_points") else {}),
                }
            )
    fig["values"] = values
    ratio_thr = {v["ratio_threshold"] for v in values}
    emm_thr = {v["emm_threshold"] for v in values}
    fig["caption"] = figure_caption(
        name,
        fig,
        config["experiments"],
        ratio_threshold=ratio_thr.pop() if len(ratio_thr) == 1 else None,
        emm_threshold=emm_thr.pop() if len(emm_thr) == 1 else None,
    )
    return fig
