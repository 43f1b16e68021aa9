"""Image arrays: resizing and conversion between grayscale and RGB (uint8 NCHW)."""

from __future__ import annotations

import numpy as np

#: How images are resized (``data.resize``): ``area`` (ours) or ``lanczos`` (the paper's dataset tool).
RESIZE_METHODS = ("area", "lanczos")


def resize(images_u8: np.ndarray, resolution: int, method: str, chunk: int = 4096) -> np.ndarray:
    """Resize uint8 NCHW square images to ``resolution`` x ``resolution``, kept uint8.

    ``method`` (``data.resize``): ``area`` averages each block for integer downsampling factors, is
    antialiased bilinear for other downsampling and bilinear for upsampling; ``lanczos`` is PIL's
    ``Image.resize(..., LANCZOS)`` of each image (HWC, or HW for one channel), as the paper's dataset tool
    (EDM's ``dataset_tool.py``) resizes. The same size returns the input.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"data.resize: expected one of {', '.join(RESIZE_METHODS)}, got {method!r}")
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
    if method == "lanczos":
        return _resize_lanczos(images, r)

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


def to_net_resolution(images_u8: np.ndarray, resolution: int) -> np.ndarray:
    """The images a net of side ``resolution`` (``model.resolution``) trains on: the data enlarged by pixel
    repetition, each pixel a k x k block (k = net side / data side, an integer). The same side returns the
    input. Nothing is interpolated, so the data's information and its pairwise distances (times k) stay."""
    images = np.asarray(images_u8)
    h, r = images.shape[-1], int(resolution)
    if r == h:
        return images_u8
    if r % h:
        raise ValueError(f"model.resolution {r} is not a multiple of the data's side {h}")
    k = r // h
    return np.ascontiguousarray(images.repeat(k, axis=-2).repeat(k, axis=-1))


def to_data_resolution(images_u8: np.ndarray, resolution: int) -> np.ndarray:
    """Samples of a net working at a multiple k of the data's side ``resolution``, brought back to it: the
    mean of each k x k block, rounded (``resize(..., "area")``), so that a sample which is a pixel-repeated
    training image becomes that image exactly. The same side returns the input."""
    images = np.asarray(images_u8)
    if images.shape[-1] % int(resolution):
        raise ValueError(f"samples of side {images.shape[-1]} cannot be reduced to side {resolution} by blocks")
    return resize(images, int(resolution), "area")


def _resize_lanczos(images: np.ndarray, r: int) -> np.ndarray:
    from PIL import Image

    n, c = images.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"data.resize: lanczos resizes 1- or 3-channel images, got {c} channels")
    out = np.empty((n, c, r, r), dtype=np.uint8)
    for i in range(n):
        a = images[i, 0] if c == 1 else images[i].transpose(1, 2, 0)
        b = np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((r, r), Image.Resampling.LANCZOS))
        out[i] = b[None] if c == 1 else b.transpose(2, 0, 1)
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
