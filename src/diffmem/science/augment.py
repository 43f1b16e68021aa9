"""Non-leaking geometric augmentation with augmentation labels (the EDM recipe, Karras et al. 2022, App. F.2).

Each training image is transformed by a random composition of geometric augmentations; the parameters
of what was done are encoded as an *augmentation label* vector that the network receives as extra
conditioning (``model.augment_dim``, a bias-free projection added to the noise embedding). At sampling
time the labels are zero (no augmentation), so the model learns the un-augmented distribution and the
augmentations do not "leak" into the samples.

Written from the recipe's description and its published settings (NVlabs/edm ``train.py``: for CIFAR-10
``--augment=0.12`` with x-flip, y-flip, isotropic scaling, arbitrary rotation, anisotropic scaling and
fractional translation enabled, ``augment_dim = 9``), not from its code. Settings (``train.augment``,
defaults in the workflow's schema): ``p`` the overall probability, and per kind a multiplier: the kind is
applied to an image with probability min(1, multiplier x p), each kind independently. EDM's CIFAR-10
x-flip multiplier is 1e8: with any p > 0 every image gets a fresh 50/50 x-flip coin.

Kinds, in the order they are applied and the order of their label entries (:data:`KINDS`, widths in
:data:`LABEL_WIDTHS`; a kind whose multiplier is 0 has no entries; p = 0 means no augmentation and no labels):

==============  =====  ==========================================================================
kind            width  label entries (all 0 when the kind is not applied to the image)
==============  =====  ==========================================================================
xflip           1      1 if the image was mirrored left-right (a 50/50 coin when applied)
yflip           1      1 if it was mirrored top-bottom (a 50/50 coin when applied)
rotate_int      2      k = 0..3 quarter turns counter-clockwise (uniform): [k in (1, 2), k in (2, 3)]
translate_int   2      integer shift (tx, ty), uniform in +-1/8 of the side, rounded to whole
                       pixels, mirrored at the border: [tx / (W / 8), ty / (H / 8)]
scale           1      w ~ N(0, 1): isotropic scale 2^(0.2 w); [w]
rotate_frac     2      angle a ~ U(-pi, pi): [cos a - 1, sin a]
aniso           2      w ~ N(0, 1), axis angle r (U(-pi, pi) with probability 1/2, else 0): scale
                       2^(0.2 w) along r and 2^(-0.2 w) across it; [w cos r, w sin r]
translate_frac  2      (u, v) ~ N(0, 1)^2: shift by (u W / 8, v H / 8) pixels; [u, v]
==============  =====  ==========================================================================

The four pixel-blitting kinds are exact pixel moves; the four fractional ones are composed into one
affine map per image and resampled once, bilinearly, with the image mirrored at its border (EDM resamples
at twice the resolution with a wavelet low-pass filter: a sharper anti-aliased result; ours is the plain
bilinear one). Images whose fractional transform is the identity are not resampled (bit-exact).

Randomness: every call takes an integer ``seed`` (the training loop derives it from the run's seed and
the step) and draws all parameters from a CPU ``torch.Generator`` seeded with it, in a fixed order that
does not depend on the images or the device, so training is deterministic and a resumed run draws the same
augmentations as an uninterrupted one.

This module is torch-free at import (the workflow resolves ``model.augment_dim`` from the settings without
torch); :func:`augment` imports torch when called.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

KINDS = ("xflip", "yflip", "rotate_int", "translate_int", "scale", "rotate_frac", "aniso", "translate_frac")
LABEL_WIDTHS = {
    "xflip": 1,
    "yflip": 1,
    "rotate_int": 2,
    "translate_int": 2,
    "scale": 1,
    "rotate_frac": 2,
    "aniso": 2,
    "translate_frac": 2,
}
GEOMETRIC = ("scale", "rotate_frac", "aniso", "translate_frac")  # resampled (the others move whole pixels)

TRANSLATE_INT_MAX = 0.125  # integer translation range, a fraction of the side
SCALE_STD = 0.2  # log2 std of isotropic scaling
ROTATE_FRAC_MAX = 1.0  # rotation range, a fraction of half a turn each way
ANISO_STD = 0.2  # log2 std of anisotropic scaling
ANISO_ROTATE_PROB = 0.5  # probability that anisotropic scaling is along a rotated axis
TRANSLATE_FRAC_STD = 0.125  # std of fractional translation, a fraction of the side


def check(cfg: Mapping[str, Any] | None) -> dict[str, float]:
    """The augmentation settings as {p, <kind>: multiplier} floats (``None`` = off). ValueError names the key."""
    if cfg is None:
        return {"p": 0.0, **{k: 0.0 for k in KINDS}}
    if not isinstance(cfg, Mapping):
        raise ValueError(f"train.augment must be a mapping, got {cfg!r}")
    unknown = sorted(set(cfg) - {"p", *KINDS})
    if unknown:
        raise ValueError(f"train.augment.{unknown[0]} is not a known key; known: p, {', '.join(KINDS)}")
    if "p" not in cfg:
        raise ValueError("train.augment.p is missing (the probability, 0 = off)")
    out = {}
    for key in ("p", *KINDS):
        v = cfg.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"train.augment.{key}={v!r}; allowed: a number >= 0")
        out[key] = float(v)
    if out["p"] > 1:
        raise ValueError(f"train.augment.p={out['p']!r}; allowed: 0 to 1")
    return out


def enabled_kinds(cfg: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The kinds that can fire (p > 0 and multiplier > 0), in label order."""
    c = check(cfg)
    return tuple(k for k in KINDS if c["p"] > 0 and c[k] > 0)


