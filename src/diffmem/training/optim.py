"""The optimizer of a training, its learning rate, gradient norm and clipping, and the EMA of the weights.

The learning rate (linear warm-up, ``train.warmup.mode``) and the EMA's decay per step (``train.ema.mode``:
a per-step decay with EDM's ramp-up, or the paper's code's ramp) come from :mod:`diffmem.science.schedule`
(``lr_at``, ``ema_beta``), which has the formulas; this module applies them.

Kernels that change no formula: Adam/AdamW use torch's fused kernel on CUDA and the multi-tensor (foreach)
one on the CPU (bit-identical to the per-parameter loop there; the fused CPU kernel differs by ~1 ulp); the
EMA and the gradient norm are multi-tensor calls, bit-identical to loops over the tensors on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["clip_gradients", "copy_buffers", "grad_norm", "load_optimizer", "make_optimizer", "set_lr", "update_ema"]

KERNEL_KEYS = ("fused", "foreach")  # how an optimizer computes, not what: follows the device, not the state


def make_optimizer(params, t: Mapping[str, Any], device: torch.device | None = None) -> torch.optim.Optimizer:
    """The optimizer of ``t`` (the train settings). Adam/AdamW run torch's fused kernel on CUDA (one launch
    for all parameters) and the multi-tensor kernel elsewhere, which equals the per-parameter loop bit for
    bit on the CPU (checked in tests/training/test_train.py); the fused CPU kernel would differ by ~1 ulp."""
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


def load_optimizer(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """``opt.load_state_dict(saved)`` keeping ``opt``'s kernel choice: a state saved on CUDA (fused Adam)
    resumed on the CPU runs the CPU's kernel, and the other way round (torch would take the saved groups'
    ``fused``/``foreach``; the moments and step counts are loaded for the kernel in use)."""
    mine = [{k: g[k] for k in KERNEL_KEYS if k in g} for g in opt.param_groups]
    if len(saved["param_groups"]) != len(mine):
        raise ValueError(f"saved optimizer has {len(saved['param_groups'])} parameter groups, this one {len(mine)}")
    groups = [{**g, **kernels} for g, kernels in zip(saved["param_groups"], mine, strict=True)]
    opt.load_state_dict({**saved, "param_groups": groups})


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The learning rate of every parameter group (the schedule's value for this step)."""
    for group in opt.param_groups:
        group["lr"] = lr


def grad_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together (the same as ``vector_norm`` of a loop of per-tensor norms)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def clip_gradients(params: Sequence[torch.Tensor], grad_clip: float | None) -> None:
    """Scale the gradients to a norm of at most ``grad_clip`` (``train.grad_clip``; None: no clipping)."""
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, float(grad_clip))


@torch.no_grad()
def update_ema(ema: Sequence[torch.Tensor], net: Sequence[torch.Tensor], beta: float) -> None:
    """``ema <- lerp(ema, net, 1 - beta)`` over the parameter lists (``beta`` 0: a copy), in one multi-tensor
    call: on the CPU the same per-tensor kernel as a loop of ``lerp_`` (bit for bit), without walking the
    modules every step (~0.4 ms a step for the default's 130 tensors). Buffers go by :func:`copy_buffers`."""
    if beta == 0.0:
        torch._foreach_copy_(ema, net)
    else:
        torch._foreach_lerp_(ema, net, 1.0 - beta)


@torch.no_grad()
def copy_buffers(ema: Sequence[torch.Tensor], net: Sequence[torch.Tensor]) -> None:
    """The EMA net's buffers <- the net's (buffers are not averaged)."""
    for b_ema, b in zip(ema, net, strict=True):
        b_ema.copy_(b)
