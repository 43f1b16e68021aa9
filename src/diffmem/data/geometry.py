"""How crowded a training subset is: distances between its images, reported beside every memorization ratio.

A sample counts as memorized when d1/d2 < 1/3 (d1, d2: its distances to the nearest and second-nearest
training images). How hard that is depends on the data as well as on the model: in a crowded set (many
near-identical images, or images pulled together by downsampling) a copy must be much more exact. Two
numbers per subset say how crowded it is:

- ``nn_distance``: the median over images of the distance to the nearest *other* image of the subset;
- ``pair_distance``: the median distance over all pairs of images;
- ``nn_pair_ratio``: ``nn_distance / pair_distance`` (scale-free: near 1 when every image is about as far
  from its nearest neighbour as from a random other image, near 0 for clusters of near-duplicates).

Distances are per pixel: the L2 distance of the uint8 images (as the memorization score measures it)
divided by sqrt(number of values C*H*W), i.e. the root-mean-square pixel difference in 0..255 units, so
resolutions and channel counts compare. Exact: squared distances of uint8 images are integers, computed in
float64 (exact below 2^53) in row blocks; the pair median is found in two passes (a histogram of the
squared distances, then the values of the bins that hold the middle ranks), so memory stays
O(block x n) while the median is the exact ``numpy.median`` of all n(n-1)/2 pair distances.
"""

from __future__ import annotations

import math

import numpy as np

#: Rows of the distance matrix computed at once.
BLOCK = 1024
_BINS = 1 << 16


def _blocks(x: np.ndarray, sq: np.ndarray, block: int):
    """(start, squared distances of rows start..start+b to every image) as exact integers in float64."""
    for i0 in range(0, len(x), block):
        d2 = sq[i0 : i0 + block, None] + sq[None, :] - 2.0 * (x[i0 : i0 + block] @ x.T)
        yield i0, np.maximum(np.rint(d2), 0.0)


def _upper(d2: np.ndarray, i0: int) -> np.ndarray:
    """The pairs (i, j > i) of a block of rows starting at row i0."""
    rows = np.arange(i0, i0 + len(d2))[:, None]
    return d2[np.arange(d2.shape[1])[None, :] > rows]


def data_geometry(images: np.ndarray, block: int = BLOCK) -> dict:
    """``{"n", "nn_distance", "pair_distance", "nn_pair_ratio"}`` of uint8 NCHW ``images`` (see the module
    docstring); the distances are None for fewer than 2 images, the ratio also when the pair distance is 0."""
    images = np.asarray(images)
    n = int(len(images))
    if n < 2:
        return {"n": n, "nn_distance": None, "pair_distance": None, "nn_pair_ratio": None}
    x = images.reshape(n, -1).astype(np.float64)
    dim = x.shape[1]
    sq = (x * x).sum(axis=1)
    top = 4.0 * float(sq.max()) + 1.0  # |a - b|^2 <= (|a| + |b|)^2 <= 4 max |a|^2
    nn2 = np.empty(n)
    counts = np.zeros(_BINS, dtype=np.int64)

    def bins(v):
        return np.minimum((v * (_BINS / top)).astype(np.int64), _BINS - 1)

    for i0, d2 in _blocks(x, sq, block):
        rows = np.arange(len(d2))
        d2[rows, i0 + rows] = np.inf  # not its own neighbour
        nn2[i0 : i0 + len(d2)] = d2.min(axis=1)
        counts += np.bincount(bins(_upper(d2, i0)), minlength=_BINS)
    m = n * (n - 1) // 2
    ranks = ((m - 1) // 2, m // 2)  # the middle one or two (0-based) of the sorted pair distances
    cum = np.cumsum(counts)
    wanted = sorted({int(np.searchsorted(cum, r, side="right")) for r in ranks})
    kept = []
    for i0, d2 in _blocks(x, sq, block):
        v = _upper(d2, i0)
        kept.append(v[np.isin(bins(v), wanted)])
    kept = np.sort(np.concatenate(kept))
    before = int(cum[wanted[0] - 1]) if wanted[0] > 0 else 0  # pairs in lower bins
    mid = [kept[r - before] for r in ranks]
    pair = float(np.mean([math.sqrt(v / dim) for v in mid]))
    nn = float(np.median(np.sqrt(nn2 / dim)))
    return {"n": n, "nn_distance": nn, "pair_distance": pair, "nn_pair_ratio": nn / pair if pair > 0 else None}
