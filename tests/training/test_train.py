"""Tests of diffmem.training.loop: determinism, resume, refusal, NaN guard, snapshots, EMA, data parallel."""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from runs import N_IMAGES, assert_same, final_weights, make_settings, make_subset

from diffmem.io import read_json, torch_load
from diffmem.science import diffusion, nets
from diffmem.steps import sample as sample_step
from diffmem.training import loop as tr
from diffmem.training import optim

torch.set_num_threads(1)


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_index_stream_is_concatenated_permutations():
    s = tr.IndexStream(7, seed=3, order="reshuffle")
    got = s.take(0, 21)
    for e in range(3):
        assert sorted(got[7 * e : 7 * e + 7].tolist()) == list(range(7))
    assert torch.equal(s.take(5, 9), got[5:14])  # batches wrap across epochs
    assert torch.equal(tr.IndexStream(7, seed=3, order="reshuffle").take(10, 4), got[10:14])
    assert not torch.equal(tr.IndexStream(7, seed=4, order="reshuffle").take(0, 21), got)
    assert not torch.equal(got[:7], got[7:14])  # a new permutation every epoch


def test_fixed_order_repeats_one_permutation_every_epoch():
    fixed = tr.IndexStream(7, seed=3, order="fixed").take(0, 35)
    first = fixed[:7]
    assert sorted(first.tolist()) == list(range(7)) and not torch.equal(first, torch.arange(7))
    for e in range(5):
        assert torch.equal(fixed[7 * e : 7 * e + 7], first)
    assert torch.equal(tr.IndexStream(7, seed=3, order="fixed").take(12, 9), fixed[12:21])  # wraps, resumes
    assert torch.equal(first, tr.IndexStream(7, seed=3, order="reshuffle").take(0, 7))  # = reshuffle's epoch 0
    with pytest.raises(ValueError, match="train.order: expected one of reshuffle, fixed"):
        tr.IndexStream(7, seed=3, order="window")


# ------------------------------------------------------------------------------------------------
# Training.


def test_outputs_determinism_and_seed(tmp_path):
    subset = make_subset()
    settings = make_settings(steps=12, snapshots=3)
    lines: list[str] = []
    a = tr.train(settings, subset, tmp_path / "a", log=lines.append)
    assert a["complete"] and a["steps"] == 12 and a["images"] == 192 and a["device"] == "cpu"
    assert a["n_params"] == nets.count_params(nets.build_net(settings["model"]))
    assert [s["step"] for s in a["snapshots"]] == [4, 8, 12]
    assert any("step 12/12" in line for line in lines)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["progress.json"] + [f"snapshot-{k:03d}.{ext}" for k in range(3) for ext in ("json", "pt")] + [
        "train.json"
    ]
    for k, snap in enumerate(a["snapshots"]):
        meta = read_json(tmp_path / "a" / snap["json"])
        assert meta["k"] == k and meta["step"] == 4 * (k + 1) and meta["images_seen"] == 64 * (k + 1)
        assert meta["epochs"] == pytest.approx(64 * (k + 1) / N_IMAGES)
        assert meta["settings"] == settings and math.isfinite(meta["loss_ema"])
        sd = torch.load(tmp_path / "a" / snap["file"], weights_only=True)
        net = nets.build_net(settings["model"])
        net.load_state_dict(sd)  # EMA net state dict, loadable into a fresh net
    assert read_json(tmp_path / "a" / "train.json")["snapshots"] == a["snapshots"]
    D = sample_step.load_denoiser(settings, tmp_path / "a", a["snapshots"][2], subset, "cpu")
    assert a["snapshots"][2]["step"] == 12 and isinstance(D, diffusion.Precond)

    tr.train(settings, subset, tmp_path / "b", log=lines.append, deterministic=True)
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training
    assert_same(final_weights(tmp_path / "a"), final_weights(tmp_path / "b"))
    other = make_settings(steps=12, snapshots=3, seed=1)
    tr.train(other, subset, tmp_path / "c", log=lines.append)
    assert not torch.equal(
        final_weights(tmp_path / "a")["enc.8x8_conv.weight"], final_weights(tmp_path / "c")["enc.8x8_conv.weight"]
    )


