"""Micro-batches with gradient accumulation (issue 22): a step in rounds equals the whole batch's step, every
image gets the same random draws whatever the slicing (micro-batch rounds, data-parallel ranks), the plan
picks the micro-batch that fits compute.gpu_memory_gb without changing a run id; and the resume fixes of the
same issue (the optimizer's kernel follows the device, the GPU model is recorded and a change is logged)."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from runs import assert_same, final_weights, make_settings, make_subset

from diffmem.errors import ConfigError
from diffmem.io import torch_load, torch_save
from diffmem.plan import config as dmc
from diffmem.plan import cost
from diffmem.plan.plan import Plan
from diffmem.plan.records import micro_batch
from diffmem.science import augment
from diffmem.science.schedule import rate_plan, training_plan
from diffmem.training import data_parallel as distributed
from diffmem.training import loop as tr
from diffmem.training import optim
from diffmem.training import run as run_module
from diffmem.training.run import Run, check_subset
from diffmem.training.streams import RowDraws, forked_global_rng

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
BATCH = 16  # make_settings' train.batch
AUG = {"p": 0.5, **{k: 1.0 for k in augment.KINDS}}


def busy_settings() -> dict:
    """The tests' tiny run with every per-image random stream on: dropout 0.1, label dropout, augmentation."""
    s = make_settings(steps=8, augment=AUG)
    s["model"].update(augment_dim=augment.augment_dim(AUG), label_dim=3, label_dropout=0.2)
    return s


def step_from(settings: dict, subset: dict, state: dict, out: Path, micro: int | None):
    """One step of a run resumed from ``state``: (loss, gradient norm, gradients, weights after the step)."""
    ctx = distributed.setup("cpu")
    images, cond, label_dim = check_subset(settings, subset)
    n = images.shape[0]
    plan, rates = training_plan(settings["train"], n), rate_plan(settings["train"], n)
    with forked_global_rng(ctx.device):
        run = Run(settings, images, cond, label_dim, ctx, plan, rates, out, ("s", "d"), micro)
        run.resume(copy.deepcopy(state), lambda line: None)  # the optimizer's moments would be shared otherwise
        y, labels, aug = run.batch_at(run.step)
        loss, gnorm = run._backward(y, labels, aug, run.step)
        grads = [p.grad.clone() for p in run.params]
        run.opt.step()
        return loss, gnorm, grads, [p.detach().clone() for p in run.params]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> tuple[dict, dict, dict, Path, tuple]:
    """A state after 4 steps (dropout and label dropout matter once the output layer is no longer zero) and
    the whole batch's next step from it."""
    out = tmp_path_factory.mktemp("acc")
    settings, subset = busy_settings(), make_subset(label_dim=3)
    tr.train(settings, subset, out, max_steps=4, log=lambda line: None)
    state = torch_load(out / "state.pt")
    return settings, subset, state, out, step_from(settings, subset, state, out, None)


