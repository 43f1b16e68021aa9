"""Memorization score: nearest training images in pixel space and the ratio |x - NN1| / |x - NN2|.

A generated sample x is memorized when d1 / d2 < threshold (1/3 in the paper), d1 and d2 its
L2 distances to the nearest and second-nearest training images in uint8 pixel space (the saved
images). Two exact copies in the training set give d1 = d2 = 0 for a copy of them, which counts as
memorized. The memorization ratio of a set of samples is the memorized fraction, reported with a
Wilson binomial confidence interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import torch


def _flat_u8(images, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 images, got {images.dtype}")
    if images.ndim < 2:
        raise ValueError(f"{name}: expected images of shape (N, ...), got {images.shape}")
    return images.reshape(len(images), -1)


@torch.no_grad()
def knn_top2(queries_u8, train_u8, chunk_q: int = 1024, chunk_t: int = 8192,
             device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Exact 2 nearest training images of each query in pixel L2 (flattened uint8 values).

    Chunked over queries (``chunk_q``) and training images (``chunk_t``) with a running top-2
    merge: memory is O(chunk_q x chunk_t) beyond the uint8 inputs. Squared distances come from
    |a|^2 - 2 a.b + |b|^2 in float64, which is exact for uint8 data (all terms are integers far
    below 2^53), so exact duplicates give distance 0 and ties are exact. Ties are broken by the
    lower training index. Returns (dist (N, 2) float64, idx (N, 2) int64).
    """
    q = _flat_u8(queries_u8, "queries")
    t = _flat_u8(train_u8, "train")
    if len(t) < 2:
        raise ValueError(f"knn_top2: need at least 2 training images for NN1 and NN2, got {len(t)}")
    if q.shape[1] != t.shape[1]:
        raise ValueError(f"knn_top2: queries have {q.shape[1]} values per image, train {t.shape[1]}")
    if chunk_q < 1 or chunk_t < 1:
        raise ValueError("knn_top2: chunk sizes must be >= 1")
    device = torch.device(device)
    f64 = torch.float64
    t_dev = torch.from_numpy(np.ascontiguousarray(t)).to(device)  # uint8 (M, D)
    t_sq = torch.cat([(c.to(f64) ** 2).sum(1) for c in t_dev.split(chunk_t)])  # (M,)
    out_d = np.empty((len(q), 2), dtype=np.float64)
    out_i = np.empty((len(q), 2), dtype=np.int64)
    for qlo in range(0, len(q), chunk_q):
        qc = torch.from_numpy(np.ascontiguousarray(q[qlo:qlo + chunk_q])).to(device).to(f64)
        q_sq = (qc**2).sum(1, keepdim=True)
        best_d = torch.full((len(qc), 2), math.inf, dtype=f64, device=device)
        best_i = torch.full((len(qc), 2), -1, dtype=torch.int64, device=device)
        for tlo in range(0, len(t), chunk_t):
            tc = t_dev[tlo:tlo + chunk_t].to(f64)
            d2 = (q_sq - 2 * qc @ tc.T + t_sq[tlo:tlo + chunk_t][None, :]).clamp_min_(0)
            k = min(2, d2.shape[1])
            # Stable sort keeps the lower index first among equal distances; previous best first
            # in the concatenation, since it holds lower indices than this chunk.
            d_c, i_c = torch.sort(d2, dim=1, stable=True)
            cand_d = torch.cat([best_d, d_c[:, :k]], dim=1)
            cand_i = torch.cat([best_i, i_c[:, :k] + tlo], dim=1)
            d_s, order = torch.sort(cand_d, dim=1, stable=True)
            best_d, best_i = d_s[:, :2], cand_i.gather(1, order[:, :2])
        out_d[qlo:qlo + len(qc)] = best_d.sqrt().cpu().numpy()
        out_i[qlo:qlo + len(qc)] = best_i.cpu().numpy()
    return out_d, out_i


def memorized(dist, threshold: float = 1 / 3) -> np.ndarray:
    """Boolean (N,): d1 / d2 < threshold, with d2 = 0 (two identical nearest images) memorized."""
    dist = np.asarray(dist, dtype=np.float64)
    d1, d2 = dist[:, 0], dist[:, 1]
    return (d2 == 0) | (d1 < threshold * d2)


def memorization_ratio(dist, threshold: float = 1 / 3) -> float:
    """Fraction of queries with d1 / d2 < threshold (see :func:`memorized`); NaN for no queries."""
    m = memorized(dist, threshold)
    return float(m.mean()) if len(m) else math.nan


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n at confidence ``level``.

    (0, 1) when n == 0.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"binomial_ci: need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"binomial_ci: level must lie in (0, 1), got {level}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, center - half)  # exact ends (the closed form rounds)
    hi = 1.0 if k == n else min(1.0, center + half)
    return lo, hi


def score(samples_u8, train_u8, threshold: float = 1 / 3, level: float = 0.95, **chunks) -> dict[str, Any]:
    """Memorization of ``samples_u8`` w.r.t. ``train_u8``.

    Returns ratio, n_memorized, n, ci_low, ci_high (Wilson, ``level``), threshold and per-sample
    numpy arrays d1, d2 (L2 distances), nn1, nn2 (training indices), memorized (bool).
    ``chunks``: chunk_q, chunk_t, device of :func:`knn_top2`.
    """
    dist, idx = knn_top2(samples_u8, train_u8, **chunks)
    mem = memorized(dist, threshold)
    n, k = len(mem), int(mem.sum())
    lo, hi = binomial_ci(k, n, level)
    return {
        "ratio": k / n if n else math.nan,
        "n_memorized": k,
        "n": n,
        "ci_low": lo,
        "ci_high": hi,
        "level": level,
        "threshold": float(threshold),
        "d1": dist[:, 0],
        "d2": dist[:, 1],
        "nn1": idx[:, 0],
        "nn2": idx[:, 1],
        "memorized": mem,
    }


def best_snapshot(ratios: Sequence[float]) -> int:
    """Index of the snapshot that gives a run its memorization ratio: the highest ratio, the latest
    among ties (the longest-trained model that memorizes that much; its samples and nearest-neighbour
    grid are the ones shown). ``ratios``: one per snapshot, in snapshot order."""
    if not len(ratios):
        raise ValueError("best_snapshot: no snapshot ratios")
    return max(range(len(ratios)), key=lambda i: (float(ratios[i]), i))