def test_done_run_returns_summary_without_training(tmp_path, monkeypatch):
    subset = make_subset()
    settings = make_settings(steps=3)
    first = tr.train(settings, subset, tmp_path, log=lambda s: None)

    def boom(*a, **k):
        raise AssertionError("should not build a net")

    monkeypatch.setattr(nets, "build_net", boom)
    again = tr.train(copy.deepcopy(settings), subset, tmp_path, log=lambda s: None)
    assert again == json.loads(json.dumps(first))
    # checkpoint_every does not change the weights, so it is not part of the identity
    assert tr.train(make_settings(steps=3, checkpoint_every=7), subset, tmp_path, log=lambda s: None) == again
    with pytest.raises(tr.SettingsMismatchError, match="other settings"):
        tr.train(make_settings(steps=4), subset, tmp_path, log=lambda s: None)
    with pytest.raises(tr.SettingsMismatchError, match="another subset"):
        tr.train(settings, make_subset(seed=1), tmp_path, log=lambda s: None)


def test_official_schedules_and_fixed_order_resume_bit_identically(tmp_path):
    # the paper preset's settings: fixed data order, official warm-up and EMA (exact lengths, so the tiny
    # subset has an EMA at all); a run stopped at step 7 resumes to the uninterrupted run's weights
    settings = make_settings(
        steps=12,
        checkpoint_every=5,
        order="fixed",
        truncate_kimg=False,
        warmup={"unit": "epochs", "value": 1, "mode": "official"},
        ema={"mode": "official", "decay": 0.99929, "rampup": 0.05},
    )
    subset, quiet = make_subset(), {"log": lambda s: None}
    tr.train(settings, subset, tmp_path / "ref", **quiet)
    tr.train(settings, subset, tmp_path / "stop", max_steps=7, **quiet)
    assert tr.train(settings, subset, tmp_path / "stop", **quiet)["resumed_from"] == [7]
    assert_same(final_weights(tmp_path / "stop"), final_weights(tmp_path / "ref"))
    other = make_settings(steps=12, checkpoint_every=5)  # our schedules and order: other weights
    tr.train(other, subset, tmp_path / "ours", **quiet)
    assert max_diff(final_weights(tmp_path / "ours"), final_weights(tmp_path / "ref")) > 0


def test_resume_after_stop_and_after_crash_is_bit_identical(tmp_path, monkeypatch):
    subset = make_subset()
    settings = make_settings(steps=20, checkpoint_every=5)
    quiet = {"log": lambda s: None}
    tr.train(settings, subset, tmp_path / "ref", **quiet)
    ref = final_weights(tmp_path / "ref")

    # Clean stop after step 7 (state.pt written there), then resume.
    part = tr.train(settings, subset, tmp_path / "stop", max_steps=7, **quiet)
    assert not part["complete"] and part["steps"] == 7 and not (tmp_path / "stop" / "train.json").exists()
    state = torch.load(tmp_path / "stop" / "state.pt", weights_only=True)
    assert state["step"] == 7 and isinstance(state["rng"]["noise"], torch.Tensor)
    done = tr.train(settings, subset, tmp_path / "stop", **quiet)
    assert done["resumed_from"] == [7] and [s["step"] for s in done["snapshots"]] == [10, 20]
    assert_same(final_weights(tmp_path / "stop"), ref)
    assert not (tmp_path / "stop" / "state.pt").exists()

    # A crash at step 13: state.pt holds step 10, steps 11-13 are redone on resume.
    real_make_loss = diffusion.make_loss

    def crashing_make_loss(cfg):
        loss, calls = real_make_loss(cfg), [0]

        def f(*args):
            calls[0] += 1
            if calls[0] == 13:
                raise KeyboardInterrupt("simulated kill")
            return loss(*args)

        return f

    monkeypatch.setattr(diffusion, "make_loss", crashing_make_loss)
    with pytest.raises(KeyboardInterrupt):
        tr.train(settings, subset, tmp_path / "crash", **quiet)
    assert torch.load(tmp_path / "crash" / "state.pt", weights_only=True)["step"] == 10
    monkeypatch.setattr(diffusion, "make_loss", real_make_loss)
    done = tr.train(settings, subset, tmp_path / "crash", **quiet)
    assert done["resumed_from"] == [10]
    assert_same(final_weights(tmp_path / "crash"), ref)

    # Resuming a state.pt with other settings is refused and leaves it alone.
    tr.train(settings, subset, tmp_path / "mismatch", max_steps=5, **quiet)
    before = (tmp_path / "mismatch" / "state.pt").read_bytes()
    with pytest.raises(tr.SettingsMismatchError, match="other settings"):
        tr.train(make_settings(steps=20, lr=1e-3), subset, tmp_path / "mismatch", **quiet)
    assert (tmp_path / "mismatch" / "state.pt").read_bytes() == before


