"""Image arrays: resizing and conversion between grayscale and RGB (uint8 NCHW)."""

from __future__ import annotations

import numpy as np


def resize(images_u8: np.ndarray, resolution: int, chunk: int = 4096) -> np.ndarray:
    """Resize uint8 NCHW square images to ``resolution`` x ``resolution``, kept uint8.

    Integer downsampling factors average each block (area); other downsampling is
    antialiased bilinear; upsampling is bilinear. The same size returns the input.
    """
    images = np.asarray(images_u8)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"resize expects uint8 NCHW images, got {images.dtype} {images.shape}")
    n, c, h, w = images.shape
    if h != w:
        raise ValueError(f"resize expects square images, got {h}x{w}")
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    r = int(resolution)
    if r == h:
        return images_u8

    import torch
    import torch.nn.functional as F

    out = np.empty((n, c, r, r), dtype=np.uint8)
    for start in range(0, n, chunk):
        x = torch.from_numpy(images[start : start + chunk].astype(np.float32))
        if r < h and h % r == 0:
            y = F.interpolate(x, size=(r, r), mode="area")
        elif r < h:
            y = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        else:
            y = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        out[start : start + chunk] = y.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Convert uint8 NCHW images between grayscale (1) and RGB (3)."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 3 and channels == 1:
        weights = np.array([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)  # ITU-R 601 luma
        return np.clip(np.rint((images * weights).sum(axis=1, keepdims=True)), 0, 255).astype(np.uint8)
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=1)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


