"""Training loop: one diffusion model on one subset, resumable, seeded, optionally data parallel.

``train(settings, subset, out_dir)`` trains the network of ``settings["model"]`` with the preconditioning
and loss of ``settings["diffusion"]`` on the images of ``subset`` (the dict of :func:`diffmem.data.
load_subset`), following ``settings["train"]``, and writes into ``out_dir``:

- ``snapshot-KKK.pt``: the EMA network's state dict at snapshot K (K = 0, 1, ...), and
  ``snapshot-KKK.json``: its step, images seen, epochs, running loss and the resolved settings;
- ``state.pt``: everything needed to resume (network, EMA, optimizer, noise generator, step), written
  atomically every ``checkpoint_every`` steps and at each snapshot; removed once training is complete;
- ``train.json``: the summary (snapshots, steps, images, wall time, speed, device, parameter count).

Randomness (all a function of ``settings["train"]["seed"]``, so a run resumed from ``state.pt`` ends with
bit-identical weights on the CPU):

- initial weights: torch's global RNG seeded once before the network is built;
- data order: an endless stream of epochs, each a permutation of the subset drawn from a generator seeded
  by (seed, epoch), or with ``train.order: fixed`` epoch 0's permutation in every epoch (the paper's
  ``--window-size=0``); batches run across epoch boundaries (as EDM's InfiniteSampler, without its window);
- noise levels and noise: one ``torch.Generator`` handed to the loss, saved and restored with the state;
- dropout: torch's global RNG re-seeded from (seed, step) before every forward pass.

Schedules (``images`` = images trained on; an epoch is ``|D|`` images):

- length ``duration = {unit: steps|epochs|images, value}`` -> ``ceil(images / batch)`` optimizer steps;
- learning rate: linear warm-up (``train.warmup.mode``), and
- EMA of the weights (``train.ema.mode``: a per-step decay with EDM's ramp-up, or the paper's code's
  ramp): both per step from :mod:`diffmem.science.schedule` (``lr_at``, ``ema_beta``), which has the formulas.

Under ``torchrun`` (``WORLD_SIZE > 1``) each process trains on one slice of every global batch and
DistributedDataParallel averages the gradients. Every rank draws the whole global batch's indices, noise
levels and noise from the same generators and evaluates the network on its slice only, so the run equals
the single-process run up to floating-point rounding (dropout masks excepted: with dropout > 0 each rank
draws masks for its slice, which is the same distribution but not the same draws). Only rank 0 writes.

Numerics: ``settings["train"]["precision"]`` (:mod:`diffmem.science.precision`): ``fp32`` (the paper's; TF32 off on
CUDA), ``tf32`` (TF32 matmuls and convolutions on CUDA), or ``bf16`` (bfloat16 autocast around the loss's
forward pass; weights, gradients, optimizer state, EMA and the loss's mean stay float32). On CUDA cuDNN
autotunes its kernels, so CUDA reruns differ at the ~1e-5 level; ``deterministic=True`` (``--deterministic``)
selects deterministic kernels, which made CUDA reruns and resumes bit-identical in a check on an H200.

Kernels that change no formula: Adam/AdamW use torch's fused kernel on CUDA and the multi-tensor (foreach)
one on the CPU (bit-identical to the per-parameter loop there; the fused CPU kernel differs by ~1 ulp).
``train.channels_last`` stores the net's weights and activations channels-last (NHWC; a CUDA speed-up for
convolutions, slower on the CPU), ``train.compile`` runs the net through ``torch.compile`` (minutes of
compilation, then faster steps on a GPU; not worth it for the CPU default's short runs). Both change the
rounding only (outputs equal the eager net within float tolerance, tests/test_nets.py) and are part of
the run's identity like every train key. Snapshots hold plain contiguous float32 state dicts either way.

Command line (also for ``torchrun --nproc_per_node=N -m diffmem.training.loop ...``)::

    python -m diffmem.training.loop --settings run.json --subset subset.npz --out DIR [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diffmem import data
from diffmem.io import read_json, record_path, torch_load, torch_save, write_json
from diffmem.plan import identity
from diffmem.science import augment, diffusion, nets
from diffmem.science import precision as dmprec
from diffmem.science.schedule import ema_beta, lr_at, rate_plan, training_plan
from diffmem.training import data_parallel as distributed
from diffmem.training import metrics

__all__ = ["SettingsMismatchError", "main", "subset_fingerprint", "train"]

logger = logging.getLogger(__name__)

STATE_FORMAT = 1
STATE_FILE = "state.pt"
SUMMARY_FILE = "train.json"
HISTORY_FILE = "history.log"  # every attempt's log lines, kept across the links of a chain
PROGRESS_FILE = "progress.json"  # step, total and speed at every state save (the next job's budget)
LOG_EVERY_S = 10.0  # Progress is logged at least this often (seconds)...
LOG_LINES = 20  # ...and about this many times per run.
LOSS_EMA_BETA = 0.98  # Smoothing of the running loss reported in logs and snapshots.


# Independent random streams derived from the seed.
_STREAM_INIT, _STREAM_ORDER, _STREAM_NOISE, _STREAM_DROPOUT = 1, 2, 3, 4
_STREAM_AUGMENT = 5  # train.augment: the step's augmentations (diffmem.science.augment), seeded by (seed, step)


class SettingsMismatchError(RuntimeError):
    """``out_dir`` holds training output of other settings or another subset; nothing is overwritten."""


# ----------------------------------------------------------------------------------------------------
# Identity of a run's inputs (the settings' identity is diffmem.plan.identity.train_digest).


def subset_fingerprint(subset: Mapping[str, Any]) -> str:
    """SHA-256 of what training reads from a subset: images, conditioning labels, label count."""
    h = hashlib.sha256()
    images = np.ascontiguousarray(subset["images"])
    h.update(str((images.shape, str(images.dtype), int(subset.get("label_dim", 0)))).encode())
    h.update(images.tobytes())
    cond = subset.get("cond_labels")
    if cond is not None:
        h.update(np.ascontiguousarray(np.asarray(cond, dtype=np.int64)).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Randomness.


def _derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (independent streams for (seed, stream, index) tuples)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


class IndexStream:
    """The global order of training images: concatenated seeded permutations of range(n), one per epoch.

    ``order="reshuffle"`` draws a new permutation for every epoch (seeded by (seed, epoch));
    ``order="fixed"`` reuses epoch 0's permutation in every epoch, as the paper's code does with
    ``--window-size=0`` (EDM's InfiniteSampler without its window swaps).
    """

    ORDERS = ("reshuffle", "fixed")

    def __init__(self, n: int, seed: int, order: str):
        if order not in self.ORDERS:
            raise ValueError(f"train.order: expected one of {', '.join(self.ORDERS)}, got {order!r}")
        self.n = n
        self.seed = seed
        self.order = order
        self._gen = torch.Generator()
        self._cache: dict[int, torch.Tensor] = {}

    def epoch(self, e: int) -> torch.Tensor:
        if self.order == "fixed":
            e = 0
        perm = self._cache.get(e)
        if perm is None:
            self._gen.manual_seed(_derive_seed(self.seed, _STREAM_ORDER, e))
            perm = torch.randperm(self.n, generator=self._gen)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[e] = perm
        return perm

    def take(self, start: int, count: int) -> torch.Tensor:
        """Indices at positions ``start .. start + count - 1`` of the stream."""
        out = []
        pos, end = start, start + count
        while pos < end:
            e, i = divmod(pos, self.n)
            j = min(self.n, i + end - pos)
            out.append(self.epoch(e)[i:j])
            pos += j - i
        return torch.cat(out)


# ----------------------------------------------------------------------------------------------------
# Pieces of the loop.


def _log_function(log: Any) -> Callable[[str], None]:
    if log is None:
        return logger.info
    if hasattr(log, "info"):
        return log.info
    if callable(log):
        return log
    raise TypeError(f"log: expected a logging.Logger or a callable taking a string, got {type(log).__name__}")


def _make_optimizer(params, t: Mapping[str, Any], device: torch.device | None = None) -> torch.optim.Optimizer:
    """The optimizer of ``t`` (the train settings). Adam/AdamW run torch's fused kernel on CUDA (one launch
    for all parameters) and the multi-tensor kernel elsewhere, which equals the per-parameter loop bit for
    bit on the CPU (checked in tests/test_train.py); the fused CPU kernel would differ by ~1 ulp."""
    kind = t.get("optimizer", "adam")
    lr = float(t["lr"])
    wd = float(t.get("weight_decay", 0.0) or 0.0)
    if kind in ("adam", "adamw"):
        betas = tuple(float(b) for b in t.get("betas", (0.9, 0.999)))
        eps = float(t.get("eps", 1e-8))
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        impl = {"fused": True} if device is not None and device.type == "cuda" else {"foreach": True}
        return cls(params, lr=lr, betas=betas, eps=eps, weight_decay=wd, **impl)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(t.get("momentum", 0.0) or 0.0), weight_decay=wd)
    raise ValueError(f"train.optimizer: expected adam, adamw or sgd, got {kind!r}")


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the state dict in the contiguous layout (also of a channels-last net)."""
    return {
        k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
        for k, v in module.state_dict().items()
    }


