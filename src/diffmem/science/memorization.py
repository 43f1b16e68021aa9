"""Memorization score: nearest training images in pixel space and the ratio |x - NN1| / |x - NN2|.

A generated sample x is memorized when d1 / d2 < threshold (1/3 in the paper), d1 and d2 its
L2 distances to the nearest and second-nearest training images in uint8 pixel space (the saved
images). Two exact copies in the training set give d1 = d2 = 0 for a copy of them: ``ties="memorized"``
(the default) counts it as memorized; ``ties="released"`` does not, as the paper's released scoring, whose
``d1 / d2 < 1/3`` is 0/0 = NaN there (``score.ties``). The memorization ratio of a set of samples is the
memorized fraction, reported with a Wilson binomial confidence interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
import torch


def _flat_u8(images, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 images, got {images.dtype}")
    if images.ndim < 2:
        raise ValueError(f"{name}: expected images of shape (N, ...), got {images.shape}")
    return images.reshape(len(images), -1)


# Exact top-2 search. Distances are computed on centred values (x - 128, in [-128, 127]: distances do
# not change, norms and dot products shrink). A float32 GEMM scores every (query, training image) pair
# as s~ = |t|^2 - 2 q.t = |q - t|^2 - |q|^2; its rounding error has a proven bound M (below), so the
# exact top-2 lie among the pairs with s~ <= (2nd smallest s~) + 2 M, a few per query. Their squared
# distances are computed exactly in integers and packed with their index into one int64 key,
# d^2 << shift | index, so that the smallest two keys are the nearest two images, ties broken by the
# lower index, and no sort of a whole chunk is needed (topk of 2).
#
# The bound: s~ is the float32 sum of D + 1 terms, fl(|t|^2) and the D exact products -2 q_k t_k
# (|q_k t_k| <= 2^14, exact in float32, and so in TF32 or bf16, whose mantissas hold the centred
# values exactly). A sum of n terms in any order (any BLAS blocking, FMA or split-K) errs by at most
# gamma_{n-1} sum |terms| (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 4.4),
# gamma_n = n u / (1 - n u), u = 2^-24; fl(|t|^2) adds u |t|^2; and sum_k |q_k t_k| <= |q| |t|
# (Cauchy-Schwarz). So |s~ - s| <= gamma_{D+2} (|t|^2 + 2 |q| |t|) =: M; the code uses 2 M (headroom).
# A query whose candidates exceed ``_MAX_CANDIDATES`` in a chunk (near-equal training images) gets
# exact float64 distances against the whole chunk instead (integers below 2^53 there: exact).

_U32 = 2.0**-24  # unit roundoff of float32
_MAX_CANDIDATES = 64  # per query and chunk; more -> the exact float64 GEMM for that query


def _gamma(n: int) -> float:
    return n * _U32 / (1 - n * _U32)


def _centred(u8: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return u8.to(dtype).sub_(128)


def _row_dots(a: torch.Tensor, b: torch.Tensor, rows: int = 1024) -> torch.Tensor:
    """Exact row-wise dot products (int64) of centred float32 rows a_i . b_i: float32 sums over blocks of
    <= 1024 values (|a_k b_k| <= 2^14, so every partial sum is an integer of magnitude <= 2^24, exactly
    representable whatever the summation order), then the block sums in float64 (exact below 2^53).
    ``rows`` rows at a time (a bounded temporary)."""
    n, d = a.shape
    block = max(k for k in range(1, min(d, 1024) + 1) if d % k == 0)
    out = torch.empty(n, dtype=torch.int64, device=a.device)
    for lo in range(0, n, rows):
        x, y = a[lo : lo + rows], b[lo : lo + rows]
        out[lo : lo + rows] = (x * y).view(len(x), d // block, block).sum(2).to(torch.float64).sum(1).to(torch.int64)
    return out


def _sq_norms(centred: torch.Tensor) -> torch.Tensor:
    """Exact squared norms (int64) of centred float32 rows."""
    return _row_dots(centred, centred)


_NO_KEY = torch.iinfo(torch.int64).max  # an empty slot of the running top 2


class _Queries(NamedTuple):
    """A chunk of queries: uint8 rows, centred float32 rows, exact squared norms (int64) and their roots."""

    u8: torch.Tensor
    f32: torch.Tensor
    sq: torch.Tensor
    norm: torch.Tensor


class _Train(NamedTuple):
    """A chunk of training images: uint8 rows, centred float32 rows, exact squared norms (int64), the norms
    as a float32 row (1, m) and their maximum, and the index of its first image."""

    u8: torch.Tensor
    f32: torch.Tensor
    sq: torch.Tensor
    sq_f32: torch.Tensor
    sq_max: float
    lo: int


@torch.no_grad()
def knn_top2(
    queries_u8, train_u8, chunk_q: int = 1024, chunk_t: int = 8192, device="cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact 2 nearest training images of each query in pixel L2 (flattened uint8 values).

    Equal to the brute-force float64 answer: the same indices (ties broken by the lower training
    index, exact duplicates at distance 0) and the same distances, bit for bit. Runs at the speed of
    a float32 GEMM: candidates come from a float32 search with a proven error margin and are then
    checked in exact integer arithmetic (see the comment above). Chunked over training images
    (``chunk_t``, each converted to float32 once, into one reused buffer) and queries (``chunk_q``)
    with a running top-2 merge: memory is O(chunk_q x chunk_t + chunk_t x D) beyond the uint8 inputs
    and a float32 copy of the queries. Returns (dist (N, 2) float64, idx (N, 2) int64).
    """
    q, t, shift = _knn_inputs(queries_u8, train_u8, chunk_q, chunk_t)
    device = torch.device(device)
    margin_gamma = 2 * _gamma(q.shape[1] + 2)  # 2 M, with the headroom of the comment above
    t_dev = torch.from_numpy(np.ascontiguousarray(t)).to(device)  # uint8 (M, D)
    q_dev = torch.from_numpy(np.ascontiguousarray(q)).to(device)  # uint8 (N, D)
    q_f32 = _centred(q_dev, torch.float32)
    q_sq = _sq_norms(q_f32)  # (N,) int64, exact
    queries = _Queries(q_dev, q_f32, q_sq, q_sq.to(torch.float64).sqrt())
    best = torch.full((len(q), 2), _NO_KEY, dtype=torch.int64, device=device)  # running top-2 keys, ascending
    t_buf = torch.empty((min(chunk_t, len(t)), q.shape[1]), dtype=torch.float32, device=device)
    # Autocast would run the GEMM in bf16/fp16 and void the error bound: plain float32 here.
    with torch.autocast(device.type, enabled=False):
        for tlo in range(0, len(t), chunk_t):
            tc = t_dev[tlo : tlo + chunk_t]
            tf = t_buf[: len(tc)].copy_(tc).sub_(128)  # centred float32, in the reused buffer
            t_sq = _sq_norms(tf)
            train = _Train(tc, tf, t_sq, t_sq.to(torch.float32)[None, :], float(t_sq.max()), tlo)
            for qlo in range(0, len(q), chunk_q):
                qs = slice(qlo, qlo + chunk_q)
                _merge_chunk(best[qs], _Queries(*(a[qs] for a in queries)), train, shift, margin_gamma)
    best = best.cpu().numpy()
    # numpy's sqrt is correctly rounded (IEEE); torch's vectorised one may be off by an ulp.
    return np.sqrt((best >> shift).astype(np.float64)), best & ((1 << shift) - 1)


