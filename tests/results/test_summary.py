"""`python -m diffmem summarize`: the EMM table read back from emm.json files."""

from diffmem.__main__ import main
from diffmem.io import write_json
from diffmem.results.summary import summarize


def _emm(tmp_path, exp, value, **res):
    write_json(tmp_path / "emm" / exp / value / "emm.json", {"experiment": exp, "value": value, **res})


def test_summary_lists_brackets_and_open_ends(tmp_path, capsys):
    ev = [{"size": 10, "ratio": 1.0}, {"size": 20, "ratio": 0.95}, {"size": 30, "ratio": 0.5}]
    _emm(tmp_path, "basic", "base", status="found", bracket=[20, 30], lower=20, upper=30, evaluated=ev, round=1)
    _emm(
        tmp_path,
        "width",
        "8",
        status="below_lo",
        bracket=None,
        lower=None,
        upper=10,
        lo=10,
        evaluated=[{"size": 10, "ratio": 0.2}],
        round=0,
        non_monotone=False,
    )
    _emm(
        tmp_path,
        "width",
        "64",
        status="above_hi",
        bracket=None,
        hi=40,  # a file without lower/upper
        evaluated=[{"size": 10, "ratio": 1.0}, {"size": 40, "ratio": 0.95}],
        round=0,
    )
    text = summarize(tmp_path)
    assert "| basic | base | [20, 30) | found | 2 | 10: 1.00, 20: 0.95, 30: 0.50 |" in text
    assert "| width | 8 | < 10 | below_lo |" in text
    assert "| width | 64 | >= 40 | above_hi |" in text
    assert main(["summarize", str(tmp_path)]) == 0
    assert "[20, 30)" in capsys.readouterr().out
