"""One training run in memory: the net, its EMA, the optimizer, the data and the random streams, with the
step, save, resume and summary operations that :func:`diffmem.training.loop.train` strings together.

A step (:meth:`Run.train_step`): the global batch's indices from the :class:`~diffmem.training.streams.
IndexStream`, its images scaled to [-1, 1] (augmented when ``train.augment`` says so), the learning rate of
the schedule, the loss of ``settings["diffusion"]`` with dropout seeded by (seed, step), a check that loss
and gradient norm are finite (else ``FloatingPointError`` naming the step state.pt keeps), gradient
clipping, the optimizer step, the EMA update.

A process whose share of the batch does not fit its GPU at once runs it in rounds of a micro-batch (the
released code's ``--batch-gpu``) and accumulates the gradients: every round draws the same streams for the
whole batch and evaluates its own rows (:mod:`~diffmem.training.data_parallel`), so the step equals the
whole batch's up to float rounding, and a micro-batch of the whole share is the one-pass step, bit for bit.

The state records the GPU model (``device_name``); a resume on another model, or on another device type, says
so in the log, and the optimizer takes this device's kernels (:func:`~diffmem.training.optim.load_optimizer`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from diffmem.io import read_json, torch_save, write_json
from diffmem.science import augment, diffusion, nets
from diffmem.science import precision as dmprec
from diffmem.science.schedule import ema_beta, lr_at
from diffmem.training import data_parallel as distributed
from diffmem.training import state as st
from diffmem.training.optim import (
    clip_gradients,
    copy_buffers,
    grad_norm,
    load_optimizer,
    make_optimizer,
    set_lr,
    update_ema,
)
from diffmem.training.progress import smooth_loss
from diffmem.training.streams import STREAM_AUGMENT, STREAM_DROPOUT, STREAM_INIT, STREAM_NOISE, IndexStream, derive_seed

__all__ = ["Run", "check_subset", "device_name"]


def device_name(dev: torch.device) -> str:
    """The GPU model of ``dev`` (``torch.cuda.get_device_name``), "cpu" on the CPU."""
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def check_subset(settings: Mapping[str, Any], subset: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """(images uint8 NCHW at the net's side, conditioning labels, label count) of a subset, checked against
    the net."""
    images = np.asarray(subset["images"])
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"subset images: expected uint8 NCHW, got {images.dtype} {images.shape}")
    n = images.shape[0]
    label_dim = int(subset.get("label_dim", 0) or 0)
    model_label_dim = int(settings["model"].get("label_dim", 0) or 0)
    if label_dim != model_label_dim:
        raise ValueError(f"subset label_dim {label_dim} differs from model.label_dim {model_label_dim}")
    cond = np.asarray(subset.get("cond_labels", np.full(n, -1)), dtype=np.int64)
    if label_dim and (cond.shape != (n,) or cond.max(initial=-1) >= label_dim):
        raise ValueError(f"subset cond_labels: expected {n} labels in -1..{label_dim - 1}")
    from diffmem.data.images import to_net_resolution  # a net larger than the data: pixel repetition

    return to_net_resolution(images, settings["model"]["resolution"]), cond, label_dim


def one_hot(cond: torch.Tensor, label_dim: int) -> torch.Tensor:
    """(N,) int64 labels -> (N, label_dim) float32 one-hot; label -1 gives a zero row (no label)."""
    out = torch.zeros(cond.shape[0], label_dim, dtype=torch.float32, device=cond.device)
    has = (cond >= 0).to(torch.float32)[:, None]
    return out.scatter_(1, cond.clamp(min=0)[:, None], has)


class Run:
    """One training run in memory: the net, its EMA, the optimizer, the data and the random streams, with
    the step, save, resume and summary operations that :func:`~diffmem.training.loop.train` strings together.

    The caller sets ``ckpt_every`` (steps between resumable states; 0: at snapshots only) and calls
    :meth:`start_clock` before the first step. ``micro_batch``: images per pass of this process (None: its
    whole share of the batch).
    """

    def __init__(self, settings, images_np, cond_np, label_dim, ctx, plan, rates, out_dir, hashes, micro_batch=None):
        t_cfg = settings["train"]
        self.settings, self.t_cfg, self.ctx, self.dev = settings, t_cfg, ctx, ctx.device
        self.plan, self.rates, self.out_dir = plan, rates, out_dir
        self.shash, self.dhash = hashes
        self.seed = int(t_cfg["seed"])
        self.batch, self.total, self.n_images = plan["batch"], plan["steps"], images_np.shape[0]
        self.lo, self.hi = distributed.batch_slice(ctx, self.batch)
        self.rounds = distributed.micro_rounds(self.lo, self.hi, micro_batch)  # the rows of each pass
        self.micro = self.rounds[0][1] - self.rounds[0][0]
        self.whole = len(self.rounds) == 1 and not ctx.distributed  # one pass over the whole batch
        self.snap_index = {s: k for k, s in enumerate(plan["snapshot_steps"])}
        self.stream = IndexStream(self.n_images, self.seed, t_cfg.get("order"))  # refuses a bad order
        self.label_dim = label_dim
        self.augment_cfg = augment.for_model(t_cfg.get("augment"), settings["model"])  # p = 0: off
        self.precision = dmprec.check(t_cfg.get("precision"), "train.precision")
        self.layout = torch.channels_last if t_cfg.get("channels_last") else torch.contiguous_format
        self._build_nets()
        self.opt = make_optimizer(self.params, t_cfg, self.dev)
        self.noise_gen = torch.Generator(device=self.dev)
        self.noise_gen.manual_seed(derive_seed(self.seed, STREAM_NOISE))
        self.images = torch.from_numpy(np.ascontiguousarray(images_np)).to(self.dev)
        self.cond = torch.from_numpy(cond_np).to(self.dev) if label_dim else None

        self.step, self.loss_ema, self.wall_before, self.resumed_from = 0, None, 0.0, []
        self.snapshots: list[dict[str, Any]] = []
        self.ckpt_every = 0
        self.t0 = self.start_step = None

    def _build_nets(self) -> None:
        """The net (initial weights from the seed's init stream), its EMA copy, the denoiser and the loss."""
        torch.manual_seed(derive_seed(self.seed, STREAM_INIT))
        self.net = nets.build_net(self.settings["model"])
        self.n_params = sum(p.numel() for p in self.net.parameters())
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.net.to(self.dev, memory_format=self.layout).train()
        self.ema.to(self.dev, memory_format=self.layout)
        forward = torch.compile(self.net) if self.t_cfg.get("compile") else self.net  # same parameters
        D = diffusion.make_precond(forward, self.settings["diffusion"]).to(self.dev)
        self.loss_fn = diffusion.make_loss(self.settings["diffusion"])
        self.denoise = distributed.wrap_denoiser(D, self.ctx, self.batch, self.whole)
        self.params = list(self.net.parameters())
        self.ema_params = list(self.ema.parameters())  # the same tensors for the whole run (resume copies into them)
        self.buffers, self.ema_buffers = list(self.net.buffers()), list(self.ema.buffers())
        if len(self.ema_params) != len(self.params) or len(self.ema_buffers) != len(self.buffers):
            raise RuntimeError("the EMA net's parameters or buffers do not match the net's")

    # ------------------------------------------------------------------------------------ resume
    def resume(self, state: Mapping[str, Any], say: Callable[[str], None]) -> None:
        """Continue from a saved state: weights, EMA, optimizer, noise stream, counters, snapshots so far."""
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        load_optimizer(self.opt, state["optimizer"])  # this device's kernels, not the saved ones
        self.step = int(state["step"])
        self.loss_ema = None if math.isnan(float(state["loss_ema"])) else float(state["loss_ema"])
        self.wall_before = float(state["wall_s"])
        self.resumed_from = [int(s) for s in state["resumed_from"]] + [self.step]
        self._restore_noise(state["rng"], say)
        here, there = device_name(self.dev), state.get("device_name")
        if there is not None and there != here and state["rng"]["device_type"] == self.dev.type:
            say(
                f"state.pt was written on {there}, resuming on {here}: other kernels, so the result will differ "
                "from an uninterrupted run by rounding"
            )
        for s_done, k in self.snap_index.items():
            meta_path = self.out_dir / st.snapshot_file(k, "json")
            if s_done <= self.step and meta_path.exists():
                self.snapshots.append(st.snapshot_entry(read_json(meta_path)))

    def _restore_noise(self, rng: Mapping[str, Any], say: Callable[[str], None]) -> None:
        """The noise generator where the state left it; re-seeded by (seed, step) from another device type."""
        if rng["device_type"] == self.dev.type:
            self.noise_gen.set_state(rng["noise"])
            return
        self.noise_gen.manual_seed(derive_seed(self.seed, STREAM_NOISE, self.step))
        say(
            f"state.pt was written on {rng['device_type']}, resuming on {self.dev.type}: "
            "the noise stream is re-seeded, so the result will differ from an uninterrupted run"
        )

    # -------------------------------------------------------------------------------------- step
    def start_clock(self) -> None:
        """This call's loop begins now, at the current step: speed and wall time count from here."""
        self.t0 = time.perf_counter()
        self.start_step = self.step

    def augment(self, y: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's batch augmented as ``train.augment`` says, and the loss's keyword for its augmentation
        labels ({} when off)."""
        if not augment.enabled_kinds(self.augment_cfg):
            return y, {}
        y, labels = augment.augment(y, self.augment_cfg, derive_seed(self.seed, STREAM_AUGMENT, step))
        return y, {"augment_labels": labels}

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """Step ``step``'s global batch: images in [-1, 1] (augmented), one-hot labels or None, the loss's
        augmentation keyword."""
        idx = self.stream.take(step * self.batch, self.batch).to(self.dev)
        y = (self.images[idx].to(torch.float32) / 127.5 - 1).contiguous(memory_format=self.layout)
        labels = one_hot(self.cond[idx], self.label_dim) if self.cond is not None else None
        y, aug = self.augment(y, step)
        return y, labels, aug

    def train_step(self) -> tuple[float, float, float]:
        """One optimizer step and EMA update; (loss over the global batch, gradient norm, lr)."""
        step = self.step
        y, labels, aug = self.batch_at(step)
        lr_now = lr_at(self.rates, float(self.t_cfg["lr"]), step)
        set_lr(self.opt, lr_now)
        loss_v, gnorm_v = self._backward(y, labels, aug, step)
        if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
            raise FloatingPointError(
                f"non-finite training at step {step + 1}/{self.total}: loss {loss_v}, gradient norm {gnorm_v} "
                f"(lr {lr_now:.3g}); state.pt keeps step {self.last_saved()}"
            )
        clip_gradients(self.params, self.t_cfg.get("grad_clip"))
        self.opt.step()
        update_ema(self.ema_params, self.params, ema_beta(self.rates, step))
        copy_buffers(self.ema_buffers, self.buffers)
        self.step += 1
        self.loss_ema = smooth_loss(self.loss_ema, loss_v)
        return loss_v, gnorm_v, lr_now

    def _backward(self, y, labels, aug, step: int) -> tuple[float, float]:
        """The loss's forward and backward pass (dropout seeded by (seed, step)), in one pass or in rounds;
        (loss over the global batch, gradient norm)."""
        seed = derive_seed(self.seed, STREAM_DROPOUT, step)
        self.opt.zero_grad(set_to_none=True)
        if self.whole:
            torch.manual_seed(seed)
            with dmprec.autocast(self.dev, self.precision):  # the forward pass only (bf16: the net in bfloat16)
                per_sample = self.loss_fn(self.denoise, y, labels, self.noise_gen, **aug)
            loss = per_sample.to(torch.float32).mean()  # a no-op cast: the denoiser's output is float32 (Precond)
            loss.backward()
        else:
            loss = self._rounds(y, labels, aug, seed)
        loss_all = self.ctx.all_mean(loss.detach())
        loss_v, gnorm_v = (float(v) for v in torch.stack([loss_all, grad_norm(self.params)]).tolist())
        return loss_v, gnorm_v

    def _rounds(self, y, labels, aug, seed: int) -> torch.Tensor:
        """This process's rows in rounds of the micro-batch, gradients accumulated (DDP averages them over the
        processes after the last round): each round draws the whole batch's noise levels, noise and dropout
        from the same states, evaluates its rows and backpropagates their share of this process's mean loss.
        Returns that mean loss."""
        noise_state, local = self.noise_gen.get_state(), self.hi - self.lo
        total = torch.zeros((), dtype=torch.float32, device=self.dev)
        for j, (a, b) in enumerate(self.rounds):
            self.noise_gen.set_state(noise_state)
            torch.manual_seed(seed)
            self.denoise.rows(a, b)
            last = j == len(self.rounds) - 1
            with contextlib.nullcontext() if last else self.denoise.no_sync():
                with dmprec.autocast(self.dev, self.precision):
                    per_sample = self.loss_fn(self.denoise, y, labels, self.noise_gen, **aug)
                part = per_sample.to(torch.float32)[a:b].sum() / local
                part.backward()
            total += part.detach()
        return total

    def last_saved(self) -> int | None:
        """The step the newest state.pt holds (None: none written yet)."""
        return st.last_saved(self.step, self.ckpt_every, self.plan["snapshot_steps"], self.start_step)

    # ------------------------------------------------------------------------------------ saving
    def save_state(self) -> None:
        """state.pt (everything a resume needs) and progress.json (what the next job's budget reads)."""
        if not self.ctx.is_main:
            return
        at = self.step
        torch_save(
            {
                "format": st.STATE_FORMAT, "settings_hash": self.shash, "subset_hash": self.dhash,
                "step": at, "images_seen": at * self.batch, "wall_s": self.wall_s(),
                "loss_ema": float("nan") if self.loss_ema is None else self.loss_ema,
                "resumed_from": self.resumed_from, "net": st.cpu_state(self.net), "ema": st.cpu_state(self.ema),
                "optimizer": self.opt.state_dict(),
                "rng": {"device_type": self.dev.type, "noise": self.noise_gen.get_state()},
                "device_name": device_name(self.dev),
            },
            self.out_dir / st.STATE_FILE,
        )  # fmt: skip
        done = at - self.start_step
        speed = done / max(time.perf_counter() - self.t0, 1e-9) if done else None
        write_json(
            self.out_dir / st.PROGRESS_FILE,
            {"step": at, "total_steps": self.total, "steps_per_s": speed,
             "images_per_s": speed * self.batch if speed else None, "resumed_from": self.resumed_from},
        )  # fmt: skip

    def save_snapshot(self, last_loss: float) -> None:
        """The EMA net at this step as snapshot-KKK.pt with its metadata."""
        at = self.step
        k = self.snap_index[at]
        meta = {
            "k": k, "step": at, "images_seen": at * self.batch, "epochs": at * self.batch / self.n_images,
            "loss_ema": self.loss_ema, "loss_last": last_loss, "file": st.snapshot_file(k, "pt"),
            "settings_hash": self.shash, "subset_hash": self.dhash, "settings": self.settings,
        }  # fmt: skip
        self.snapshots.append(st.snapshot_entry(meta))
        if self.ctx.is_main:
            torch_save(st.cpu_state(self.ema), self.out_dir / meta["file"])
            write_json(self.out_dir / st.snapshot_file(k, "json"), meta)

    # ----------------------------------------------------------------------------------- summary
    def wall_s(self) -> float:
        """Training time of all calls so far (this call's loop included)."""
        return self.wall_before + (time.perf_counter() - self.t0)

    def images_per_s(self) -> float:
        """This call's speed."""
        return (self.step - self.start_step) * self.batch / max(time.perf_counter() - self.t0, 1e-9)

    def summary(self, deterministic: bool) -> dict[str, Any]:
        """train.json's record: counts, snapshots, running loss, time and speed, device, hashes, settings."""
        dev = self.dev
        return {
            "complete": self.step >= self.total, "steps": self.step, "total_steps": self.total,
            "batch": self.batch, "images": self.step * self.batch, "epochs": self.step * self.batch / self.n_images,
            "n_images": self.n_images, "snapshots": self.snapshots, "loss_ema": self.loss_ema,
            "wall_s": self.wall_s(), "images_per_s": self.images_per_s(), "device": str(dev),
            "device_name": device_name(dev), "micro_batch": self.micro,
            "threads": torch.get_num_threads(), "world_size": self.ctx.world_size,
            "precision": self.precision, "deterministic": deterministic, "n_params": self.n_params,
            "resumed_from": self.resumed_from, "settings_hash": self.shash, "subset_hash": self.dhash,
            "settings": self.settings,
        }  # fmt: skip