def test_walltime_chain_and_signal_end_with_the_uninterrupted_weights(tmp_path):
    """A time budget too small for the run pauses it after a step (state saved, no train.json); calls
    that each get such a budget, like a chain of jobs, end with the uninterrupted run's weights. SIGTERM
    (Slurm's notice) pauses the same way."""
    import signal

    settings, subset = make_settings(steps=12), make_subset()
    tr.train(settings, subset, tmp_path / "whole")
    links = 0
    while True:
        links += 1
        res = tr.train(settings, subset, tmp_path / "chain", time_budget_s=0.0)
        if res["complete"]:
            break
        assert not (tmp_path / "chain" / "train.json").exists() and (tmp_path / "chain" / "state.pt").exists()
        assert read_json(tmp_path / "chain" / "progress.json")["step"] == res["steps"]
        assert links < 20
    assert links > 2
    assert read_json(tmp_path / "chain" / "train.json")["resumed_from"]
    assert_same(final_weights(tmp_path / "whole"), final_weights(tmp_path / "chain"))

    def log(line: str) -> None:
        if line.startswith("step 1/"):
            signal.raise_signal(signal.SIGTERM)  # handled by train(): pause after this step

    lines: list[str] = []
    res = tr.train(settings, subset, tmp_path / "sig", log=lambda line: (lines.append(line), log(line)))
    assert not res["complete"] and res["steps"] == 2  # the signal came after step 1: the next step ends it
    assert any("received SIGTERM" in line for line in lines)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    tr.train(settings, subset, tmp_path / "sig")
    assert_same(final_weights(tmp_path / "whole"), final_weights(tmp_path / "sig"))


def test_progress_hook_gets_every_progress_line(tmp_path):
    recs: list[dict] = []
    tr.train(make_settings(steps=12), make_subset(), tmp_path, log_every=3, progress=recs.append)
    assert [r["step"] for r in recs] == [1, 3, 6, 9, 12]
    last = recs[-1]
    assert last["images"] == 12 * 16 and last["total_steps"] == 12 and math.isfinite(last["loss"])
    assert 0 <= last["ema_beta"] < 1 and last["lr"] == pytest.approx(2e-3) and last["images_per_s"] > 0


def test_nan_guard_keeps_last_good_state(tmp_path, monkeypatch):
    subset = make_subset()
    real_make_loss = diffusion.make_loss

    def nan_make_loss(cfg):
        loss, calls = real_make_loss(cfg), [0]

        def f(*args):
            calls[0] += 1
            out = loss(*args)
            return out * float("nan") if calls[0] == 8 else out

        return f

    monkeypatch.setattr(diffusion, "make_loss", nan_make_loss)
    with pytest.raises(FloatingPointError, match=r"step 8/20: loss nan.*state.pt keeps step 5"):
        tr.train(make_settings(steps=20), subset, tmp_path, log=lambda s: None)
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 5
    monkeypatch.setattr(diffusion, "make_loss", real_make_loss)
    with pytest.raises(FloatingPointError, match="non-finite"):
        no_warmup = {"unit": "images", "value": 0, "mode": "linear"}
        tr.train(make_settings(steps=20, lr=1e30, warmup=no_warmup), subset, tmp_path / "lr", log=lambda s: None)