def augment_dim(cfg: Mapping[str, Any] | None) -> int:
    """Width of the augmentation label vector (``model.augment_dim``): 0 when augmentation is off; 9 for
    EDM's CIFAR-10 setting."""
    return sum(LABEL_WIDTHS[k] for k in enabled_kinds(cfg))


def for_model(cfg: Mapping[str, Any] | None, model: Mapping[str, Any]) -> dict[str, float]:
    """:func:`check`, and that the net takes labels of this width (``model.augment_dim``, which the workflow
    resolves from ``train.augment``); ValueError otherwise."""
    c = check(cfg)
    want, have = augment_dim(c), int(model.get("augment_dim", 0) or 0)
    if want != have:
        raise ValueError(f"train.augment gives {want} augmentation labels but model.augment_dim is {have}")
    return c


def label_layout(cfg: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """(kind, entry index within the kind) for each column of the label vector."""
    return [(k, i) for k in enabled_kinds(cfg) for i in range(LABEL_WIDTHS[k])]


def augment(images, cfg: Mapping[str, Any] | None, seed: int):
    """(augmented images, labels (N, augment_dim) float32) for float images (N, C, H, W); with p = 0 the
    images themselves and an (N, 0) label. Deterministic in ``seed``; the images' device and dtype are kept."""
    import torch

    c = check(cfg)
    kinds = enabled_kinds(c)
    n, dev = images.shape[0], images.device
    if not kinds:
        return images, torch.zeros((n, 0), dtype=torch.float32, device=dev)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))

    def fires(kind: str) -> torch.Tensor:  # (N,) bool: the kind is applied to each image
        return torch.rand(n, generator=gen, dtype=torch.float64) < min(1.0, c[kind] * c["p"])

    # Pixel blitting (exact), then one inverse affine map per image (output -> input pixel) for the
    # fractional kinds, resampled once. Each kind draws its parameters, then whether it fires.
    x, labels = images, []
    inv = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    moved = torch.zeros(n, dtype=torch.bool)
    for kind in kinds:
        if kind in GEOMETRIC:
            maps, on, label = _FRACTIONAL[kind](gen, fires, x.shape)
            for m in maps:
                inv = inv @ m
            moved |= on
        else:
            x, label = _BLITS[kind](x, gen, fires)
        labels.append(label)
    x = _resample_moved(x, inv, moved)
    lab = torch.cat(labels, dim=1).to(torch.float32)
    assert lab.shape == (n, augment_dim(c))
    return x, lab.to(dev)


