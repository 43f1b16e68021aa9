"""The random streams of a training and its data order, all a function of ``settings["train"]["seed"]``.

A run resumed from ``state.pt`` therefore ends with bit-identical weights on the CPU:

- initial weights: torch's global RNG seeded once before the network is built (:data:`STREAM_INIT`);
- data order: an endless stream of epochs, each a permutation of the subset drawn from a generator seeded
  by (seed, epoch), or with ``train.order: fixed`` epoch 0's permutation in every epoch (the paper's
  ``--window-size=0``); batches run across epoch boundaries (as EDM's InfiniteSampler, without its window):
  :class:`IndexStream`;
- noise levels and noise: one ``torch.Generator`` handed to the loss, saved and restored with the state
  (:data:`STREAM_NOISE`);
- dropout: torch's global RNG re-seeded from (seed, step) before every forward pass (:data:`STREAM_DROPOUT`);
- augmentation (``train.augment``): :mod:`diffmem.science.augment` seeded by (seed, step) (:data:`STREAM_AUGMENT`).

A training forks torch's global RNG (:func:`forked_global_rng`), so the caller's stream is left as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["IndexStream", "derive_seed", "forked_global_rng"]

# Independent random streams derived from the seed.
STREAM_INIT, STREAM_ORDER, STREAM_NOISE, STREAM_DROPOUT = 1, 2, 3, 4
STREAM_AUGMENT = 5  # train.augment: the step's augmentations (diffmem.science.augment), seeded by (seed, step)


def derive_seed(*keys: int) -> int:
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
        """The permutation of epoch ``e`` (epoch 0's for every ``e`` with ``order="fixed"``)."""
        if self.order == "fixed":
            e = 0
        perm = self._cache.get(e)
        if perm is None:
            self._gen.manual_seed(derive_seed(self.seed, STREAM_ORDER, e))
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


@contextlib.contextmanager
def forked_global_rng(device: torch.device) -> Iterator[None]:
    """torch's global RNG (the CPU's and, on CUDA, ``device``'s) restored on exit: a training seeds it freely."""
    fork_devices = []
    if device.type == "cuda":
        fork_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=fork_devices):
        yield