@pytest.mark.parametrize("micro", [1, 2, BATCH // 2])
def test_rounds_accumulate_to_the_whole_batch_step(resumed, micro):
    """Gradients summed over rounds of ``micro`` images equal the whole batch's, and so does one Adam step.
    Tolerances: the same float32 terms summed in other groupings (per round, then across rounds), so each
    gradient element may differ by a few ulps of the largest gradient (1e-6 of it; the whole batch with
    another dropout draw differs by ~5e-3 of it). Adam divides by sqrt(v) + eps, which turns the relative
    rounding of a near-zero gradient into up to that relative change of lr: 1% of lr for the weights."""
    settings, subset, state, out, whole = resumed
    loss, gnorm, grads, weights = step_from(settings, subset, state, out, micro)
    top = max(float(g.abs().max()) for g in whole[2])
    assert loss == pytest.approx(whole[0], rel=1e-6) and gnorm == pytest.approx(whole[1], rel=1e-5)
    for g, ref in zip(grads, whole[2], strict=True):
        assert torch.allclose(g, ref, rtol=1e-5, atol=1e-6 * top), float((g - ref).abs().max())
    lr = float(settings["train"]["lr"])
    for w, ref in zip(weights, whole[3], strict=True):
        assert torch.allclose(w, ref, rtol=0, atol=1e-2 * lr), float((w - ref).abs().max())


def test_rounds_with_other_dropout_draws_would_not_pass(resumed, monkeypatch):
    """The check above can fail: without cutting the whole batch's draws to the rows, the rounds draw other
    dropout masks and the gradients differ far beyond the tolerance."""
    settings, subset, state, out, whole = resumed
    monkeypatch.setattr(distributed, "RowDraws", lambda *a: contextlib.nullcontext())
    _, _, grads, _ = step_from(settings, subset, state, out, 2)
    top = max(float(g.abs().max()) for g in whole[2])
    assert max(float((g - ref).abs().max()) for g, ref in zip(grads, whole[2], strict=True)) > 1e-4 * top


def test_one_round_of_the_whole_batch_is_bit_identical_and_the_job_says_how_it_batches(tmp_path):
    settings, subset = busy_settings(), make_subset(label_dim=3)
    lines: list[str] = []
    tr.train(settings, subset, tmp_path / "plain", log=lambda line: None)
    tr.train(settings, subset, tmp_path / "whole", log=lines.append, micro_batch=BATCH)
    assert_same(final_weights(tmp_path / "plain"), final_weights(tmp_path / "whole"))
    assert f"micro-batch {BATCH} of per-GPU batch {BATCH} (1 round)" in lines
    lines.clear()
    summary = tr.train(settings, subset, tmp_path / "rounds", log=lines.append, micro_batch=4, max_steps=2)
    assert "micro-batch 4 of per-GPU batch 16 (4 rounds)" in lines and summary["micro_batch"] == 4
    with pytest.raises(ValueError, match="must divide the per-GPU batch 16"):
        tr.train(settings, subset, tmp_path / "bad", log=lambda line: None, micro_batch=5)


def test_row_draws_give_each_image_its_whole_batch_draws():
    """Dropout masks and label dropout's draws of rows lo:hi are the whole batch's rows, for every slicing
    and memory layout, so two ranks (or rounds) never repeat each other's masks; other global draws are
    refused; draws from an explicit generator pass through."""
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(8, 3, 4, 4).contiguous(memory_format=layout)
        torch.manual_seed(5)
        whole, labels = F.dropout(x, 0.3, True), torch.rand(8, 1)
        for lo, hi in ((0, 8), (0, 4), (4, 8), (3, 5), (7, 8)):
            torch.manual_seed(5)
            with RowDraws(lo, hi, 8):
                part, part_labels = F.dropout(x[lo:hi], p=0.3, training=True), torch.rand(hi - lo, 1)
            assert torch.equal(part, whole[lo:hi]) and torch.equal(part_labels, labels[lo:hi])
    # the same seed on two ranks: rank 1's masks are rows 4:8 of the batch, not rank 0's again
    assert not torch.equal((whole[:4] == 0), (whole[4:] == 0))
    with RowDraws(0, 4, 8), pytest.raises(NotImplementedError, match="randn"):
        torch.randn(4, 3)
    gen = torch.Generator().manual_seed(1)
    with RowDraws(0, 4, 8):
        drawn = torch.randn(4, 3, generator=gen)
    assert torch.equal(drawn, torch.randn(4, 3, generator=torch.Generator().manual_seed(1)))


# ------------------------------------------------------------------------------------------------
# The plan: compute.gpu_memory_gb picks the micro-batch; run ids do not move.


def paper(gpu_memory_gb) -> dict:
    cfg = dmc.load_config([str(ROOT / "config" / "paper.yaml")])
    cfg["compute"]["gpu_memory_gb"] = gpu_memory_gb
    return cfg


def test_paper_preset_plans_every_training_within_80_gb_and_ids_do_not_depend_on_it():
    cfg = paper(80)
    plan = Plan.build(cfg, check_files=False)
    depth = plan.value("depth", "12")
    size = max(depth.sizes) if depth.mode == "sizes" else int(depth.emm["hi"])
    assert plan.train_micro_batch(depth.run_id, size) == 128
    assert plan.train_micro_batch(plan.value("basic", "base").run_id, 1000) == 512  # the paper's net: all at once
    # the job computes the same from its run.json and the config
    assert micro_batch(plan.run_json(depth.run_id, size), cfg) == 128
    # operational: no run id changes with the GPU memory
    unlimited = Plan.build(paper(None), check_files=False)
    assert [v.run_id for v in unlimited.every_value()] == [v.run_id for v in plan.every_value()]
    assert unlimited.train_micro_batch(depth.run_id, size) == 512
    # cost shows how each experiment batches (cost.estimate's rows; the whole estimate replays every search)
    batching = cost.batching(plan.values["depth"], cfg, 1)
    assert batching == {"gpus_per_run": 1, "micro_batch": [128, 512], "per_gpu_batch": [512, 512]}
    assert cost.batching(plan.values["optimum"], cfg, 1) is None
    row = cost.format_table({"device": "h200", "speed": 1.0, "gpus_per_run": 1, "total": res_of({}),
                             "experiments": {"depth": {"values": 6, "batching": batching, **res_of({})}}})  # fmt: skip
    assert "1 x 128..512/512" in row.splitlines()[4]


def res_of(_: dict) -> dict:
    """An estimate's fewest/most entry with zero counts."""
    zero = {"runs": 0, "images": 0, "samples": 0, "train_h": 0.0, "sample_h": 0.0, "score_h": 0.0}
    return {"fewest": zero, "most": zero}


def test_a_gpu_too_small_for_one_image_is_refused_before_any_job():
    with pytest.raises(ConfigError, match=r"experiments\.\w+ value .*compute\.gpu_memory_gb is 2\.1"):
        Plan.build(paper(2.1), check_files=False)


# ------------------------------------------------------------------------------------------------
# Resume across devices: the optimizer's kernel, the GPU model.


def test_a_fused_state_resumes_with_the_cpu_kernel():
    """A state saved by fused Adam (CUDA) loads into the CPU's foreach Adam without carrying ``fused``."""
    p = torch.nn.Parameter(torch.ones(3))
    t = {"optimizer": "adam", "lr": 1e-3}
    cpu = optim.make_optimizer([p], t, torch.device("cpu"))
    p.grad = torch.ones(3)
    cpu.step()
    saved = cpu.state_dict()
    saved["param_groups"][0].update(fused=True, foreach=None)  # what a CUDA run saves
    fresh = optim.make_optimizer([p], t, torch.device("cpu"))
    optim.load_optimizer(fresh, saved)
    group = fresh.param_groups[0]
    assert group["foreach"] is True and not group["fused"]
    assert torch.equal(fresh.state[p]["exp_avg"], cpu.state[p]["exp_avg"])


def test_resume_records_the_gpu_model_says_when_it_changes_and_drops_fused(tmp_path, monkeypatch):
    settings, subset = make_settings(steps=10, checkpoint_every=5), make_subset()
    tr.train(settings, subset, tmp_path / "ref", log=lambda line: None)
    monkeypatch.setattr(run_module, "device_name", lambda dev: "NVIDIA A100-SXM4-80GB")
    tr.train(settings, subset, tmp_path / "moved", max_steps=5, log=lambda line: None)
    state = torch_load(tmp_path / "moved" / "state.pt")
    assert state["device_name"] == "NVIDIA A100-SXM4-80GB"
    for group in state["optimizer"]["param_groups"]:
        group.update(fused=True, foreach=None)  # as fused Adam on CUDA saves it
    torch_save(state, tmp_path / "moved" / "state.pt")
    monkeypatch.setattr(run_module, "device_name", lambda dev: "NVIDIA H200")
    lines: list[str] = []
    tr.train(settings, subset, tmp_path / "moved", log=lines.append)
    assert any("written on NVIDIA A100-SXM4-80GB, resuming on NVIDIA H200" in line for line in lines), lines
    # bit for bit the uninterrupted CPU run: the resumed steps ran the CPU's kernel, not the fused one
    assert_same(final_weights(tmp_path / "moved"), final_weights(tmp_path / "ref"))