# Each kind: ``_BLITS[kind](x, gen, fires) -> (x, label)`` or ``_FRACTIONAL[kind](gen, fires, shape) ->
# (inverse maps to compose in order, fired (N,) bool, label)``; labels are (N, width) float64.


def _blit_flip(x, gen, fires, kind: str):
    """xflip (mirror left-right) or yflip (top-bottom) on a 50/50 coin where the kind fires."""
    import torch

    coin = torch.randint(2, (x.shape[0],), generator=gen)
    on = fires(kind) & (coin == 1)
    x = torch.where(on.to(x.device)[:, None, None, None], x.flip(3 if kind == "xflip" else 2), x)
    return x, on.to(torch.float64)[:, None]


def _blit_rotate_int(x, gen, fires):
    """k = 0..3 quarter turns counter-clockwise where rotate_int fires (square images only)."""
    import torch

    n, _, h, w = x.shape
    dev = x.device
    k = torch.randint(4, (n,), generator=gen)
    k = torch.where(fires("rotate_int"), k, torch.zeros_like(k))
    if h != w and bool((k % 2 == 1).any()):
        raise ValueError(f"train.augment.rotate_int needs square images, got {h}x{w}")
    rotated = [torch.rot90(x, q, dims=(2, 3)) for q in range(4)]
    x = torch.stack(rotated)[k.to(dev), torch.arange(n, device=dev)]
    return x, torch.stack([(k == 1) | (k == 2), (k == 2) | (k == 3)], dim=1).to(torch.float64)


def _blit_translate_int(x, gen, fires):
    """Whole-pixel shift within +-TRANSLATE_INT_MAX of the side, mirrored at the border."""
    import torch

    n, _, h, w = x.shape
    dev = x.device
    u = torch.rand((2, n), generator=gen, dtype=torch.float64) * 2 - 1
    u = torch.where(fires("translate_int")[None], u, torch.zeros_like(u))
    tx = torch.round(u[0] * (w * TRANSLATE_INT_MAX)).to(torch.int64)
    ty = torch.round(u[1] * (h * TRANSLATE_INT_MAX)).to(torch.int64)
    # output pixel (i, j) takes input (i - ty, j - tx), mirrored at the border (edge pixels not repeated)
    cols = _mirror(torch.arange(w)[None] - tx[:, None], w).to(dev)  # (N, W)
    rows = _mirror(torch.arange(h)[None] - ty[:, None], h).to(dev)  # (N, H)
    x = x.gather(3, cols[:, None, None, :].expand(n, x.shape[1], h, w))
    x = x.gather(2, rows[:, None, :, None].expand(n, x.shape[1], h, w))
    return x, torch.stack([tx / (w * TRANSLATE_INT_MAX), ty / (h * TRANSLATE_INT_MAX)], dim=1)


def _draw_scale(gen, fires, shape):
    """Isotropic scale 2^(SCALE_STD w), w ~ N(0, 1)."""
    import torch

    z = torch.randn(shape[0], generator=gen, dtype=torch.float64)
    on = fires("scale")
    z = torch.where(on, z, torch.zeros_like(z))
    s = torch.exp2(z * SCALE_STD)
    return [_scale(1 / s, 1 / s)], on, z[:, None]


def _draw_rotate_frac(gen, fires, shape):
    """Rotation by a ~ U(-pi, pi) x ROTATE_FRAC_MAX."""
    import torch

    a = (torch.rand(shape[0], generator=gen, dtype=torch.float64) * 2 - 1) * (math.pi * ROTATE_FRAC_MAX)
    on = fires("rotate_frac")
    a = torch.where(on, a, torch.zeros_like(a))
    # the image turns by -a in (x right, y down) pixel coordinates
    return [_rotate(a)], on, torch.stack([torch.cos(a) - 1, torch.sin(a)], dim=1)