def test_ema_decay_zero_is_raw_weights_and_state_loads_weights_only(tmp_path):
    subset = make_subset(label_dim=3)
    settings = make_settings(steps=6, snapshots=1, ema={"mode": "decay", "decay": 0.0, "rampup": None})
    settings["model"]["label_dim"] = 3
    tr.train(settings, subset, tmp_path, keep_state=True, log=lambda s: None)
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["step"] == 6 and "optimizer" in state
    assert_same(final_weights(tmp_path), state["net"])
    assert not torch.equal(
        state["net"]["enc.8x8_conv.weight"], nets.build_net(settings["model"]).state_dict()["enc.8x8_conv.weight"]
    )
    ema = {"mode": "decay", "decay": 0.9, "rampup": None}
    tr.train(
        make_settings(steps=6, snapshots=1, ema=ema) | {"model": settings["model"]},
        subset,
        tmp_path / "ema",
        keep_state=True,
        log=lambda s: None,
    )
    state = torch.load(tmp_path / "ema" / "state.pt", weights_only=True)
    assert max_diff(final_weights(tmp_path / "ema"), state["net"]) > 0


def test_loss_decreases_on_tiny_overfit(tmp_path):
    subset = make_subset(n=8)
    no_ema = {"mode": "decay", "decay": 0.0, "rampup": None}
    settings = make_settings(steps=60, batch=8, lr=5e-3, snapshots=1, ema=no_ema)
    settings["model"]["dropout"] = 0.0
    tr.train(settings, subset, tmp_path, log=lambda s: None)

    def eval_loss(state_dict=None) -> float:
        torch.manual_seed(0)
        net = nets.build_net(settings["model"])
        if state_dict is not None:
            net.load_state_dict(state_dict)
        D = diffusion.make_precond(net.eval(), settings["diffusion"])
        loss = diffusion.make_loss(settings["diffusion"])
        y = torch.from_numpy(subset["images"]).float().repeat(32, 1, 1, 1) / 127.5 - 1
        with torch.no_grad():
            return float(loss(D, y, None, torch.Generator().manual_seed(0)).mean())

    assert eval_loss(final_weights(tmp_path)) < 0.7 * eval_loss()


def test_batch_must_split_over_processes(tmp_path, monkeypatch):
    from diffmem.training import data_parallel as distributed

    monkeypatch.setattr(distributed, "setup", lambda device=None: distributed.Context(3, 0, torch.device("cpu")))
    with pytest.raises(ValueError, match="multiple of 3"):
        tr.train(make_settings(steps=2), make_subset(), tmp_path, log=lambda s: None)


# ------------------------------------------------------------------------------------------------
# Data parallel: two gloo processes on the CPU equal one process.


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digits_subset() -> dict:
    from diffmem import data

    spec = {
        "source": "digits",
        "path": None,
        "verify_md5": True,
        "resolution": 8,
        "classes": 4,
        "size": N_IMAGES,
        "labels": "none",
        "label_classes": None,
        "blend": None,
        "seed": 0,
        "pick": "random",
        "resize": "area",
    }
    return data.make_subset(spec)


def test_cli_single_process(tmp_path):
    from diffmem import data

    subset = digits_subset()
    data.save_subset(tmp_path / "subset.npz", subset)
    settings = make_settings(steps=4, snapshots=1)
    (tmp_path / "run.json").write_text(json.dumps(settings))
    args = ["--settings", str(tmp_path / "run.json"), "--subset", str(tmp_path / "subset.npz")]
    assert tr.main(args + ["--out", str(tmp_path / "cli"), "--threads", "1"]) == 0
    tr.train(settings, subset, tmp_path / "api", log=lambda s: None)
    assert_same(final_weights(tmp_path / "cli"), final_weights(tmp_path / "api"))


