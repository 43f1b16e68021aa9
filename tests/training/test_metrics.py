"""Training metrics: TensorBoard events from the progress hook, and plot-loss from a hand-written stats.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from diffmem.results import loss_curve
from diffmem.training import metrics

ROOT = Path(__file__).resolve().parents[2]
RECORDS = [
    {"step": s, "images": 32 * s, "loss": 1.0 / s, "loss_avg": 1.2 / s, "grad_norm": 0.5, "lr": 1e-3 * min(1, s / 4),
     "ema_beta": 0.99, "images_per_s": 100.0, "elapsed_s": s, "time": "2025-01-01 00:00:00"}
    for s in range(1, 11)
]  # fmt: skip


def _stats(folder: Path, torn: bool = False) -> Path:
    path = folder / "runs" / "r" / "n8" / "train" / "stats.jsonl"
    path.parent.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in RECORDS[5:] + RECORDS[:5])  # two chain links, any order
    path.write_text(text + ('{"step": 11, "ima' if torn else ""))
    return path


def test_read_stats_from_a_run_folder_sorted_and_a_torn_line_skipped(tmp_path):
    path = _stats(tmp_path, torn=True)
    for where in (path, path.parent, path.parents[1]):
        recs = metrics.read_stats(where)
        assert [r["step"] for r in recs] == list(range(1, 11))
    with pytest.raises(FileNotFoundError, match="stats.jsonl"):
        metrics.read_stats(tmp_path)


@pytest.mark.parametrize("suffix", ["png", "pdf"])
def test_plot_loss_command(tmp_path, suffix):
    path = _stats(tmp_path)
    out = tmp_path / f"loss.{suffix}"
    proc = subprocess.run(
        [sys.executable, "-m", "diffmem", "plot-loss", str(path.parents[1]), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.stat().st_size > 5000
    if suffix == "png":
        with Image.open(out) as im:
            assert im.size[0] > 500
    else:
        assert out.read_bytes()[:4] == b"%PDF"


def test_plot_loss_refuses_other_formats_and_empty_files(tmp_path):
    path = _stats(tmp_path)
    with pytest.raises(ValueError, match="png or .pdf"):
        loss_curve.plot_loss(path, tmp_path / "loss.svgz")
    path.write_text("\n")
    with pytest.raises(ValueError, match="no records"):
        loss_curve.plot_loss(path, tmp_path / "loss.png")


class _FakeWriter:
    made: list[_FakeWriter] = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        _FakeWriter.made.append(self)

    def add_scalar(self, tag, value, global_step):
        self.scalars.append((tag, value, global_step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_hook_writes_every_scalar_against_images_seen(tmp_path, monkeypatch):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = _FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    with metrics.tensorboard(tmp_path) as board:
        for rec in RECORDS[:3]:
            board(rec)
    (writer,) = _FakeWriter.made
    assert writer.log_dir == str(tmp_path / metrics.TENSORBOARD_DIR) and writer.closed
    assert ("train/loss", 0.5, 64) in writer.scalars and ("train/lr", 0.00075, 96) in writer.scalars
    assert {t for t, _, _ in writer.scalars} == {f"train/{k}" for k in metrics.SCALARS}


def test_tensorboard_hook_is_a_no_op_without_tensorboard(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    with metrics.tensorboard(tmp_path) as board:
        board(RECORDS[0])
    assert not (tmp_path / metrics.TENSORBOARD_DIR).exists()


def test_real_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    with metrics.tensorboard(tmp_path) as board:
        for rec in RECORDS:
            board(rec)
    assert list((tmp_path / metrics.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