@torch.no_grad()
def _update_ema(ema: Sequence[torch.Tensor], net: Sequence[torch.Tensor], beta: float) -> None:
    """``ema <- lerp(ema, net, 1 - beta)`` over the parameter lists (``beta`` 0: a copy), in one multi-tensor
    call: on the CPU the same per-tensor kernel as a loop of ``lerp_`` (bit for bit), without walking the
    modules every step (~0.4 ms a step for the default's 130 tensors). Buffers go by :func:`_copy_buffers`."""
    if beta == 0.0:
        torch._foreach_copy_(ema, net)
    else:
        torch._foreach_lerp_(ema, net, 1.0 - beta)


@torch.no_grad()
def _copy_buffers(ema: Sequence[torch.Tensor], net: Sequence[torch.Tensor]) -> None:
    for b_ema, b in zip(ema, net, strict=True):
        b_ema.copy_(b)


class _SliceDenoiser:
    """Call the (DDP-wrapped) denoiser on rows lo:hi only; other rows pass through as detached inputs.

    The loss draws noise levels and noise for the whole global batch, so every rank consumes its
    generator exactly as a single process would; only this rank's slice enters its loss.
    """

    def __init__(self, module: nn.Module, lo: int, hi: int):
        self.module, self.lo, self.hi = module, lo, hi

    def __call__(self, x: torch.Tensor, sigma, class_labels=None, *args, **kwargs):
        lo, hi = self.lo, self.hi
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        s = sigma[lo:hi] if sigma.ndim > 0 and sigma.shape[0] == x.shape[0] else sigma
        labels = None if class_labels is None else class_labels[lo:hi]
        if kwargs.get("augment_labels") is not None:
            kwargs["augment_labels"] = kwargs["augment_labels"][lo:hi]
        out = self.module(x[lo:hi], s, labels, *args, **kwargs)
        return torch.cat([x[:lo].detach(), out, x[hi:].detach()])


