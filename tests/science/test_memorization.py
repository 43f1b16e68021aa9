"""Exact top-2 nearest neighbours, the memorization ratio and its Wilson interval."""

import numpy as np
import pytest
import torch

from diffmem.science.memorization import (
    best_snapshot,
    binomial_ci,
    knn_top2,
    memorization_ratio,
    score,
)

torch.set_num_threads(1)


def brute_force(q, t):
    """Full distance matrix in float64 + stable argsort (lower index first among ties)."""
    qf = q.reshape(len(q), -1).astype(np.float64)
    tf = t.reshape(len(t), -1).astype(np.float64)
    d = np.sqrt(((qf[:, None, :] - tf[None, :, :]) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :2]
    return np.take_along_axis(d, idx, 1), idx


@pytest.mark.parametrize("chunk_q,chunk_t", [(5, 7), (37, 53), (1000, 1000), (1, 1), (36, 2)])
def test_knn_top2_equals_brute_force(chunk_q, chunk_t):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(53, 3, 4, 4), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(37, 3, 4, 4), dtype=np.uint8)
    queries[:5] = train[[3, 10, 52, 0, 20]]  # some exact copies
    dist, idx = knn_top2(queries, train, chunk_q=chunk_q, chunk_t=chunk_t)
    want_d, want_i = brute_force(queries, train)
    assert dist.dtype == np.float64 and idx.dtype == np.int64 and dist.shape == idx.shape == (37, 2)
    np.testing.assert_allclose(dist, want_d, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_array_equal(dist[:5, 0], 0)


def test_knn_ties_and_duplicates():
    train = np.zeros((6, 1, 2, 2), dtype=np.uint8)
    train[1] = 10
    train[4] = 10  # duplicate of 1
    train[5] = 255
    q = np.full((2, 1, 2, 2), 10, dtype=np.uint8)
    q[1] = 0  # equidistant to 0, 2, 3 (all zeros): ties broken by the lower index
    for ct in (1, 2, 4, 100):
        dist, idx = knn_top2(q, train, chunk_t=ct)
        np.testing.assert_array_equal(idx, [[1, 4], [0, 2]])
        np.testing.assert_array_equal(dist, [[0, 0], [0, 0]])
    # d1 = d2 = 0: memorized.
    assert memorization_ratio(dist) == 1.0


def test_knn_is_exact_for_large_uint8_values():
    """float32 expansion would lose these 1-unit differences; float64 must not."""
    train = np.full((3, 3, 32, 32), 255, dtype=np.uint8)
    train[1, 0, 0, 0] = 254
    train[2, 0, 0, :2] = 254
    q = train[2:3].copy()
    dist, idx = knn_top2(q, train)
    np.testing.assert_array_equal(idx, [[2, 1]])
    np.testing.assert_array_equal(dist, [[0.0, 1.0]])


def test_knn_errors():
    with pytest.raises(ValueError, match="at least 2"):
        knn_top2(np.zeros((3, 4), np.uint8), np.zeros((1, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        knn_top2(np.zeros((3, 4), np.float32), np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="values per image"):
        knn_top2(np.zeros((3, 4), np.uint8), np.zeros((3, 5), np.uint8))


def test_memorization_ratio_threshold():
    dist = np.array([[1.0, 3.0], [0.9, 3.0], [0.0, 0.0], [0.0, 5.0], [2.0, 2.0]])
    # 1/3 is not < 1/3; 0.3 is; 0/0 counts; 0/5 counts; 1 does not.
    assert memorization_ratio(dist) == pytest.approx(3 / 5)
    assert memorization_ratio(dist, threshold=0.5) == pytest.approx(4 / 5)


def test_wilson_known_values():
    lo, hi = binomial_ci(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = binomial_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = binomial_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)
    lo, hi = binomial_ci(81, 263)  # Wikipedia-independent check against the closed form
    p, n, z = 81 / 263, 263, 1.959963984540054
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (lo, hi) == pytest.approx((c - h, c + h), abs=1e-12)
    assert binomial_ci(5, 10, level=0.99)[0] < 0.2366
    assert binomial_ci(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        binomial_ci(11, 10)


def test_score_and_snapshots():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, size=(20, 1, 8, 8), dtype=np.uint8)
    copies = train[:6].copy()
    copies[0, 0, 0, 0] ^= 1  # a near copy still counts
    fresh = rng.integers(0, 256, size=(4, 1, 8, 8), dtype=np.uint8)
    res = score(np.concatenate([copies, fresh]), train, chunk_q=3, chunk_t=7)
    assert res["n"] == 10 and res["n_memorized"] == 6 and res["ratio"] == pytest.approx(0.6)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx(binomial_ci(6, 10))
    np.testing.assert_array_equal(res["nn1"][:6], np.arange(6))
    assert res["d1"][0] == 1.0 and np.all(res["d1"][1:6] == 0)
    dup = np.concatenate([train, train[:1]])
    assert score(train[:1], dup)["ratio"] == 1.0


def test_best_snapshot_is_the_highest_ratio_latest_among_ties():
    assert best_snapshot([0.1, 0.6, 0.3]) == 1
    assert best_snapshot([0.1, 0.6, 0.6, 0.2]) == 2  # the latest of the tied snapshots
    assert best_snapshot([1.0, 1.0, 1.0]) == 2
    assert best_snapshot([0.5]) == 0
    with pytest.raises(ValueError):
        best_snapshot([])


# ----------------------------------------------------------------------------------------------
# knn_top2 searches in float32 with a proven error margin and checks candidates exactly: adversarial
# inputs, each compared bit for bit with an integer brute-force oracle.


def exact_oracle(q, t):
    """Squared distances in int64 per query, stable argsort (lower index first among ties)."""
    qf = q.reshape(len(q), -1).astype(np.int64)
    tf = t.reshape(len(t), -1).astype(np.int64)
    d2 = np.stack([((tf - row) ** 2).sum(1) for row in qf])
    idx = np.argsort(d2, axis=1, kind="stable")[:, :2]
    return np.sqrt(np.take_along_axis(d2, idx, 1).astype(np.float64)), idx


def near_tie_case(seed=0, n_train=300, shape=(3, 32, 32)):
    """Training images 1 grey level apart in single pixels around a base image of extreme values (large norms):
    squared distances differ by 1 where float32 |q|^2 + |t|^2 - 2 q.t (~1e8) has a spacing of 8."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    base = np.where(rng.random(d) < 0.5, rng.integers(0, 9, size=d), rng.integers(247, 256, size=d))
    train = np.repeat(base[None], n_train, axis=0)
    for i in range(n_train):
        k = rng.integers(1, 4)
        px = rng.choice(d, size=k, replace=False)
        train[i, px] += rng.choice([-1, 1, -2, 2], size=k)
    train[::7] = train[3]  # exact duplicates
    queries = np.repeat(base[None], 40, axis=0)
    for i in range(40):
        px = rng.choice(d, size=rng.integers(0, 3), replace=False)
        queries[i, px] += rng.choice([-1, 1], size=len(px))
    queries[:4] = train[[3, 7, 10, 299]]
    clip = lambda a: np.clip(a, 0, 255).astype(np.uint8).reshape(len(a), *shape)  # noqa: E731
    return clip(queries), clip(train)


@pytest.mark.parametrize("chunk_q,chunk_t", [(1024, 8192), (7, 13), (40, 1), (3, 2)])
def test_knn_top2_exact_on_near_ties_and_duplicates(chunk_q, chunk_t):
    queries, train = near_tie_case()
    dist, idx = knn_top2(queries, train, chunk_q=chunk_q, chunk_t=chunk_t)
    want_d, want_i = exact_oracle(queries, train)
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_array_equal(dist, want_d)


def test_near_tie_case_defeats_a_plain_float32_search():
    """The case above is adversarial: float32 distances alone get NN1/NN2 wrong on it."""
    queries, train = near_tie_case()
    qf = torch.as_tensor(queries.reshape(len(queries), -1), dtype=torch.float32)
    tf = torch.as_tensor(train.reshape(len(train), -1), dtype=torch.float32)
    d2 = (qf * qf).sum(1, keepdim=True) + (tf * tf).sum(1)[None] - 2 * qf @ tf.T
    f32_idx = d2.topk(2, dim=1, largest=False).indices.numpy()
    assert not np.array_equal(f32_idx, exact_oracle(queries, train)[1])


@pytest.mark.parametrize("value", [0, 128, 255])
def test_knn_top2_all_equal_training_images(value):
    """Every training image equal: all are tied, NN1 = 0 and NN2 = 1 (the lower indices)."""
    train = np.full((50, 3, 8, 8), value, dtype=np.uint8)
    queries = np.random.default_rng(1).integers(0, 256, size=(9, 3, 8, 8), dtype=np.uint8)
    queries[0] = value
    for chunk_t in (8192, 7):
        dist, idx = knn_top2(queries, train, chunk_t=chunk_t)
        want_d, want_i = exact_oracle(queries, train)
        np.testing.assert_array_equal(idx, want_i)
        np.testing.assert_array_equal(dist, want_d)
        assert np.all(idx == [0, 1]) and np.all(dist[0] == 0)


def test_knn_top2_two_training_images_and_extremes():
    train = np.stack([np.zeros((3, 32, 32), np.uint8), np.full((3, 32, 32), 255, np.uint8)])
    queries = np.stack([train[0], train[1], np.full((3, 32, 32), 127, np.uint8), np.full((3, 32, 32), 128, np.uint8)])
    dist, idx = knn_top2(queries, train)
    want_d, want_i = exact_oracle(queries, train)
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_array_equal(dist, want_d)
    np.testing.assert_array_equal(idx, [[0, 1], [1, 0], [0, 1], [1, 0]])
    with pytest.raises(ValueError, match="at least 2"):
        knn_top2(queries, train[:1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_top2_exact_on_random_and_clustered_images(seed):
    """Random images, and clusters of near-copies (memorized-like samples: d1 small, d2 near d1)."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, size=(5, 3 * 16 * 16))
    train = np.clip(centres[rng.integers(0, 5, 200)] + rng.integers(-2, 3, size=(200, 768)), 0, 255)
    queries = np.clip(centres[rng.integers(0, 5, 60)] + rng.integers(-1, 2, size=(60, 768)), 0, 255)
    queries = np.concatenate([queries, rng.integers(0, 256, size=(20, 768))]).astype(np.uint8)
    train = train.astype(np.uint8)
    dist, idx = knn_top2(queries, train, chunk_q=33, chunk_t=64)
    want_d, want_i = exact_oracle(queries, train)
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_array_equal(dist, want_d)


def test_knn_top2_exact_under_autocast():
    """A caller's bf16 autocast must not reach the float32 search (its error bound assumes float32)."""
    rng = np.random.default_rng(5)
    train = rng.integers(0, 256, size=(1000, 3, 32, 32), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(50, 3, 32, 32), dtype=np.uint8)
    want_d, want_i = exact_oracle(queries, train)
    for chunk_t in (8192, 50):  # one chunk, and many (where the running best sets the threshold)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dist, idx = knn_top2(queries, train, chunk_t=chunk_t)
        np.testing.assert_array_equal(idx, want_i)
        np.testing.assert_array_equal(dist, want_d)
