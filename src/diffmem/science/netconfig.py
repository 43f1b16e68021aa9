"""Network settings without torch: the defaults, their validation and normalization.

``resolve_net_config`` turns a partial net config into the full, canonical one (or raises ValueError
naming the key). It lives here, apart from the layers in ``diffmem.science.nets`` (which re-exports it), so that
building the workflow's DAG (run ids are hashes of canonical settings) needs neither torch nor numpy.

Two nets have names: :data:`NET_DEFAULTS`, what a key left out means, is the workflow's default net (the
``model`` defaults of its config schema on its default data, digits at 8x8; tests/plan/test_defaults.py keeps the
two equal, key by key); :data:`PAPER_NET` is the paper's basic DDPM++, the base of ``describe-net``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "ARCH_DEFAULTS",
    "NET_DEFAULTS",
    "PAPER_NET",
    "group_count",
    "parse_assignments",
    "resolve_net_config",
    "skip_count",
]

# What a key that a net config leaves out means: the workflow's default net (its schema's ``model`` defaults;
# resolution and img_channels those of its default data, which the workflow sets from data.resolution and
# data.source). ``None`` means "the arch's default" (see ARCH_DEFAULTS); ``skip`` None means every skip
# connection is on.
NET_DEFAULTS: dict[str, Any] = {
    "arch": "ddpmpp",  # Family: "ddpmpp" (DDPM++) or "ncsnpp" (NCSN++).
    "resolution": 8,  # Image side at input and output, pixels.
    "img_channels": 1,  # Colour channels at input and output.
    "model_channels": 16,  # Base number of channels (the paper's "width").
    "channel_mult": [1, 2],  # Per-level channel multipliers; level l works at resolution >> l.
    "channel_mult_emb": 4,  # Embedding vector size = model_channels * channel_mult_emb.
    "num_blocks": 1,  # Residual blocks per level in the encoder (the paper's "depth").
    "attn_resolutions": [],  # Resolutions (pixels) whose blocks end with self-attention.
    "dropout": 0.0,  # Dropout probability inside the residual blocks.
    "label_dim": 0,  # Number of classes for one-hot conditioning, 0 = unconditional.
    "augment_dim": 0,  # Width of the augmentation labels (diffmem.science.augment), 0 = none.
    "label_dropout": 0.0,  # Probability of zeroing a sample's label in training (CFG), 0 = off.
    "embedding": None,  # Noise embedding: "positional" or "fourier"; None = arch default.
    "channel_mult_noise": None,  # Noise embedding size = model_channels * this; None = arch default.
    "encoder_type": None,  # "standard", "skip" or "residual"; None = arch default.
    "decoder_type": None,  # "standard" or "skip"; None = arch default.
    "resample_filter": None,  # 1-D FIR taps for up/downsampling; None = arch default.
    "skip": None,  # 0/1 mask over the encoder-to-decoder skips; None = all on.
}

# The paper's basic DDPM++ at 32x32x3 (35,125,251 parameters), every key given.
PAPER_NET: dict[str, Any] = {
    "arch": "ddpmpp",
    "resolution": 32,
    "img_channels": 3,
    "model_channels": 128,
    "channel_mult": [2, 2, 2],
    "channel_mult_emb": 4,
    "num_blocks": 2,
    "attn_resolutions": [16],
    "dropout": 0.13,
    "label_dim": 0,
    "augment_dim": 0,
    "label_dropout": 0.0,
    "embedding": None,
    "channel_mult_noise": None,
    "encoder_type": None,
    "decoder_type": None,
    "resample_filter": None,
    "skip": None,
}
assert list(PAPER_NET) == list(NET_DEFAULTS)

# What ``None`` resolves to, per arch (Song et al.'s DDPM++ and NCSN++ as configured by Karras et al.).
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "ddpmpp": {
        "embedding": "positional",
        "channel_mult_noise": 1,
        "encoder_type": "standard",
        "decoder_type": "standard",
        "resample_filter": [1, 1],
    },
    "ncsnpp": {
        "embedding": "fourier",
        "channel_mult_noise": 2,
        "encoder_type": "residual",
        "decoder_type": "standard",
        "resample_filter": [1, 3, 3, 1],
    },
}

EMBEDDINGS = ("positional", "fourier")
ENCODER_TYPES = ("standard", "skip", "residual")
DECODER_TYPES = ("standard", "skip")

GN_MAX_GROUPS = 32  # GroupNorm uses min(32, channels // 4) groups.
GN_MIN_CHANNELS_PER_GROUP = 4


# ---------------------------------------------------------------------------------------------------
# Configuration.


def _as_int(key: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ValueError(f"net config {key!r}: expected an integer, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"net config {key!r}: expected an integer, got {value!r}") from None
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise ValueError(f"net config {key!r}: expected an integer, got {value!r}")
    out = int(as_float)
    if minimum is not None and out < minimum:
        raise ValueError(f"net config {key!r}: must be >= {minimum}, got {out}")
    return out


def _as_float(key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool):
        raise ValueError(f"net config {key!r}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"net config {key!r}: expected a number, got {value!r}") from None
    if not lo <= out < hi:
        raise ValueError(f"net config {key!r}: must lie in [{lo}, {hi}), got {out}")
    return out


def _as_int_list(key: str, value: Any, minimum: int | None = None) -> list[int]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v != ""]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"net config {key!r}: expected a list of integers, got {value!r}")
    return [_as_int(key, v, minimum) for v in value]


def _as_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    out = str(value).strip().lower()
    if out not in choices:
        raise ValueError(f"net config {key!r}: must be one of {list(choices)}, got {value!r}")
    return out


def skip_count(num_blocks: int, num_levels: int) -> int:
    """Number of encoder-to-decoder skip connections: one per encoder output, (blocks + 1) per level."""
    return (num_blocks + 1) * num_levels


def resolve_net_config(overrides: dict | None = None) -> dict:
    """Return the full, normalized network config: NET_DEFAULTS updated by ``overrides``.

    Arch-dependent ``None`` entries are filled from ARCH_DEFAULTS, ``skip`` None becomes an explicit list
    of ones, numbers and lists get canonical types, so that equal networks give equal dicts (and the
    result resolves to itself). Unknown keys and impossible values raise ValueError naming the key.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(NET_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown net config key(s) {unknown}; known keys: {sorted(NET_DEFAULTS)}")
    raw = {**NET_DEFAULTS, **overrides}

    cfg: dict[str, Any] = {}
    cfg["arch"] = _as_choice("arch", raw["arch"], tuple(ARCH_DEFAULTS))
    arch = ARCH_DEFAULTS[cfg["arch"]]
    for key in arch:
        if raw[key] is None:
            raw[key] = arch[key]

    cfg["resolution"] = _as_int("resolution", raw["resolution"], 1)
    cfg["img_channels"] = _as_int("img_channels", raw["img_channels"], 1)
    cfg["model_channels"] = _as_int("model_channels", raw["model_channels"], 1)
    cfg["channel_mult"] = _as_int_list("channel_mult", raw["channel_mult"], 1)
    if not cfg["channel_mult"]:
        raise ValueError("net config 'channel_mult': needs at least one level")
    cfg["channel_mult_emb"] = _as_int("channel_mult_emb", raw["channel_mult_emb"], 1)
    cfg["num_blocks"] = _as_int("num_blocks", raw["num_blocks"], 1)
    cfg["attn_resolutions"] = sorted(set(_as_int_list("attn_resolutions", raw["attn_resolutions"], 1)), reverse=True)
    cfg["dropout"] = _as_float("dropout", raw["dropout"], 0.0, 1.0)
    cfg["label_dim"] = _as_int("label_dim", raw["label_dim"], 0)
    cfg["augment_dim"] = _as_int("augment_dim", raw["augment_dim"], 0)
    cfg["label_dropout"] = _as_float("label_dropout", raw["label_dropout"], 0.0, 1.0)
    cfg["embedding"] = _as_choice("embedding", raw["embedding"], EMBEDDINGS)
    cfg["channel_mult_noise"] = _as_int("channel_mult_noise", raw["channel_mult_noise"], 1)
    cfg["encoder_type"] = _as_choice("encoder_type", raw["encoder_type"], ENCODER_TYPES)
    cfg["decoder_type"] = _as_choice("decoder_type", raw["decoder_type"], DECODER_TYPES)
    cfg["resample_filter"] = _as_int_list("resample_filter", raw["resample_filter"], 0)
    if not cfg["resample_filter"] or sum(cfg["resample_filter"]) == 0:
        raise ValueError(f"net config 'resample_filter': needs positive taps, got {raw['resample_filter']!r}")

    _check_levels(cfg)
    cfg["skip"] = _skip_mask(raw["skip"], cfg)
    for channels in _normalized_channel_counts(cfg):
        group_count(channels)
    return {key: cfg[key] for key in NET_DEFAULTS}


def parse_assignments(items: list[str]) -> dict:
    """Net overrides from ``KEY=VALUE`` strings (``describe-net``'s arguments): keys of :data:`NET_DEFAULTS`;
    a list key's value comma separated (``channel_mult=1,2``; ``attn_resolutions=`` for none), any other
    value a string that :func:`resolve_net_config` converts and checks. A malformed item, an unknown key or
    a key given twice raises ValueError."""
    lists = {key for key, value in resolve_net_config().items() if isinstance(value, list)}
    out: dict = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        if key not in NET_DEFAULTS:
            raise ValueError(f"unknown key {key!r}; known keys: {', '.join(NET_DEFAULTS)}")
        if key in out:
            raise ValueError(f"key {key!r} given twice")
        out[key] = [v.strip() for v in value.split(",") if v.strip() != ""] if key in lists else value
    return out


def _check_levels(cfg: dict) -> None:
    """ValueError unless the resolution halves at every level, attention sits at resolutions of the net
    and the positional embedding has channels enough."""
    levels = len(cfg["channel_mult"])
    res = cfg["resolution"]
    if res % (1 << (levels - 1)) != 0:
        raise ValueError(
            f"net config 'resolution': {res} cannot be halved {levels - 1} times "
            f"(channel_mult has {levels} levels); use a multiple of {1 << (levels - 1)}"
        )
    level_res = [res >> lv for lv in range(levels)]
    bad_attn = [r for r in cfg["attn_resolutions"] if r not in level_res]
    if bad_attn:
        raise ValueError(
            f"net config 'attn_resolutions': {bad_attn} is not a resolution of this net; its levels work at {level_res}"
        )
    if cfg["embedding"] == "positional" and cfg["model_channels"] * cfg["channel_mult_noise"] < 4:
        raise ValueError("net config 'model_channels': the positional embedding needs at least 4 channels")


def _skip_mask(value: Any, cfg: dict) -> list[int]:
    """The 0/1 skip mask of a net (``value`` None = all on), one entry per skip connection."""
    levels = len(cfg["channel_mult"])
    n_skips = skip_count(cfg["num_blocks"], levels)
    if value is None:
        return [1] * n_skips
    mask = _as_int_list("skip", value)
    if any(m not in (0, 1) for m in mask):
        raise ValueError(f"net config 'skip': entries must be 0 or 1, got {mask}")
    if len(mask) != n_skips:
        raise ValueError(
            f"net config 'skip': expected {n_skips} entries ((num_blocks + 1) * len(channel_mult) = "
            f"({cfg['num_blocks']} + 1) * {levels}), got {len(mask)}"
        )
    return mask


def _normalized_channel_counts(cfg: dict) -> set[int]:
    """Channel counts that meet a GroupNorm in the net (block inputs and outputs, decoder concats)."""
    mc, mults, nb = cfg["model_channels"], cfg["channel_mult"], cfg["num_blocks"]
    counts, skips, c = set(), [mc], mc
    for mult in mults:
        for _ in range(nb):
            counts.update((c, mc * mult))
            c = mc * mult
            skips.append(c)
        skips.append(c)  # the next level's downsampling block (one too many after the last level)
    skips.pop()
    for mult in reversed(mults):
        counts.add(c)
        for _ in range(nb + 1):
            counts.add(c + skips.pop())
            c = mc * mult
            counts.add(c)
    return counts


def group_count(channels: int) -> int:
    """GroupNorm groups over ``channels``: min(32, channels // 4), which must divide ``channels``."""
    groups = min(GN_MAX_GROUPS, channels // GN_MIN_CHANNELS_PER_GROUP)
    if groups < 1 or channels % groups != 0:
        raise ValueError(
            f"net config 'model_channels'/'channel_mult': a GroupNorm over {channels} channels cannot use "
            f"{groups} groups (min({GN_MAX_GROUPS}, channels // {GN_MIN_CHANNELS_PER_GROUP})); every channel "
            f"count must be a multiple of 4 below 128 and of 32 from 128 up"
        )
    return groups