def _one_hot(cond: torch.Tensor, label_dim: int) -> torch.Tensor:
    """(N,) int64 labels -> (N, label_dim) float32 one-hot; label -1 gives a zero row (no label)."""
    out = torch.zeros(cond.shape[0], label_dim, dtype=torch.float32, device=cond.device)
    has = (cond >= 0).to(torch.float32)[:, None]
    return out.scatter_(1, cond.clamp(min=0)[:, None], has)


def _fmt_time(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


@contextlib.contextmanager
def _backend_flags(device: torch.device, precision: str, deterministic: bool):
    """Numerics of the run, restored afterwards.

    CUDA: TF32 matmuls and convolutions exactly when ``precision`` is ``tf32`` (~2.75x faster for the
    paper's DDPM++ on an H200, at reduced mantissa precision; :mod:`diffmem.science.precision`); cuDNN autotuning
    unless ``deterministic``. ``deterministic`` also asks torch for deterministic kernels (bit-identical
    reruns on CUDA, slower).
    """
    saved_det = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    saved_cuda = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    try:
        with dmprec.backend_flags(device, precision):
            yield
    finally:
        torch.use_deterministic_algorithms(saved_det[0], warn_only=saved_det[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_cuda


def _check_folder(out_dir: Path, shash: str, dhash: str) -> None:
    """Refuse a folder whose snapshots come from other settings or another subset."""
    for path in sorted(out_dir.glob("snapshot-*.json")):
        meta = read_json(path)
        if meta.get("settings_hash") != shash or meta.get("subset_hash") != dhash:
            raise SettingsMismatchError(
                f"{path} was written by a run with other settings or another subset; "
                f"train into an empty folder or delete {out_dir} to retrain"
            )


def _mismatch(path: Path, what: Mapping[str, Any], shash: str, dhash: str) -> SettingsMismatchError | None:
    if what.get("settings_hash") != shash:
        return SettingsMismatchError(
            f"{path} belongs to a run with other settings (hash {str(what.get('settings_hash'))[:12]}, "
            f"these are {shash[:12]}); refusing to resume or overwrite it. Use another folder or delete it."
        )
    if what.get("subset_hash") != dhash:
        return SettingsMismatchError(
            f"{path} was trained on another subset (images or labels differ); refusing to resume or "
            "overwrite it. Use another folder or delete it."
        )
    return None


# ----------------------------------------------------------------------------------------------------
# Training.


def _check_subset(settings: Mapping[str, Any], subset: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
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


class _Run:
    """One training run in memory: the net, its EMA, the optimizer, the data and the random streams, with
    the step, save, resume and summary operations that :func:`train` strings together."""

    def __init__(self, settings, images_np, cond_np, label_dim, ctx, plan, rates, out_dir, hashes):
        t_cfg = settings["train"]
        self.settings, self.t_cfg, self.ctx, self.dev = settings, t_cfg, ctx, ctx.device
        self.plan, self.rates, self.out_dir = plan, rates, out_dir
        self.shash, self.dhash = hashes
        self.seed = int(t_cfg["seed"])
        self.batch, self.total, self.n_images = plan["batch"], plan["steps"], images_np.shape[0]
        if self.batch % ctx.world_size:
            raise ValueError(
                f"train.batch {self.batch} cannot be split evenly over {ctx.world_size} processes; "
                f"use a batch that is a multiple of {ctx.world_size} or another number of processes"
            )
        local = self.batch // ctx.world_size
        self.lo, self.hi = ctx.rank * local, (ctx.rank + 1) * local
        self.snap_index = {s: k for k, s in enumerate(plan["snapshot_steps"])}
        self.stream = IndexStream(self.n_images, self.seed, t_cfg.get("order"))  # refuses a bad order
        self.label_dim = label_dim
        self.augment_cfg = augment.for_model(t_cfg.get("augment"), settings["model"])  # p = 0: off
        self.precision = dmprec.check(t_cfg.get("precision"), "train.precision")
        self.layout = torch.channels_last if t_cfg.get("channels_last") else torch.contiguous_format

        torch.manual_seed(_derive_seed(self.seed, _STREAM_INIT))
        self.net = nets.build_net(settings["model"])
        self.n_params = sum(p.numel() for p in self.net.parameters())
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.net.to(self.dev, memory_format=self.layout).train()
        self.ema.to(self.dev, memory_format=self.layout)
        forward = torch.compile(self.net) if t_cfg.get("compile") else self.net  # same parameters
        D = diffusion.make_precond(forward, settings["diffusion"]).to(self.dev)
        self.loss_fn = diffusion.make_loss(settings["diffusion"])
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ddp = DistributedDataParallel(
                D, device_ids=[self.dev.index] if self.dev.type == "cuda" else None, broadcast_buffers=False
            )
            self.denoise: Any = _SliceDenoiser(ddp, self.lo, self.hi)
        else:
            self.denoise = D
        self.params = list(self.net.parameters())
        self.ema_params = list(self.ema.parameters())  # the same tensors for the whole run (resume copies into them)
        self.buffers, self.ema_buffers = list(self.net.buffers()), list(self.ema.buffers())
        if len(self.ema_params) != len(self.params) or len(self.ema_buffers) != len(self.buffers):
            raise RuntimeError("the EMA net's parameters or buffers do not match the net's")
        self.opt = _make_optimizer(self.params, t_cfg, self.dev)
        self.noise_gen = torch.Generator(device=self.dev)
        self.noise_gen.manual_seed(_derive_seed(self.seed, _STREAM_NOISE))
        self.images = torch.from_numpy(np.ascontiguousarray(images_np)).to(self.dev)
        self.cond = torch.from_numpy(cond_np).to(self.dev) if label_dim else None

        self.step, self.loss_ema, self.wall_before, self.resumed_from = 0, None, 0.0, []
        self.snapshots: list[dict[str, Any]] = []
        self.t0 = self.start_step = None

    # ------------------------------------------------------------------------------------ resume
    def resume(self, state: Mapping[str, Any], say: Callable[[str], None]) -> None:
        """Continue from a saved state: weights, EMA, optimizer, noise stream, counters, snapshots so far."""
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.loss_ema = None if math.isnan(float(state["loss_ema"])) else float(state["loss_ema"])
        self.wall_before = float(state["wall_s"])
        self.resumed_from = [int(s) for s in state["resumed_from"]] + [self.step]
        if state["rng"]["device_type"] == self.dev.type:
            self.noise_gen.set_state(state["rng"]["noise"])
        else:
            self.noise_gen.manual_seed(_derive_seed(self.seed, _STREAM_NOISE, self.step))
            say(
                f"state.pt was written on {state['rng']['device_type']}, resuming on {self.dev.type}: "
                "the noise stream is re-seeded, so the result will differ from an uninterrupted run"
            )
        for s_done, k in self.snap_index.items():
            meta_path = self.out_dir / f"snapshot-{k:03d}.json"
            if s_done <= self.step and meta_path.exists():
                self.snapshots.append(_snapshot_entry(read_json(meta_path)))

    # -------------------------------------------------------------------------------------- step
    def augment(self, y: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's batch augmented as ``train.augment`` says, and the loss's keyword for its augmentation
        labels ({} when off)."""
        if not augment.enabled_kinds(self.augment_cfg):
            return y, {}
        y, labels = augment.augment(y, self.augment_cfg, _derive_seed(self.seed, _STREAM_AUGMENT, step))
        return y, {"augment_labels": labels}

    def train_step(self) -> tuple[float, float, float]:
        """One optimizer step and EMA update; (loss over the global batch, gradient norm, lr)."""
        step, batch = self.step, self.batch
        idx = self.stream.take(step * batch, batch).to(self.dev)
        y = (self.images[idx].to(torch.float32) / 127.5 - 1).contiguous(memory_format=self.layout)
        labels = _one_hot(self.cond[idx], self.label_dim) if self.cond is not None else None
        y, aug = self.augment(y, step)
        lr_now = lr_at(self.rates, float(self.t_cfg["lr"]), step)
        for group in self.opt.param_groups:
            group["lr"] = lr_now
        torch.manual_seed(_derive_seed(self.seed, _STREAM_DROPOUT, step))
        self.opt.zero_grad(set_to_none=True)
        with dmprec.autocast(self.dev, self.precision):  # the forward pass only (bf16: the net in bfloat16)
            per_sample = self.loss_fn(self.denoise, y, labels, self.noise_gen, **aug)
        per_sample = per_sample.to(torch.float32)  # a no-op: the denoiser's output is float32 (Precond)
        loss = per_sample[self.lo : self.hi].mean() if self.ctx.distributed else per_sample.mean()
        loss.backward()
        loss_all = self.ctx.all_mean(loss.detach())
        grads = [p.grad for p in self.params if p.grad is not None]
        gnorm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))  # = a loop of vector_norm
        loss_v, gnorm_v = (float(v) for v in torch.stack([loss_all, gnorm]).tolist())
        if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
            last = f"state.pt keeps step {self.last_saved()}"
            raise FloatingPointError(
                f"non-finite training at step {step + 1}/{self.total}: loss {loss_v}, gradient norm {gnorm_v} "
                f"(lr {lr_now:.3g}); {last}"
            )
        grad_clip = self.t_cfg.get("grad_clip")
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, float(grad_clip))
        self.opt.step()
        _update_ema(self.ema_params, self.params, ema_beta(self.rates, step))
        _copy_buffers(self.ema_buffers, self.buffers)
        self.step += 1
        old = self.loss_ema
        self.loss_ema = loss_v if old is None else LOSS_EMA_BETA * old + (1 - LOSS_EMA_BETA) * loss_v
        return loss_v, gnorm_v, lr_now

    def last_saved(self) -> int | None:
        return _last_saved(self.step, self.ckpt_every, self.plan["snapshot_steps"], self.start_step)

    # ------------------------------------------------------------------------------------ saving
    def save_state(self) -> None:
        """state.pt (everything a resume needs) and progress.json (what the next job's budget reads)."""
        if not self.ctx.is_main:
            return
        at = self.step
        torch_save(
            {
                "format": STATE_FORMAT, "settings_hash": self.shash, "subset_hash": self.dhash,
                "step": at, "images_seen": at * self.batch, "wall_s": self.wall_s(),
                "loss_ema": float("nan") if self.loss_ema is None else self.loss_ema,
                "resumed_from": self.resumed_from, "net": _cpu_state(self.net), "ema": _cpu_state(self.ema),
                "optimizer": self.opt.state_dict(),
                "rng": {"device_type": self.dev.type, "noise": self.noise_gen.get_state()},
            },
            self.out_dir / STATE_FILE,
        )  # fmt: skip
        done = at - self.start_step
        speed = done / max(time.perf_counter() - self.t0, 1e-9) if done else None
        write_json(
            self.out_dir / PROGRESS_FILE,
            {"step": at, "total_steps": self.total, "steps_per_s": speed,
             "images_per_s": speed * self.batch if speed else None, "resumed_from": self.resumed_from},
        )  # fmt: skip

    def save_snapshot(self, last_loss: float) -> None:
        """The EMA net at this step as snapshot-KKK.pt with its metadata."""
        at = self.step
        k = self.snap_index[at]
        meta = {
            "k": k, "step": at, "images_seen": at * self.batch, "epochs": at * self.batch / self.n_images,
            "loss_ema": self.loss_ema, "loss_last": last_loss, "file": f"snapshot-{k:03d}.pt",
            "settings_hash": self.shash, "subset_hash": self.dhash, "settings": self.settings,
        }  # fmt: skip
        self.snapshots.append(_snapshot_entry(meta))
        if self.ctx.is_main:
            torch_save(_cpu_state(self.ema), self.out_dir / meta["file"])
            write_json(self.out_dir / f"snapshot-{k:03d}.json", meta)

    # ----------------------------------------------------------------------------------- summary
    def wall_s(self) -> float:
        return self.wall_before + (time.perf_counter() - self.t0)

    def images_per_s(self) -> float:
        return (self.step - self.start_step) * self.batch / max(time.perf_counter() - self.t0, 1e-9)

    def summary(self, deterministic: bool) -> dict[str, Any]:
        dev = self.dev
        return {
            "complete": self.step >= self.total, "steps": self.step, "total_steps": self.total,
            "batch": self.batch, "images": self.step * self.batch, "epochs": self.step * self.batch / self.n_images,
            "n_images": self.n_images, "snapshots": self.snapshots, "loss_ema": self.loss_ema,
            "wall_s": self.wall_s(), "images_per_s": self.images_per_s(), "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "world_size": self.ctx.world_size,
            "precision": self.precision, "deterministic": deterministic, "n_params": self.n_params,
            "resumed_from": self.resumed_from, "settings_hash": self.shash, "subset_hash": self.dhash,
            "settings": self.settings,
        }  # fmt: skip


class _Progress:
    """Progress lines (step, loss, |grad|, lr, images/s, elapsed, ETA) about ``LOG_LINES`` times per run and
    at least every ``LOG_EVERY_S`` seconds, and the same numbers as a record for a ``progress`` hook."""

    def __init__(self, run: _Run, say, log_every: int | None, hook):
        self.run, self.say, self.hook = run, say, hook
        self.every = int(log_every or max(1, run.total // LOG_LINES))
        self.t_last = time.perf_counter()

    def __call__(self, loss_v: float, gnorm_v: float, lr_now: float, stop: int) -> None:
        run, now = self.run, time.perf_counter()
        if not run.ctx.is_main or not (
            run.step % self.every == 0
            or run.step == stop
            or now - self.t_last >= LOG_EVERY_S
            or run.step == run.start_step + 1
        ):
            return
        elapsed = now - run.t0
        ips = (run.step - run.start_step) * run.batch / max(elapsed, 1e-9)
        eta = (run.total - run.step) * run.batch / max(ips, 1e-9)
        self.say(
            f"step {run.step}/{run.total} loss {loss_v:.4f} (avg {run.loss_ema:.4f}) |grad| {gnorm_v:.3g} "
            f"lr {lr_now:.3g} {ips:.0f} img/s elapsed {_fmt_time(elapsed)} eta {_fmt_time(eta)}"
        )
        if self.hook is not None:
            self.hook({
                "step": run.step, "total_steps": run.total, "images": run.step * run.batch, "loss": loss_v,
                "loss_avg": run.loss_ema, "grad_norm": gnorm_v, "lr": lr_now,
                "ema_beta": ema_beta(run.rates, run.step - 1), "images_per_s": ips, "elapsed_s": elapsed,
                "time": time.time(),
            })  # fmt: skip
        self.t_last = now


def train(
    settings: Mapping[str, Any],
    subset: Mapping[str, Any],
    out_dir: str | os.PathLike,
    device: str | torch.device | None = None,
    log: Any = None,
    *,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    checkpoint_every: int | None = None,
    keep_state: bool = False,
    log_every: int | None = None,
    deterministic: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train one run (see the module docstring); return the summary written to ``out_dir/train.json``.

    ``device`` None picks CUDA when available. ``log`` is a logger or a callable taking a line (default:
    this module's logger). ``max_steps`` stops early, resumably, once that many steps are done (state.pt is
    written, no train.json; the returned dict has ``"complete": False``). ``time_budget_s`` stops the same
    way once the next step and a save would end later than that many seconds after the start, or on SIGTERM
    or SIGUSR1 (what Slurm sends ahead of a walltime): a job's walltime ends one link of a chain, and the
    next call resumes from state.pt. ``checkpoint_every`` (steps between resumable states) overrides
    ``settings["train"]["checkpoint_every"]`` (it changes no number, so it need not be in the settings).
    ``keep_state`` keeps state.pt after training is complete. ``log_every`` is the number of steps between
    progress lines (default: about 20 lines per run, and at least one every 10 s); ``progress`` is called
    with the numbers of every progress line as a dict (step, images, loss, loss_avg, grad_norm, lr,
    ema_beta, images_per_s, elapsed_s, time). ``deterministic`` selects deterministic kernels (CUDA reruns
    and resumes then match bit for bit; on the CPU they do anyway). ``settings["train"]["precision"]`` (fp32,
    tf32 or bf16; see :mod:`diffmem.science.precision`) sets the arithmetic of the network.
    """
    t_call = time.perf_counter()  # the time budget counts from here (set-up included)
    say = _log_function(log)
    out_dir = Path(out_dir)
    ctx = distributed.setup(device)
    t_cfg = settings["train"]
    images_np, cond_np, label_dim = _check_subset(settings, subset)
    hashes = identity.train_digest(settings), subset_fingerprint(subset)
    summary_path, state_path = out_dir / SUMMARY_FILE, out_dir / STATE_FILE
    if summary_path.exists():
        summary = read_json(summary_path)
        err = _mismatch(summary_path, summary, *hashes)
        if err:
            raise err
        if ctx.is_main:
            say(f"{summary_path} exists for these settings: training is done, nothing to do")
        return summary
    plan, rates = training_plan(t_cfg, images_np.shape[0]), rate_plan(t_cfg, images_np.shape[0])
    state = None
    if state_path.exists():
        state = torch_load(state_path, map_location="cpu")
        err = _mismatch(state_path, state, *hashes)
        if err:
            raise err
    else:
        _check_folder(out_dir, *hashes)

    dev = ctx.device
    fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    if "tf32" in t_cfg:
        raise ValueError(
            "train.tf32 was replaced by train.precision: write precision: tf32 for tf32: true, fp32 for tf32: false"
        )
    prec = dmprec.check(t_cfg.get("precision"), "train.precision")
    with (
        torch.random.fork_rng(devices=fork_devices),
        _backend_flags(dev, prec, deterministic),
        _Pause(time_budget_s, ctx) as pause,
    ):
        run = _Run(settings, images_np, cond_np, label_dim, ctx, plan, rates, out_dir, hashes)
        run.ckpt_every = int(checkpoint_every if checkpoint_every is not None else t_cfg.get("checkpoint_every") or 0)
        if state is not None:
            run.resume(state, say)
            del state
        total, stop = run.total, run.total if max_steps is None else max(0, min(run.total, int(max_steps)))
        if ctx.is_main:
            say(
                f"training {run.n_params:,} parameters on {run.n_images} images ({dev}, {ctx.world_size} process"
                f"{'es' if ctx.world_size > 1 else ''}): {total} steps of batch {run.batch} = {plan['images']:,} "
                f"images ({plan['epochs']:.4g} epochs), snapshots at steps {plan['snapshot_steps']}"
                + (f"; resuming at step {run.step}" if run.step else "")
            )
        run.t0 = time.perf_counter()
        run.start_step = run.step
        report = _Progress(run, say, log_every, progress)
        while run.step < stop:
            loss_v, gnorm_v, lr_now = run.train_step()
            now = time.perf_counter()
            paused = run.step < stop and pause.due(now - t_call, now - run.t0, run.step - run.start_step)
            if paused:
                stop = run.step
            if run.step in run.snap_index:
                run.save_snapshot(loss_v)
                run.save_state()
            elif run.step == stop or (run.ckpt_every and run.step % run.ckpt_every == 0):
                run.save_state()
            if paused and ctx.is_main:
                say(
                    f"pausing at step {run.step}/{total} before the job's time runs out ({pause.reason}); "
                    f"state.pt holds step {run.step}: the next attempt resumes from it"
                )
            report(loss_v, gnorm_v, lr_now, stop)
        result = run.summary(deterministic)
    if run.step < total:
        ctx.barrier()
        return result
    if ctx.is_main:
        write_json(summary_path, result)
        if not keep_state:
            state_path.unlink(missing_ok=True)
            record_path(state_path).unlink(missing_ok=True)
        say(
            f"done: {run.step} steps, {run.step * run.batch:,} images in {_fmt_time(result['wall_s'])}, "
            f"{result['images_per_s']:.0f} img/s; summary in {summary_path}"
        )
    ctx.barrier()
    return result


class _Pause:
    """Decides when a training must stop before its job's walltime: when the time budget would not hold
    one more step plus a save, or once SIGTERM/SIGUSR1 arrived. Every rank takes the same decision."""

    def __init__(self, budget_s: float | None, ctx):
        self.budget_s, self.ctx, self.signal, self.reason = budget_s, ctx, None, ""
        self._saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                self._saved[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name

    def due(self, elapsed_s: float, loop_s: float, steps_done: int) -> bool:
        """``elapsed_s`` since the call began, ``loop_s`` of them in ``steps_done`` steps."""
        if self.budget_s is None and not self._saved:
            return False
        per_step = loop_s / max(steps_done, 1)
        over = self.budget_s is not None and elapsed_s + 2 * per_step + 5.0 > self.budget_s
        flag = 1.0 if (over or self.signal) else 0.0
        if self.ctx.distributed:
            flag = float(self.ctx.all_mean(torch.tensor(flag, device=self.ctx.device)))
        if flag > 0:
            self.reason = f"received {self.signal}" if self.signal else f"time budget {self.budget_s:.0f} s"
        return flag > 0

    def __enter__(self) -> _Pause:
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}


def _snapshot_entry(meta: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("k", "step", "images_seen", "epochs", "loss_ema", "file")
    return {key: meta[key] for key in keys} | {"json": f"snapshot-{int(meta['k']):03d}.json"}


def _last_saved(step: int, every: int, snaps: Sequence[int], start: int) -> int | None:
    """The step of the newest state.pt (None when this process has written none and started fresh)."""
    cands = [s for s in snaps if s <= step]
    if every:
        cands.append(step // every * every)
    best = max([c for c in cands if c > 0] + [start])
    return best if best > 0 else None


# ----------------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffmem.training.loop", description="Train one run (also under torchrun for data parallel)."
    )
    parser.add_argument("--settings", required=True, help="run.json: the resolved run settings")
    parser.add_argument("--subset", required=True, help="subset.npz written by diffmem.data.save_subset")
    parser.add_argument("--out", required=True, help="output folder (snapshots, state.pt, train.json)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (resumably) after this many steps")
    parser.add_argument("--time-budget", type=float, default=None, help="stop (resumably) after this many seconds")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps between resumable states")
    parser.add_argument("--keep-state", action="store_true", help="keep state.pt after training")
    parser.add_argument("--log-every", type=int, default=None, help="steps between progress lines")
    parser.add_argument("--deterministic", action="store_true", help="deterministic kernels (CUDA: slower)")
    args = parser.parse_args(argv)

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = read_json(args.settings)
    subset = data.load_subset(args.subset)
    # train/stats.jsonl (+ TensorBoard) from the main process, as a one-process training writes them
    records = metrics.recorder(args.out) if rank == 0 else contextlib.nullcontext(None)
    try:
        with records as record:
            train(
                settings,
                subset,
                args.out,
                device=args.device,
                max_steps=args.max_steps,
                time_budget_s=args.time_budget,
                checkpoint_every=args.checkpoint_every,
                keep_state=args.keep_state,
                log_every=args.log_every,
                deterministic=args.deterministic,
                progress=record,
            )
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
