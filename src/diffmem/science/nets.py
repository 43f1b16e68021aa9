"""DDPM++ / NCSN++ U-Nets (the "SongUNet" family of Karras et al. 2022), with the paper's ablation knobs.

Written from the architecture as described by Song et al. 2021 ("Score-Based Generative Modeling through
SDEs") and Karras et al. 2022 ("Elucidating the Design Space..."): a time (and optional class) embedding
drives residual blocks arranged as a U-Net; every encoder output is an encoder-to-decoder skip
connection that the decoder concatenates to its input. The paper's basic DDPM++ (``PAPER_NET``) has
35,125,251 parameters, 55,732,739 with 4 blocks per resolution.

The ``skip`` knob is a 0/1 mask over the (num_blocks + 1) * len(channel_mult) skip connections, in the
order the encoder produces them. A disabled skip feeds zeros of the same shape into the decoder, so the
parameter count does not change: the ablation removes the path, not the capacity.

The network maps ``(x, noise_labels, class_labels)`` to F(x); the preconditioning that turns F into a
denoiser D(x; sigma) lives in ``diffmem.science.diffusion``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The settings (defaults, validation, canonical form) are torch-free and live in diffmem.science.netconfig, so
# that the workflow can resolve them without torch; they are re-exported here for existing callers.
from diffmem.science.netconfig import (
    ARCH_DEFAULTS,
    NET_DEFAULTS,
    PAPER_NET,
    group_count,
    resolve_net_config,
    skip_count,
)

__all__ = [
    "ARCH_DEFAULTS",
    "NET_DEFAULTS",
    "PAPER_NET",
    "SongUNet",
    "build_net",
    "count_params",
    "describe_net",
    "resolve_net_config",
    "skip_count",
]

FOURIER_SCALE = 16.0  # Std of the random Fourier frequencies (NCSN++).
MAX_POSITIONS = 10000  # Longest period of the positional (transformer) embedding.
SKIP_SCALE = math.sqrt(0.5)  # Residual sums are scaled by 1/sqrt(2) to keep unit variance.
GN_EPS = 1e-6  # GroupNorm epsilon.
ZERO_GAIN = 1e-5  # Init gain of layers that close a residual branch or produce the output.
ATTN_QKV_GAIN = math.sqrt(0.2)  # Init gain of the attention query/key/value projection.


# ---------------------------------------------------------------------------------------------------
# Layers.


def _xavier(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Xavier-uniform weights scaled by ``gain``, zero bias (the init used throughout DDPM++/NCSN++)."""
    nn.init.xavier_uniform_(module.weight, gain=gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def _linear(cin: int, cout: int, gain: float = 1.0) -> nn.Linear:
    return _xavier(nn.Linear(cin, cout), gain)


def _conv(cin: int, cout: int, kernel: int, gain: float = 1.0, padding: int | None = None) -> nn.Conv2d:
    return _xavier(nn.Conv2d(cin, cout, kernel, padding=kernel // 2 if padding is None else padding), gain)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(group_count(channels), channels, eps=GN_EPS)


class FIRResample(nn.Module):
    """Factor-2 up- or downsampling with a separable FIR filter (outer product of ``taps``, unit gain).

    Down: depthwise strided convolution ([1,1] = 2x2 average pooling). Up: depthwise transposed
    convolution with the filter scaled by 4 ([1,1] = nearest-neighbour upsampling).
    """

    def __init__(self, direction: str, taps: list[int], pad: int | None = None):
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self.direction = direction
        f = torch.as_tensor(taps, dtype=torch.float32)
        f = torch.outer(f, f) / f.sum() ** 2
        self.register_buffer("kernel", f[None, None], persistent=False)
        self.pad = (len(taps) - 1) // 2 if pad is None else pad  # keeps the size an exact factor of 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.dtype).expand(c, 1, -1, -1)
        if self.direction == "down":
            return F.conv2d(x, k, stride=2, padding=self.pad, groups=c)
        return F.conv_transpose2d(x, k * 4, stride=2, padding=self.pad, groups=c)


class ConvThenDown(nn.Module):
    """3x3 convolution at full resolution followed by FIR downsampling (NCSN++'s residual encoder path)."""

    def __init__(self, cin: int, cout: int, taps: list[int]):
        super().__init__()
        pad = (len(taps) - 1) // 2
        self.conv = _conv(cin, cout, 3, padding=1 + pad)
        self.down = FIRResample("down", taps, pad=0)  # the filter's padding went into the convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.conv(x))


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of a scalar, frequencies 1 .. 1/MAX_POSITIONS (both ends included)."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        freqs = (1.0 / MAX_POSITIONS) ** (torch.arange(half, dtype=torch.float32) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = torch.outer(t, self.freqs.to(t.dtype))
        return torch.cat([arg.sin(), arg.cos()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar: frequencies ~ N(0, FOURIER_SCALE^2), fixed at init (a buffer)."""

    def __init__(self, channels: int, scale: float = FOURIER_SCALE):
        super().__init__()
        self.register_buffer("freqs", torch.randn(channels // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = torch.outer(t, (2 * math.pi * self.freqs).to(t.dtype))
        return torch.cat([arg.sin(), arg.cos()], dim=1)


class SelfAttention(nn.Module):
    """Single-head self-attention over pixels, as a residual branch: x + proj(attn(norm(x)))."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _group_norm(channels)
        self.qkv = _conv(channels, 3 * channels, 1, gain=ATTN_QKV_GAIN)
        self.proj = _conv(channels, channels, 1, gain=ZERO_GAIN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, 1, c, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # (n, 1, hw, c), softmax(q k^T / sqrt(c)) v
        a = a.transpose(-1, -2).reshape(n, c, h, w)
        return (x + self.proj(a)) * SKIP_SCALE


class ResBlock(nn.Module):
    """DDPM++ residual block: GN-SiLU-conv, + embedding bias, GN-SiLU-dropout-conv, + shortcut, / sqrt 2.

    Optionally resamples (both branches, before their convolutions) and ends with self-attention.
    """

    def __init__(
        self,
        cin: int,  # Input channels.
        cout: int,  # Output channels.
        emb_channels: int,  # Size of the conditioning embedding vector.
        resample: str | None,  # None, "up" or "down" (factor 2).
        taps: list[int],  # FIR taps for resampling.
        attention: bool,  # End with single-head self-attention?
        dropout: float,  # Dropout probability before the second convolution.
    ):
        super().__init__()
        self.cin = cin
        self.cout = cout
        self.dropout = dropout
        self.norm0 = _group_norm(cin)
        self.resample = FIRResample(resample, taps) if resample else None
        self.conv0 = _conv(cin, cout, 3)
        self.affine = _linear(emb_channels, cout)
        self.norm1 = _group_norm(cout)
        self.conv1 = _conv(cout, cout, 3, gain=ZERO_GAIN)
        self.shortcut = _conv(cin, cout, 1) if (cin != cout or resample) else None
        self.attn = SelfAttention(cout) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm0(x))
        if self.resample is not None:
            h = self.resample(h)
            x = self.resample(x)
        h = self.conv0(h) + self.affine(emb)[:, :, None, None]
        h = F.silu(self.norm1(h))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        x = (h + (self.shortcut(x) if self.shortcut is not None else x)) * SKIP_SCALE
        if self.attn is not None:
            x = self.attn(x)
        return x


# ---------------------------------------------------------------------------------------------------
# The U-Net.


class SongUNet(nn.Module):
    """DDPM++ / NCSN++ U-Net. ``forward(x, noise_labels, class_labels=None) -> F(x)``, same shape as x.

    x: float (N, C, H, W); noise_labels: (N,) c_noise values (a scalar or 1 value broadcasts);
    class_labels: float one-hot (N, label_dim) (integer class indices (N,) are one-hot encoded), required
    when label_dim > 0 and must be None when label_dim == 0.
    """

    def __init__(self, cfg: dict):
        super().__init__()
        cfg = resolve_net_config(cfg)
        self.config = cfg
        self.label_dim = cfg["label_dim"]
        self.label_dropout = cfg["label_dropout"]
        self.augment_dim = cfg["augment_dim"]
        self.encoder_type = cfg["encoder_type"]
        self.decoder_type = cfg["decoder_type"]
        self.levels = len(cfg["channel_mult"])
        self.num_blocks = cfg["num_blocks"]
        self.skip_on = [bool(m) for m in cfg["skip"]]  # python list: no device sync in forward
        emb_c = cfg["model_channels"] * cfg["channel_mult_emb"]
        block = dict(emb_channels=emb_c, taps=cfg["resample_filter"], dropout=cfg["dropout"])
        # Layers in this order (the order in which they draw their initial weights).
        self._build_embedding(cfg, emb_c)
        skip_channels, c = self._build_encoder(cfg, block)
        assert len(skip_channels) == skip_count(self.num_blocks, self.levels)
        self.skip_channels = list(skip_channels)
        self._build_decoder(cfg, block, c, skip_channels)

    def _build_embedding(self, cfg: dict, emb_c: int) -> None:
        """Noise level (+ class label, + augmentation labels) -> two-layer MLP with SiLU."""
        noise_c = cfg["model_channels"] * cfg["channel_mult_noise"]
        if cfg["embedding"] == "positional":
            self.map_noise = PositionalEmbedding(noise_c)
        else:
            self.map_noise = FourierEmbedding(noise_c)
        self.map_label = _linear(self.label_dim, noise_c) if self.label_dim else None
        # augmentation labels (diffmem.science.augment): a bias-free projection, so zero labels add nothing
        self.map_augment = _xavier(nn.Linear(self.augment_dim, noise_c, bias=False)) if self.augment_dim else None
        self.map_layer0 = _linear(noise_c, emb_c)
        self.map_layer1 = _linear(emb_c, emb_c)

    def _build_encoder(self, cfg: dict, block: dict) -> tuple[list[int], int]:
        """Per level an input conv (level 0) or a downsampling block, then num_blocks blocks. Every one of
        these outputs is a skip connection: returns their channel counts, in order, and the last one."""
        mc, res0, taps = cfg["model_channels"], cfg["resolution"], cfg["resample_filter"]
        self.enc = nn.ModuleDict()
        self.enc_aux = nn.ModuleDict()
        skip_channels = []
        c = c_aux = cfg["img_channels"]
        for lv, mult in enumerate(cfg["channel_mult"]):
            res = res0 >> lv
            if lv == 0:
                self.enc[f"{res}x{res}_conv"] = _conv(c, mc, 3)
                c = mc
            else:
                self.enc[f"{res}x{res}_down"] = ResBlock(c, c, resample="down", attention=False, **block)
                if self.encoder_type == "skip":
                    # progressive input: a downsampled copy of the image, projected and added
                    self.enc_aux[f"{res}x{res}_down"] = FIRResample("down", taps)
                    self.enc_aux[f"{res}x{res}_skip"] = _conv(c_aux, c, 1)
                elif self.encoder_type == "residual":
                    # progressive input: a strided conv of the previous level's sum, averaged in
                    self.enc_aux[f"{res}x{res}_residual"] = ConvThenDown(c_aux, c, taps)
                    c_aux = c
            skip_channels.append(c)
            for i in range(self.num_blocks):
                attn = res in cfg["attn_resolutions"]
                self.enc[f"{res}x{res}_block{i}"] = ResBlock(c, mc * mult, resample=None, attention=attn, **block)
                c = mc * mult
                skip_channels.append(c)
        return skip_channels, c

    def _build_decoder(self, cfg: dict, block: dict, c: int, skip_channels: list[int]) -> None:
        """The lowest level starts with two blocks (the first with attention), the others with an upsampling
        block; then num_blocks + 1 blocks, each concatenating one skip connection (popped from
        ``skip_channels``); output heads after every level (progressive "skip" decoder) or the last."""
        mc, mults, res0, taps = cfg["model_channels"], cfg["channel_mult"], cfg["resolution"], cfg["resample_filter"]
        self.dec = nn.ModuleDict()
        self.dec_aux = nn.ModuleDict()
        for lv in reversed(range(self.levels)):
            res = res0 >> lv
            if lv == self.levels - 1:
                self.dec[f"{res}x{res}_in0"] = ResBlock(c, c, resample=None, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = ResBlock(c, c, resample=None, attention=False, **block)
            else:
                self.dec[f"{res}x{res}_up"] = ResBlock(c, c, resample="up", attention=False, **block)
            for i in range(self.num_blocks + 1):
                attn = i == self.num_blocks and res in cfg["attn_resolutions"]
                cin = c + skip_channels.pop()
                self.dec[f"{res}x{res}_block{i}"] = ResBlock(
                    cin, mc * mults[lv], resample=None, attention=attn, **block
                )
                c = mc * mults[lv]
            if self.decoder_type == "skip" or lv == 0:
                # output head (every level for the progressive "skip" decoder, else only the last)
                if self.decoder_type == "skip" and lv < self.levels - 1:
                    self.dec_aux[f"{res}x{res}_up"] = FIRResample("up", taps)
                self.dec_aux[f"{res}x{res}_norm"] = _group_norm(c)
                self.dec_aux[f"{res}x{res}_conv"] = _conv(c, cfg["img_channels"], 3, gain=ZERO_GAIN)

    def _embed(
        self,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None,
        n: int,
        dtype: torch.dtype,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = torch.as_tensor(noise_labels, device=self.map_layer0.weight.device).to(dtype).reshape(-1)
        if t.numel() == 1 and n != 1:
            t = t.expand(n)
        if t.numel() != n:
            raise ValueError(
                f"noise_labels: expected {n} values (one per image), got shape {tuple(noise_labels.shape)}"
            )
        emb = self.map_noise(t)
        if self.map_label is not None:
            if class_labels is None:
                raise ValueError(
                    f"class_labels: this net is conditional (label_dim={self.label_dim}); pass "
                    f"one-hot labels of shape (N, {self.label_dim})"
                )
            y = class_labels
            if not torch.is_floating_point(y) and y.ndim == 1:
                y = F.one_hot(y.long(), self.label_dim)
            y = y.to(device=emb.device, dtype=dtype)
            if y.shape != (n, self.label_dim):
                raise ValueError(f"class_labels: expected shape ({n}, {self.label_dim}), got {tuple(y.shape)}")
            if self.training and self.label_dropout:
                keep = torch.rand(n, 1, device=y.device) >= self.label_dropout
                y = y * keep.to(dtype)
            # scale the one-hot input by sqrt(label_dim) so the projection sees unit-variance input
            emb = emb + self.map_label(y * math.sqrt(self.label_dim))
        elif class_labels is not None and class_labels.numel() != 0:
            raise ValueError("class_labels: this net is unconditional (label_dim=0); pass None")
        if augment_labels is not None and self.map_augment is not None:  # None = zeros (sampling)
            a = augment_labels.to(device=emb.device, dtype=dtype)
            if a.shape != (n, self.augment_dim):
                raise ValueError(f"augment_labels: expected shape ({n}, {self.augment_dim}), got {tuple(a.shape)}")
            emb = emb + self.map_augment(a)
        elif augment_labels is not None and augment_labels.numel() != 0:
            raise ValueError("augment_labels: this net has no augmentation labels (augment_dim=0); pass None")
        emb = F.silu(self.map_layer0(emb))
        return F.silu(self.map_layer1(emb))

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self._embed(noise_labels, class_labels, x.shape[0], x.dtype, augment_labels)

        skips = []
        aux = x
        for name, layer in self.enc.items():
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            else:
                x = layer(x)
            res = name.split("_")[0]
            if name.endswith("_down"):
                if self.encoder_type == "skip":
                    aux = self.enc_aux[f"{res}_down"](aux)
                    x = x + self.enc_aux[f"{res}_skip"](aux)
                elif self.encoder_type == "residual":
                    x = aux = (x + self.enc_aux[f"{res}_residual"](aux)) * SKIP_SCALE
            skips.append(x)

        skips = [s if on else torch.zeros_like(s) for s, on in zip(skips, self.skip_on, strict=True)]

        out = None
        last_res = None
        for name, layer in self.dec.items():
            res, kind = name.split("_")
            if last_res is not None and res != last_res:
                out = self._head(last_res, x, out)
            last_res = res
            if kind.startswith("block"):
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x, emb)
        out = self._head(last_res, x, out)
        assert not skips
        return out

    def _head(self, res: str, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor | None:
        """Output head after a decoder level: (upsample the running output), add conv(silu(norm(x)))."""
        if f"{res}_norm" not in self.dec_aux:
            return out
        if f"{res}_up" in self.dec_aux:
            out = self.dec_aux[f"{res}_up"](out)
        y = self.dec_aux[f"{res}_conv"](F.silu(self.dec_aux[f"{res}_norm"](x)))
        return y if out is None else out + y


# ---------------------------------------------------------------------------------------------------
# Public helpers.


def build_net(cfg: dict | None = None) -> SongUNet:
    """Build the U-Net for a (partial or resolved) net config; weights drawn from torch's global RNG."""
    return SongUNet(resolve_net_config(cfg))


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters (buffers such as the Fourier frequencies are not counted)."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def describe_net(cfg: dict | None = None) -> dict:
    """{"n_params", "config" (resolved), "n_skips"} for a net config, built on the meta device (no memory)."""
    resolved = resolve_net_config(cfg)
    with torch.device("meta"):
        net = SongUNet(resolved)
    return {"n_params": count_params(net), "config": resolved, "n_skips": len(resolved["skip"])}