def _draw_aniso(gen, fires, shape):
    """Scale 2^(ANISO_STD w) along an axis at angle r (random with probability ANISO_ROTATE_PROB, else 0)
    and its inverse across it."""
    import torch

    n = shape[0]
    z = torch.randn(n, generator=gen, dtype=torch.float64)
    r = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    on = fires("aniso")
    z = torch.where(on, z, torch.zeros_like(z))
    r = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < ANISO_ROTATE_PROB, r, torch.zeros_like(r))
    s = torch.exp2(z * ANISO_STD)
    return [_rotate(-r), _scale(1 / s, s), _rotate(r)], on, torch.stack([z * torch.cos(r), z * torch.sin(r)], dim=1)


def _draw_translate_frac(gen, fires, shape):
    """Shift by (u W, v H) x TRANSLATE_FRAC_STD pixels, (u, v) ~ N(0, 1)^2."""
    import torch

    _, _, h, w = shape
    t = torch.randn((2, shape[0]), generator=gen, dtype=torch.float64)
    on = fires("translate_frac")
    t = torch.where(on[None], t, torch.zeros_like(t))
    shift = _translate(-t[0] * (w * TRANSLATE_FRAC_STD), -t[1] * (h * TRANSLATE_FRAC_STD))
    return [shift], on, torch.stack([t[0], t[1]], dim=1)


_BLITS = {
    "xflip": functools.partial(_blit_flip, kind="xflip"),
    "yflip": functools.partial(_blit_flip, kind="yflip"),
    "rotate_int": _blit_rotate_int,
    "translate_int": _blit_translate_int,
}
_FRACTIONAL = {
    "scale": _draw_scale,
    "rotate_frac": _draw_rotate_frac,
    "aniso": _draw_aniso,
    "translate_frac": _draw_translate_frac,
}
assert set(_BLITS) | set(_FRACTIONAL) == set(KINDS) and set(_FRACTIONAL) == set(GEOMETRIC)


def _resample_moved(x, inv, moved):
    """x with the images where ``moved`` resampled at their inverse maps ``inv`` (the others untouched)."""
    import torch

    if not bool(moved.any()):
        return x
    idx = torch.nonzero(moved).reshape(-1)
    out = _resample(x[idx.to(x.device)], inv[idx])
    x = x.clone()
    x[idx.to(x.device)] = out.to(x.dtype)
    return x


def _mirror(i, size: int):
    """Indices reflected into 0..size-1 without repeating the edge (…, 2, 1, 0, 1, 2, …)."""
    if size == 1:
        return i * 0
    period = 2 * size - 2
    i = i % period
    return (size - 1) - ((size - 1) - i).abs()


def _scale(sx, sy):
    import torch

    m = torch.eye(3, dtype=torch.float64).repeat(sx.shape[0], 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(a):
    import torch

    m = torch.eye(3, dtype=torch.float64).repeat(a.shape[0], 1, 1)
    m[:, 0, 0], m[:, 0, 1] = torch.cos(a), -torch.sin(a)
    m[:, 1, 0], m[:, 1, 1] = torch.sin(a), torch.cos(a)
    return m


def _translate(tx, ty):
    import torch

    m = torch.eye(3, dtype=torch.float64).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _resample(x, inv):
    """Bilinear resampling of (M, C, H, W) images at inv @ (output pixel, centred coordinates), mirrored at
    the border."""
    import torch
    import torch.nn.functional as F

    m, _, h, w = x.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) - cy, torch.arange(w, dtype=torch.float64) - cx, indexing="ij"
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3)  # (1, HW, 3)
    src = (pts @ inv.transpose(1, 2))[..., :2]  # (M, HW, 2): input pixel, centred
    grid = torch.stack([src[..., 0] / max(cx, 0.5), src[..., 1] / max(cy, 0.5)], dim=-1).reshape(m, h, w, 2)
    grid = grid.to(device=x.device, dtype=torch.float32)
    return F.grid_sample(x.to(torch.float32), grid, mode="bilinear", padding_mode="reflection", align_corners=True)