def test_two_process_gloo_equals_one_process(tmp_path):
    """``torchrun --nproc_per_node=2 -m diffmem.training.loop`` (gloo, loopback), each rank in rounds of a
    micro-batch of 4 of its 8 images, equals one process taking the batch of 16 at once, with dropout: every
    image gets its own masks whatever the rank and the round (rank 1 does not repeat rank 0's)."""
    from diffmem import data

    subset = digits_subset()
    settings = make_settings(steps=20, snapshots=1)
    assert settings["model"]["dropout"] > 0
    data.save_subset(tmp_path / "subset.npz", subset)
    (tmp_path / "run.json").write_text(json.dumps(settings))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "CUDA_VISIBLE_DEVICES": ""}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "diffmem.training.loop",
        "--settings",
        str(tmp_path / "run.json"),
        "--subset",
        str(tmp_path / "subset.npz"),
        "--out",
        str(tmp_path / "ddp"),
        "--threads",
        "1",
        "--micro-batch",
        "4",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = read_json(tmp_path / "ddp" / "train.json")
    assert summary["world_size"] == 2 and summary["steps"] == 20 and summary["micro_batch"] == 4
    assert "micro-batch 4 of per-GPU batch 8 (2 rounds)" in proc.stderr

    tr.train(settings, subset, tmp_path / "one", log=lambda s: None)
    single = final_weights(tmp_path / "one")
    diff = max_diff(final_weights(tmp_path / "ddp"), single)
    # equal up to float rounding, which Adam amplifies for parameters whose gradients are ~0 (< lr/4)
    assert diff < 5e-4, diff
    assert summary["loss_ema"] == pytest.approx(read_json(tmp_path / "one" / "train.json")["loss_ema"], rel=1e-4)


# ------------------------------------------------------------------------------------------------
# Precision and kernels (diffmem.science.precision; issue 13).


def test_bf16_autocast_tracks_fp32_and_keeps_float32_state(tmp_path):
    """bf16 autocast trains, its losses follow fp32's within 10% over 30 steps, and everything that is not
    the net's forward pass (weights, optimizer state, EMA, snapshots, the loss) stays float32."""
    subset = make_subset()
    curves = {}
    for prec in ("fp32", "bf16"):
        records: list[dict] = []
        settings = make_settings(steps=30, precision=prec, snapshots=1)
        out = tr.train(
            settings, subset, tmp_path / prec, log=lambda s: None, log_every=1, progress=records.append, keep_state=True
        )
        assert out["precision"] == prec and out["complete"]
        curves[prec] = np.array([r["loss"] for r in records])
        state = torch_load(tmp_path / prec / "state.pt")
        for part in ("net", "ema"):
            assert {v.dtype for v in state[part].values()} == {torch.float32}, part
        opt_dtypes = {v.dtype for s in state["optimizer"]["state"].values() for k, v in s.items() if k != "step"}
        assert opt_dtypes == {torch.float32}
        assert {v.dtype for v in final_weights(tmp_path / prec).values()} == {torch.float32}
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert len(fp32) == len(bf16) == 30 and np.isfinite(bf16).all()
    assert not np.array_equal(fp32, bf16)  # bf16 really ran in another precision
    assert np.abs(bf16 - fp32).max() <= 0.10 * fp32.max()
    assert abs(bf16[-10:].mean() - fp32[-10:].mean()) <= 0.10 * fp32[-10:].mean()


def test_tf32_is_fp32_on_the_cpu_and_the_old_key_is_refused(tmp_path):
    subset = make_subset()
    quiet = dict(log=lambda s: None)
    tr.train(make_settings(steps=6), subset, tmp_path / "none", **quiet)  # no key: fp32
    tr.train(make_settings(steps=6, precision="fp32"), subset, tmp_path / "fp32", **quiet)
    tr.train(make_settings(steps=6, precision="tf32"), subset, tmp_path / "tf32", **quiet)
    assert_same(final_weights(tmp_path / "none"), final_weights(tmp_path / "fp32"))
    assert_same(final_weights(tmp_path / "fp32"), final_weights(tmp_path / "tf32"))
    with pytest.raises(ValueError, match="train.precision: expected one of fp32, tf32, bf16"):
        tr.train(make_settings(steps=6, precision="fp16"), subset, tmp_path / "fp16", **quiet)
    with pytest.raises(ValueError, match="train.tf32 was replaced by train.precision"):
        tr.train(make_settings(steps=6, tf32=True), subset, tmp_path / "old", **quiet)