def _knn_inputs(queries_u8, train_u8, chunk_q: int, chunk_t: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(queries (N, D), train (M, D), key shift) of :func:`knn_top2`, or ValueError: a key is
    d^2 << shift | training index in an int64."""
    q = _flat_u8(queries_u8, "queries")
    t = _flat_u8(train_u8, "train")
    if len(t) < 2:
        raise ValueError(f"knn_top2: need at least 2 training images for NN1 and NN2, got {len(t)}")
    if q.shape[1] != t.shape[1]:
        raise ValueError(f"knn_top2: queries have {q.shape[1]} values per image, train {t.shape[1]}")
    if chunk_q < 1 or chunk_t < 1:
        raise ValueError("knn_top2: chunk sizes must be >= 1")
    n_dim = q.shape[1]
    shift = max(1, (len(t) - 1).bit_length())  # key = d2 << shift | index
    if (n_dim * 255 * 255).bit_length() + shift > 62:
        raise ValueError(f"knn_top2: {n_dim} values per image x {len(t)} training images overflow the int64 keys")
    return q, t, shift


def _merge_chunk(best: torch.Tensor, qc: _Queries, tc: _Train, shift: int, margin_gamma: float) -> None:
    """Merge a chunk of training images into the running top-2 keys ``best`` (n, 2) of a chunk of queries."""
    n = len(qc.u8)
    # s~ = |t|^2 - 2 q.t in float32 (one GEMM), and its error bound 2 M per query.
    s_approx = torch.addmm(tc.sq_f32, qc.f32, tc.f32.T, beta=1, alpha=-2)  # (n, m)
    margin = margin_gamma * (tc.sq_max + 2 * qc.norm * math.sqrt(tc.sq_max))  # (n,) float64
    thr32 = _candidate_bound(s_approx, margin, best[:, 1], qc.sq, shift)
    r, c = (s_approx <= thr32[:, None]).nonzero(as_tuple=True)  # candidates, grouped by query
    per_row = torch.bincount(r, minlength=n)
    many = per_row > _MAX_CANDIDATES
    if bool(many.any()):  # near-equal images: exact float64 distances to the whole chunk
        _merge_whole_chunk(best, qc, tc, many.nonzero().squeeze(1), shift)
        keep = ~many[r]
        r, c = r[keep], c[keep]
        per_row[many] = 0
    if len(r):
        _merge_candidates(best, qc, tc, (r, c), per_row, shift)


def _candidate_bound(s_approx, margin, b2, q_sq, shift: int) -> torch.Tensor:
    """(n,) float32 bound on s~ of the pairs that can be in the top 2: s~ <= (2nd smallest s~) + 2 M, and
    (earlier chunks hold lower indices, which win ties) s~ <= (running 2nd best s) + M; rounded up.
    ``b2``: the running 2nd best keys."""
    n, m = s_approx.shape
    device = s_approx.device
    thr = torch.full((n,), math.inf, dtype=torch.float64, device=device)
    if m >= 2:
        thr = s_approx.topk(2, dim=1, largest=False).values[:, 1].to(torch.float64) + 2 * margin
    b2_s = torch.where(b2 == _NO_KEY, math.inf, ((b2 >> shift) - q_sq).to(torch.float64))
    thr = torch.minimum(thr, b2_s + margin)
    return torch.nextafter(thr.to(torch.float32), torch.tensor(math.inf, dtype=torch.float32, device=device))


def _merge_whole_chunk(best: torch.Tensor, qc: _Queries, tc: _Train, rows: torch.Tensor, shift: int) -> None:
    """Merge exact float64 distances of queries ``rows`` to every image of the chunk (integers < 2^53)."""
    g = _centred(qc.u8[rows], torch.float64) @ _centred(tc.u8, torch.float64).T
    d2 = (qc.sq[rows, None] + tc.sq[None, :]).to(torch.float64) - 2 * g
    keys = (d2.to(torch.int64) << shift) | (torch.arange(len(tc.u8), device=best.device) + tc.lo)
    merged = torch.cat([best[rows], keys], dim=1).topk(2, dim=1, largest=False).values
    best[rows] = merged.sort(dim=1).values


def _merge_candidates(best: torch.Tensor, qc: _Queries, tc: _Train, pairs, per_row, shift: int) -> None:
    """Merge the exact squared distances of the candidate ``pairs`` (query rows, chunk columns; grouped by
    query, ``per_row`` of them per query): one table per query of its top 2 and candidates, topk of 2."""
    r, c = pairs
    device = best.device
    d2 = torch.empty(len(r), dtype=torch.int64, device=device)
    for lo in range(0, len(r), 4096):  # exact squared distances of the candidate pairs
        rr, cc = r[lo : lo + 4096], c[lo : lo + 4096]
        d2[lo : lo + 4096] = qc.sq[rr] + tc.sq[cc] - 2 * _row_dots(qc.f32[rr], tc.f32[cc])
    keys = (d2 << shift) | (c + tc.lo)
    width = int(per_row.max())
    pos = torch.arange(len(r), device=device) - (torch.cumsum(per_row, 0) - per_row)[r]
    table = torch.full((len(best), width + 2), _NO_KEY, dtype=torch.int64, device=device)
    table[:, :2] = best
    table[r, pos + 2] = keys
    best[:] = table.topk(2, dim=1, largest=False, sorted=True).values


#: What a sample at distance 0 from two training images (d1 = d2 = 0) counts as (``score.ties``): the first,
#: ``memorized``, is also what None (the setting absent) means; ``released``: not memorized (0/0 in the paper's code).
TIE_RULES = ("memorized", "released")


def memorized(dist, threshold: float = 1 / 3, ties: str | None = None) -> np.ndarray:
    """Boolean (N,): d1 / d2 < threshold; d2 = 0 (two identical nearest images) is memorized unless
    ``ties="released"`` (:data:`TIE_RULES`; None = ``memorized``)."""
    ties = ties or TIE_RULES[0]
    if ties not in TIE_RULES:
        raise ValueError(f"score.ties: expected one of {', '.join(TIE_RULES)}, got {ties!r}")
    dist = np.asarray(dist, dtype=np.float64)
    d1, d2 = dist[:, 0], dist[:, 1]
    below = d1 < threshold * d2  # False where d1 = d2 = 0
    return below if ties == "released" else (d2 == 0) | below


def memorization_ratio(dist, threshold: float = 1 / 3, ties: str | None = None) -> float:
    """Fraction of queries with d1 / d2 < threshold (see :func:`memorized`); NaN for no queries."""
    m = memorized(dist, threshold, ties)
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


def score(
    samples_u8, train_u8, threshold: float = 1 / 3, level: float = 0.95, ties: str | None = None, **chunks
) -> dict[str, Any]:
    """Memorization of ``samples_u8`` w.r.t. ``train_u8`` (``ties``: see :func:`memorized`).

    Returns ratio, n_memorized, n, ci_low, ci_high (Wilson, ``level``), threshold and per-sample
    numpy arrays d1, d2 (L2 distances), nn1, nn2 (training indices), memorized (bool).
    ``chunks``: chunk_q, chunk_t, device of :func:`knn_top2`.
    """
    dist, idx = knn_top2(samples_u8, train_u8, **chunks)
    mem = memorized(dist, threshold, ties)
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
