"""What a training step holds in GPU memory, and the per-GPU micro-batch that fits a declared GPU.

A step's peak is the net's states plus its activations::

    peak_MiB(m) = n_params x 4 B x 5 (weights, gradients, EMA, Adam's two moments) / 2^20
                  + k x saved_bytes_per_image x m / 2^20

``m`` images at once on one GPU (the micro-batch); ``saved_bytes_per_image`` is what autograd saves for the
backward pass of the net, counted from the net itself (:mod:`diffmem.science.activations`) and kept per net in
``benchmarks/memory/activations.json`` (``python -m diffmem count-activations``): exact for the nets counted there,
else from a fit to them (sum over levels of side^2 x channels, with and without blocks; side^4 per attention
matrix), with a 15% margin (the fit's largest error on the counted nets is 4%).
``k`` (allocator and cuDNN workspace beyond the saved tensors) comes from the measured H200 peak of the paper's
net (``benchmarks/gpu-h200-train-paper.json``): one measurement, one place. The model is fp32; tf32 holds the same
tensors (the H200 peaks agree to 0.01%); bf16 saves less, so fp32 is an upper bound for it.

When a run's per-GPU batch does not fit ``compute.gpu_memory_gb``, the plan trains it in rounds of the largest
micro-batch that fits and divides the per-GPU batch, accumulating gradients (the released code's
``--batch-gpu``): the optimizer step is the full batch's. Torch-free: the workflow reads this while it plans.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from diffmem import BENCHMARKS
from diffmem.errors import ConfigError
from diffmem.io import write_json

ACTIVATIONS = BENCHMARKS / "memory" / "activations.json"
PEAK_BENCH = BENCHMARKS / "gpu-h200-train-paper.json"
STATE_COPIES = 5  # weights, gradients, EMA, Adam's first and second moments: fp32 each
FIT_MARGIN = 1.15  # a net not counted: the fit's error is within 4% on the counted nets and a held-out one
RESERVE_GB = 2.0  # of the declared GPU memory: the CUDA context, the loss and the optimizer step's temporaries
MIB = 2**20
COUNTS_ABOUT = "bytes autograd saves per training image (fp32, VP loss, batch 2, CPU): diffmem.science.activations"

# The net settings that change what is saved for backward (not the skip mask: a disabled skip feeds zeros
# of the same shape; only whether labels, augmentation labels or dropout exist, not their sizes).
_SHAPE_KEYS = ("arch", "resolution", "img_channels", "model_channels", "channel_mult", "num_blocks",
               "attn_resolutions", "embedding", "encoder_type", "decoder_type")  # fmt: skip


def net_key(model: dict[str, Any]) -> str:
    """The identity of a net's memory shape (canonical JSON of the keys that change the saved tensors)."""
    key = {k: model.get(k) for k in _SHAPE_KEYS}
    key.update(labels=bool(model.get("label_dim")), augment=bool(model.get("augment_dim")),
               dropout=float(model.get("dropout") or 0) > 0)  # fmt: skip
    return json.dumps(key, sort_keys=True)


def _act_terms(model: dict[str, Any]) -> tuple[float, ...]:
    """The fit's terms for saved activations: sum over levels of side^2 x channels x blocks, the same without
    blocks, and side^4 per attention block (its attention matrix; the decoder's first block at the lowest level
    has one too)."""
    r, mc, nb = int(model["resolution"]), int(model["model_channels"]), int(model["num_blocks"])
    attn = {int(a) for a in model.get("attn_resolutions") or []}
    plain = matrices = 0.0
    for level, mult in enumerate(model["channel_mult"]):
        side = r / 2**level
        plain += side * side * mc * int(mult)
        matrices += side**4 * (2 * nb + 1) if int(side) in attn else 0.0
    matrices += (r / 2 ** (len(model["channel_mult"]) - 1)) ** 4
    return plain * nb, plain, matrices


def _params_terms(model: dict[str, Any]) -> tuple[float, ...]:
    """The fit's terms for the parameter count: sum over levels of channels^2 x blocks, and without blocks."""
    mc, nb = int(model["model_channels"]), int(model["num_blocks"])
    plain = sum((mc * int(mult)) ** 2 for mult in model["channel_mult"])
    return plain * nb, plain


def _fit(points: list[tuple[tuple[float, ...], float]]) -> tuple[float, ...]:
    """Least squares in relative error of y = sum_i a_i x_i (normal equations, Gaussian elimination)."""
    n = len(points[0][0]) if points else 0
    m = [[0.0] * (n + 1) for _ in range(n)]
    for xs, y in points:
        w = 1.0 / (y * y)
        for i in range(n):
            for j in range(n):
                m[i][j] += w * xs[i] * xs[j]
            m[i][n] += w * xs[i] * y
    for i in range(n):
        pivot = max(range(i, n), key=lambda r: abs(m[r][i]))
        m[i], m[pivot] = m[pivot], m[i]
        if abs(m[i][i]) < 1e-300:
            raise ValueError(f"{ACTIVATIONS}: too few distinct nets to fit the memory model")
        for r in range(n):
            if r != i:
                f = m[r][i] / m[i][i]
                m[r] = [a - f * b for a, b in zip(m[r], m[i], strict=True)]
    return tuple(m[i][n] / m[i][i] for i in range(n))


