"""The random streams of a training and its data order, all a function of ``settings["train"]["seed"]``.

A run resumed from ``state.pt`` therefore ends with bit-identical weights on the CPU:

- initial weights: torch's global RNG seeded once before the network is built (:data:`STREAM_INIT`);
- data order: an endless stream of epochs, each a permutation of the subset drawn from a generator seeded
  by (seed, epoch), or with ``train.order: fixed`` epoch 0's permutation in every epoch (the paper's
  ``--window-size=0``); batches run across epoch boundaries (as EDM's InfiniteSampler, without its window):
  :class:`IndexStream`;
- noise levels and noise: one ``torch.Generator`` handed to the loss, saved and restored with the state
  (:data:`STREAM_NOISE`);
- dropout (and label dropout): torch's global RNG re-seeded from (seed, step) before every forward pass
  (:data:`STREAM_DROPOUT`); a pass over some rows of the batch only (a data-parallel rank's slice, a round of a
  micro-batch) draws them for the whole batch and keeps its rows (:class:`RowDraws`), so that every image gets
  the same masks whatever the slicing;
- augmentation (``train.augment``): :mod:`diffmem.science.augment` seeded by (seed, step) (:data:`STREAM_AUGMENT`).

A training forks torch's global RNG (:func:`forked_global_rng`), so the caller's stream is left as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["IndexStream", "RowDraws", "derive_seed", "forked_global_rng"]

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


# Draws from torch's global RNG that RowDraws cannot cut to rows: refused while it is on (none in the nets today).
_UNCUT = {
    torch.randn, torch.rand_like, torch.randn_like, torch.randint, torch.randint_like, torch.randperm,
    torch.bernoulli, torch.normal, torch.multinomial, torch.poisson, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, F.feature_alpha_dropout, torch.Tensor.bernoulli_, torch.Tensor.uniform_,
    torch.Tensor.normal_, torch.Tensor.random_, torch.Tensor.exponential_, torch.Tensor.geometric_,
    torch.Tensor.cauchy_, torch.Tensor.log_normal_,
}  # fmt: skip


class RowDraws(TorchFunctionMode):
    """While a net runs on rows ``lo:hi`` of a batch of ``total`` images (a data-parallel rank's slice, a round
    of a micro-batch): its draws from torch's global RNG per image (``F.dropout``'s masks, label dropout's
    ``torch.rand(n, ...)``) are drawn for the whole batch, exactly as one pass over the whole batch draws them
    (same shape, dtype and memory layout, in the same order), and cut to these rows. Every image thus gets the
    draws it gets in one pass, whatever the slicing, provided the caller seeds the global RNG alike before each
    pass (as a rank and a round do: (seed, step)). Other draws from the global RNG inside the net are refused:
    they would change with the slicing. Draws from an explicit generator pass through."""

    def __init__(self, lo: int, hi: int, total: int):
        super().__init__()
        self.lo, self.hi, self.total = int(lo), int(hi), int(total)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            return self._dropout(*args, **kwargs)
        if kwargs.get("generator") is None and (func is torch.rand or func in _UNCUT):
            size = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
            if func is torch.rand and size and int(size[0]) in (self.hi - self.lo, self.total):
                if int(size[0]) == self.total:  # the whole batch's draw itself (a compiled net replays it)
                    return func(*args, **kwargs)
                return torch.rand((self.total, *size[1:]), **kwargs)[self.lo : self.hi]
            name = getattr(func, "__qualname__", repr(func))
            raise NotImplementedError(
                f"{name} draws from torch's global RNG inside the net: diffmem.training.streams.RowDraws cannot "
                "give each image the same draws in a slice of the batch (data parallel, micro-batches)"
            )
        return func(*args, **kwargs)

    def _dropout(self, x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
        """``x`` times rows ``lo:hi`` of the whole batch's dropout mask (F.dropout of ones: 0 or the scale
        1 / (1 - p), the values F.dropout multiplies its input by), as ``x * keep * scale``: the same numbers,
        with a boolean mask of the rows saved for the backward pass, as F.dropout saves on CUDA. The whole
        batch's draw lives only here (a transient of ~9 bytes per element of the whole batch's layer)."""
        if not training or p == 0.0 or x.shape[0] == self.total:  # off, or the whole batch's mask being drawn
            return F.dropout(x, p, training, inplace)
        if x.shape[0] != self.hi - self.lo:
            raise ValueError(f"dropout on {x.shape[0]} rows inside a pass over rows {self.lo}:{self.hi}")
        layout = torch.contiguous_format
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            layout = torch.channels_last
        ones = torch.empty((self.total, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=layout)
        scaled = F.dropout(ones.fill_(1), p, True)
        keep, scale = scaled[self.lo : self.hi] != 0, scaled.max()  # scale: F.dropout's own 1 / (1 - p)
        del ones, scaled
        return x.mul_(keep).mul_(scale) if inplace else x * keep * scale
