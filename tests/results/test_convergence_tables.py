"""Convergence beside every ratio, and the tables and figures that carry it, the geometry and the seed."""

from __future__ import annotations

import pandas as pd
import pytest

from diffmem.results import figures as plotting
from diffmem.science.convergence import levelled_off
from diffmem.steps.table import figure_table


# -------------------------------------------------------------------------------------- convergence
def _snap(k, ratio, n=500):
    from diffmem.science.memorization import binomial_ci

    lo, hi = binomial_ci(round(ratio * n), n)
    return {"k": k, "ratio": ratio, "ci_low": lo, "ci_high": hi, "n": n}


def test_convergence_of_hand_made_snapshots():
    assert levelled_off([_snap(0, 0.3)])["levelled_off"] == "unknown"
    assert levelled_off([])["levelled_off"] == "unknown"
    flat = levelled_off([_snap(0, 0.1), _snap(1, 0.50), _snap(2, 0.52)])
    assert flat["levelled_off"] == "yes" and flat["over"] == [1, 2] and flat["change"] == pytest.approx(0.02)
    rising = levelled_off([_snap(0, 0.40), _snap(1, 0.50)])  # 0.40 is outside 0.50's interval at n = 500
    assert rising["levelled_off"] == "no" and rising["change"] == pytest.approx(0.1)
    assert levelled_off([_snap(0, 0.9), _snap(1, 0.8)])["levelled_off"] == "no"  # falling counts too
    # without stored intervals: Wilson intervals from the counts
    assert levelled_off([{"ratio": 0.5, "n_memorized": 250, "n": 500},
                         {"ratio": 0.52, "n_memorized": 260, "n": 500}])["levelled_off"] == "yes"  # fmt: skip


# ---------------------------------------------------------------------------------- tables, figures
def _write_scores(tmp_path, name, ratios, geo):
    from diffmem.io import write_json

    snaps = [_snap(k, r) for k, r in enumerate(ratios)]
    path = tmp_path / f"{name}.json"
    write_json(path, {"size": 20, "ratio": max(ratios), "ci_low": snaps[-1]["ci_low"], "ci_high": snaps[-1]["ci_high"],
                      "n": 500, "snapshots": [{**s, "step": 10 * (s["k"] + 1), "images_seen": 80 * (s["k"] + 1),
                                               "epochs": 4.0 * (s["k"] + 1)} for s in snaps],
                      "convergence": levelled_off(snaps), "geometry": geo})  # fmt: skip
    return str(path)


def test_table_and_figure_carry_convergence_geometry_and_seed(tmp_path):
    geo = {"n": 20, "nn_distance": 35.0, "pair_distance": 70.0, "nn_pair_ratio": 0.5}
    vals = []
    for label, seed, ratios in (("8_seed0", 0, [0.2, 0.6]), ("8_seed1", 1, [0.55, 0.56]), ("4_seed0", 0, [0.3])):
        vals.append({"experiment": "res", "title": "Resolution", "factor": "data.resolution", "label": label,
                     "display": label[0], "group": label[0], "seed": seed, "mode": "sizes", "run_id": "r",
                     "emm": None, "scores": {"20": _write_scores(tmp_path, label, ratios, geo)}, "grids": {},
                     "ratio_threshold": 1 / 3, "emm_threshold": 0.9})  # fmt: skip
    spec = {"name": "f", "kind": "sweep", "experiments": ["res"], "values": vals}
    table = figure_table(spec)
    size = table[table["kind"] == "size"].set_index("value")
    assert size.loc["8_seed0", "levelled_off"] == "no" and size.loc["8_seed1", "levelled_off"] == "yes"
    assert size.loc["4_seed0", "levelled_off"] == "unknown"
    assert size["seed"].tolist() == [0, 1, 0] and size["group"].tolist() == ["8", "8", "4"]
    assert size["nn_pair_ratio"].tolist() == [0.5] * 3
    table.to_csv(tmp_path / "t.csv", index=False)
    table = pd.read_csv(tmp_path / "t.csv", dtype={"value": str, "display": str})
    fig = plotting.draw_figure(spec, table, tmp_path / "f.pdf", tmp_path / "f.png")
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    legend = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith(("_", "EMM"))]
    assert legend == ["8", "4"]  # one entry per value, its replicates share it
    colors = [ln.get_color() for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_marker() not in ("o",)]
    assert colors  # drawn
    rings = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() == "none"]
    assert len(rings) == 1 and rings[0].get_ydata().tolist() == [0.6]  # only the run still rising
    geo_axes = [a for a in fig.get_axes() if a.get_ylabel() == plotting.GEOMETRY_LABEL]
    assert len(geo_axes) == 1  # a data factor: its geometry is drawn
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "not levelled off" in notes and "Replicates" in notes
    # a factor that does not change the data draws no geometry panel
    other = [{**v, "factor": "model.model_channels"} for v in vals]
    fig = plotting.build_figure({**spec, "values": other}, table)
    assert not [a for a in fig.get_axes() if a.get_ylabel() == plotting.GEOMETRY_LABEL]
    # over training (kind epochs): one legend entry per value and size, replicates share its style
    fig = plotting.build_figure({**spec, "kind": "epochs"}, table)
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1 and not ln.get_label().startswith("EMM")]
    assert [ln.get_label() for ln in lines] == ["8, |D| = 20", "_replicate"]  # 8_seed0, 8_seed1 (4: 1 snapshot)
    assert len({(ln.get_linestyle(), ln.get_marker()) for ln in lines}) == 1
    assert "Replicates" in " ".join(t.get_text() for t in fig.texts)