@lru_cache(maxsize=1)
def counted() -> dict[str, dict[str, Any]]:
    """{net_key: record} of ``benchmarks/memory/activations.json`` (records: net, bytes_per_image, n_params)."""
    if not ACTIVATIONS.is_file():
        return {}
    return {net_key(r["net"]): r for r in json.loads(ACTIVATIONS.read_text())["nets"]}


def update_counts(models: list[dict[str, Any]], out: str | Path = ACTIVATIONS) -> tuple[int, int]:
    """Count the activations of each net of ``models`` that ``out`` (a JSON like :data:`ACTIVATIONS`, or none
    yet) lacks, on the CPU (:func:`diffmem.science.activations.count_nets`), and append them to its list;
    returns (nets counted now, nets in the file)."""
    from diffmem.science.activations import count_nets  # torch

    out = Path(out)
    known = json.loads(out.read_text())["nets"] if out.is_file() else []
    have = {net_key(r["net"]) for r in known}
    new = count_nets([m for m in models if net_key(m) not in have], net_key)
    nets = known + new
    write_json(out, {"about": COUNTS_ABOUT, "nets": nets})
    counted.cache_clear()
    _fits.cache_clear()
    return len(new), len(nets)


@lru_cache(maxsize=1)
def _fits() -> tuple[tuple[float, ...], tuple[float, ...]]:
    recs = list(counted().values())
    act = _fit([(_act_terms(r["net"]), float(r["bytes_per_image"])) for r in recs])
    par = _fit([(_params_terms(r["net"]), float(r["n_params"])) for r in recs])
    return act, par


def activation_bytes(model: dict[str, Any]) -> float:
    """fp32 bytes saved for backward per training image: counted, or the fit with its margin."""
    rec = counted().get(net_key(model))
    if rec:
        return float(rec["bytes_per_image"])
    coef, _ = _fits()
    return FIT_MARGIN * sum(a * x for a, x in zip(coef, _act_terms(model), strict=True))


def n_params(model: dict[str, Any]) -> int:
    """Trainable parameters: counted, or the fit (sum of channels^2 per level, with and without blocks)."""
    rec = counted().get(net_key(model))
    if rec:
        return int(rec["n_params"])
    _, coef = _fits()
    return int(FIT_MARGIN * sum(a * x for a, x in zip(coef, _params_terms(model), strict=True)))


@lru_cache(maxsize=1)
def overhead() -> float:
    """k: the measured peak over the model's states and saved activations (the paper's net, fp32, one H200)."""
    doc = json.loads(PEAK_BENCH.read_text())
    preset = doc["presets"]["paper"]
    rec = next(r for r in doc["results"] if r["case"] == "paper" and r.get("status") == "ok")
    net = {"arch": "ddpmpp", "embedding": "positional", "encoder_type": "standard", "decoder_type": "standard",
           **preset["net"]}  # fmt: skip
    states = STATE_COPIES * 4 * int(preset["n_params"]) / MIB
    return (float(rec["cuda_peak_allocated_mib"]) - states) * MIB / (activation_bytes(net) * int(rec["batch"]))


def train_peak_mib(model: dict[str, Any], micro_batch: int) -> float:
    """The model's GPU peak of one training step on ``micro_batch`` images (MiB)."""
    states = STATE_COPIES * 4 * n_params(model) / MIB
    return states + overhead() * activation_bytes(model) * int(micro_batch) / MIB


def micro_batch(model: dict[str, Any], per_gpu_batch: int, gpu_memory_gb: float | None, where: str = "train") -> int:
    """The largest divisor of ``per_gpu_batch`` whose step fits ``gpu_memory_gb`` less the reserve (the whole
    per-GPU batch when no GPU memory is declared); ConfigError naming the net and the memory when none fits."""
    per_gpu_batch = int(per_gpu_batch)
    if gpu_memory_gb is None:
        return per_gpu_batch
    budget = (float(gpu_memory_gb) - RESERVE_GB) * 1e9 / MIB
    for m in sorted((d for d in range(1, per_gpu_batch + 1) if per_gpu_batch % d == 0), reverse=True):
        if train_peak_mib(model, m) <= budget:
            return m
    raise ConfigError(
        f"{where}: even one image per GPU needs {train_peak_mib(model, 1) / 1024:.1f} GiB by the memory model "
        f"(net {model.get('model_channels')} channels, {model.get('num_blocks')} blocks, "
        f"side {model.get('resolution')}); "
        f"compute.gpu_memory_gb is {gpu_memory_gb}"
    )