def test_adam_kernel_equals_the_per_parameter_loop_on_the_cpu():
    """The optimizer the runs use (multi-tensor Adam/AdamW on the CPU) gives the per-parameter loop's bits."""
    for kind, wd in (("adam", 0.0), ("adam", 0.01), ("adamw", 0.01)):
        t = {**make_settings()["train"], "optimizer": kind, "weight_decay": wd}
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        finals = []
        for loop in (False, True):
            torch.manual_seed(0)
            net = nets.build_net(make_settings()["model"])
            ps = list(net.parameters())
            opt = (
                cls(ps, lr=t["lr"], betas=t["betas"], eps=t["eps"], weight_decay=wd, foreach=False)
                if loop
                else optim.make_optimizer(ps, t, torch.device("cpu"))
            )
            g = torch.Generator().manual_seed(1)
            for _ in range(10):
                for p in net.parameters():
                    p.grad = torch.randn(p.shape, generator=g)
                opt.step()
            finals.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        assert_same(*finals)
    assert optim.make_optimizer([torch.zeros(2, requires_grad=True)], t, torch.device("cpu")).defaults["foreach"]


def test_channels_last_and_compile_train_the_same_run_within_float_tolerance(tmp_path, monkeypatch):
    """Same formulas in other kernels: without dropout the losses of every step agree with the plain run's
    to float tolerance (with dropout, channels-last draws its masks in memory order: other draws of the
    same distribution), snapshots are plain contiguous state dicts, and a channels-last run resumes bit
    for bit."""
    subset = make_subset()
    quiet = dict(log=lambda s: None, log_every=1)

    def losses(name: str, **train_keys) -> np.ndarray:
        records: list[dict] = []
        settings = make_settings(steps=10, checkpoint_every=5, **train_keys)
        settings["model"]["dropout"] = 0.0
        tr.train(settings, subset, tmp_path / name, progress=records.append, **quiet)
        return np.array([r["loss"] for r in records])

    ref = losses("plain")
    assert len(ref) == 10
    np.testing.assert_allclose(losses("cl", channels_last=True), ref, rtol=1e-4)
    assert all(v.is_contiguous() for v in final_weights(tmp_path / "cl").values())

    cl = make_settings(steps=10, checkpoint_every=5, channels_last=True)  # dropout 0.1
    tr.train(cl, subset, tmp_path / "cl-whole", **quiet)
    tr.train(cl, subset, tmp_path / "cl-resumed", max_steps=4, **quiet)
    tr.train(cl, subset, tmp_path / "cl-resumed", **quiet)
    assert_same(final_weights(tmp_path / "cl-whole"), final_weights(tmp_path / "cl-resumed"))

    # the compile path, with torch.compile's graph capture but eager kernels (inductor itself: test_nets.py)
    compiled = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **k: compiled.append(m) or real_compile(m, backend="eager"))
    np.testing.assert_allclose(losses("compiled", compile=True), ref, rtol=1e-4)
    assert len(compiled) == 1 and isinstance(compiled[0], nets.SongUNet)
    assert final_weights(tmp_path / "compiled").keys() == final_weights(tmp_path / "plain").keys()  # no _orig_mod.


def test_sampling_in_bf16_gives_uint8_images_close_to_fp32(tmp_path):
    subset = make_subset()
    settings = make_settings(steps=6, snapshots=1)
    settings["sample"] = {"n": 6, "seed": 1, "batch": 4, "num_steps": 4, "sigma_min": 0.002, "sigma_max": 80, "rho": 7}
    summary = tr.train(settings, subset, tmp_path / "run", log=lambda s: None)
    assert summary["complete"]
    out = {}
    for prec in ("fp32", "bf16"):
        s = copy.deepcopy(settings)
        s["sample"]["precision"] = prec
        sample_step.sample_run(
            s, subset, tmp_path / "run" / "train.json", tmp_path / f"{prec}.npz", tmp_path / f"{prec}.png", device="cpu"
        )
        with np.load(tmp_path / f"{prec}.npz") as f:
            out[prec] = f["samples"]
    assert out["bf16"].dtype == np.uint8 and out["bf16"].shape == out["fp32"].shape == (1, 6, 1, 8, 8)
    assert not np.array_equal(out["bf16"], out["fp32"])  # the net did run in bfloat16
    diff = np.abs(out["bf16"].astype(int) - out["fp32"].astype(int))
    assert diff.mean() < 8  # the same samples up to bfloat16 rounding (uint8 levels)
