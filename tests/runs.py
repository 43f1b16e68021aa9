"""Small training runs shared by the tests (a tiny 1x8x8 net, blob images, fixed settings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffmem.io import read_json, torch_load
from diffmem.plan.settings_factory import run_settings

#: EDM's CIFAR-10 augmentation (NVlabs/edm train.py: --augment=0.12 with its default pipe), in our keys.
EDM_CIFAR10 = {
    "p": 0.12,
    "xflip": 1e8,
    "yflip": 1,
    "rotate_int": 0,
    "translate_int": 0,
    "scale": 1,
    "rotate_frac": 1,
    "aniso": 1,
    "translate_frac": 1,
}

N_IMAGES = 32


def make_subset(n: int = N_IMAGES, label_dim: int = 0, seed: int = 0) -> dict:
    """Smooth random 1x8x8 images (blobs), optionally with labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:8, 0:8]
    cy, cx = rng.uniform(1, 6, (2, n, 1, 1))
    img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
    images = np.round(img * 255).astype(np.uint8)[:, None]
    cond = rng.integers(0, label_dim, n) if label_dim else np.full(n, -1)
    return {"images": images, "cond_labels": cond.astype(np.int64), "label_dim": label_dim}


#: The tiny net of the tests' runs (1x8x8 images, 8 channels, [1, 2], one block).
TINY_NET = {"arch": "ddpmpp", "resolution": 8, "img_channels": 1, "model_channels": 8, "channel_mult": [1, 2],
            "num_blocks": 1, "attn_resolutions": [], "dropout": 0.1, "label_dim": 0}  # fmt: skip


def make_settings(steps: int = 20, **train_overrides) -> dict:
    """The tests' tiny run (:func:`diffmem.plan.settings_factory.run_settings`: the schema's defaults for
    every key not given here) of ``steps`` steps, with ``train_overrides`` over its training keys."""
    return run_settings(
        data={"source": "test", "size": N_IMAGES, "labels": "none", "seed": 0},
        model=TINY_NET,
        diffusion={"precond": "edm"},
        train={
            "lr": 2e-3,
            "batch": 16,
            "duration": {"unit": "steps", "value": steps},
            "warmup": {"unit": "images", "value": 64, "mode": "linear"},
            "ema": {"mode": "decay", "decay": 0.9, "rampup": 0.05},
            "snapshots": 2,
            "checkpoint_every": 5,
            **train_overrides,
        },
        sample={"n": 10},
    )


def final_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    summary = read_json(out_dir / "train.json")
    return torch_load(out_dir / summary["snapshots"][-1]["file"])


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
