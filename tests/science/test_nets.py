"""Tests of diffmem.science.nets (DDPM++ / NCSN++ U-Nets) and the describe-net CLI."""

import json
import math
import subprocess
import sys

import pytest
import torch

from diffmem.__main__ import main
from diffmem.science.nets import (
    FOURIER_SCALE,
    MAX_POSITIONS,
    NET_DEFAULTS,
    PAPER_NET,
    FourierEmbedding,
    PositionalEmbedding,
    build_net,
    count_params,
    describe_net,
    resolve_net_config,
)

torch.set_num_threads(1)

TINY = dict(resolution=8, img_channels=1, model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[])


def _run(net, n=2, labels=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = net.config
    x = torch.randn(n, cfg["img_channels"], cfg["resolution"], cfg["resolution"], generator=g)
    t = torch.randn(n, generator=g)
    net.eval()
    with torch.no_grad():
        return net(x, t, labels)


def _build(seed=0, **overrides):
    torch.manual_seed(seed)
    return build_net(overrides)


def _randomize_zero_init(net):
    """Replace the near-zero init of residual/output layers so that every path shows in the output."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net


# --- parameter counts (the paper's numbers) ---------------------------------------------------------


def test_paper_ddpmpp_param_count():
    net = build_net(PAPER_NET)
    assert count_params(net) == 35_125_251
    assert describe_net(PAPER_NET)["n_params"] == 35_125_251


def test_paper_ddpmpp_4_blocks_param_count():
    info = describe_net({**PAPER_NET, "num_blocks": 4})
    assert info["n_params"] == 55_732_739
    assert info["n_skips"] == 15
    assert count_params(build_net({**PAPER_NET, "num_blocks": 4})) == 55_732_739


def test_describe_matches_build_for_variants():
    variants = [
        TINY,
        {**TINY, "arch": "ncsnpp"},
        {**TINY, "encoder_type": "skip", "decoder_type": "skip"},
        {**TINY, "label_dim": 10},
    ]
    for overrides in variants:
        assert describe_net(overrides)["n_params"] == count_params(build_net(overrides))


# --- config ---------------------------------------------------------------------------------------


def test_resolve_fills_arch_defaults_and_is_idempotent():
    d = resolve_net_config(PAPER_NET)
    assert d["embedding"] == "positional" and d["encoder_type"] == "standard"
    assert d["resample_filter"] == [1, 1] and d["channel_mult_noise"] == 1
    assert d["skip"] == [1] * 9
    n = resolve_net_config({**PAPER_NET, "arch": "ncsnpp"})
    assert n["embedding"] == "fourier" and n["encoder_type"] == "residual"
    assert n["resample_filter"] == [1, 3, 3, 1] and n["channel_mult_noise"] == 2
    assert resolve_net_config(d) == d and resolve_net_config(n) == n
    # normalized types: strings and floats from YAML/CLI give the same dict
    s = resolve_net_config(
        {**PAPER_NET, "channel_mult": "2,2,2", "num_blocks": 2.0, "attn_resolutions": ["16"], "dropout": "0.13"}
    )
    assert s == d


def test_left_out_keys_mean_net_defaults():
    assert resolve_net_config({}) == resolve_net_config(NET_DEFAULTS)
    assert resolve_net_config({})["skip"] == [1] * 4  # the default net: 2 levels of 1 block
    assert resolve_net_config({"dropout": 0.13}) == {**resolve_net_config({}), "dropout": 0.13}


def test_resolve_refuses_bad_input():
    with pytest.raises(ValueError, match="bogus"):
        resolve_net_config({"bogus": 1})
    with pytest.raises(ValueError, match="embedding"):
        resolve_net_config({"embedding": "sinusoid"})
    with pytest.raises(ValueError, match="attn_resolutions"):
        resolve_net_config({**TINY, "attn_resolutions": [16]})
    with pytest.raises(ValueError, match="resolution"):
        resolve_net_config({**PAPER_NET, "resolution": 30})
    with pytest.raises(ValueError, match="GroupNorm over 18 channels"):
        resolve_net_config({**TINY, "model_channels": 18})


def test_describe_does_not_touch_global_rng():
    torch.manual_seed(5)
    describe_net({**PAPER_NET, "arch": "ncsnpp"})
    after = torch.rand(3)
    torch.manual_seed(5)
    torch.testing.assert_close(after, torch.rand(3))


def test_wrong_mask_length_raises():
    with pytest.raises(ValueError, match="expected 9 entries"):
        resolve_net_config({**PAPER_NET, "skip": [1] * 8})
    with pytest.raises(ValueError, match="expected 4 entries"):
        build_net({**TINY, "skip": [1, 1, 1, 1, 1, 1]})
    with pytest.raises(ValueError, match="0 or 1"):
        resolve_net_config({**TINY, "skip": [1, 2, 1, 1]})


# --- skip mask ------------------------------------------------------------------------------------


def test_skip_mask_keeps_params_and_changes_output():
    full = _randomize_zero_init(_build(**TINY))
    masked = _build(**{**TINY, "skip": [1, 0, 1, 0]})
    masked.load_state_dict(full.state_dict())
    assert count_params(masked) == count_params(full)
    y_full, y_masked = _run(full), _run(masked)
    assert y_masked.shape == y_full.shape
    assert not torch.allclose(y_full, y_masked)
    off = _build(**{**TINY, "skip": [0, 0, 0, 0]})
    off.load_state_dict(full.state_dict())
    assert count_params(off) == count_params(full)
    y_off = _run(off)
    assert y_off.shape == (2, 1, 8, 8) and torch.isfinite(y_off).all()
    assert not torch.allclose(y_off, y_masked)
    assert describe_net({**PAPER_NET, "skip": [0] * 9})["n_params"] == 35_125_251


def test_each_skip_matters():
    full = _randomize_zero_init(_build(**TINY))
    ref = _run(full)
    for i in range(4):
        mask = [1] * 4
        mask[i] = 0
        net = _build(**{**TINY, "skip": mask})
        net.load_state_dict(full.state_dict())
        assert not torch.allclose(_run(net), ref), i


# --- forward shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution,mult,attn", [(4, [1, 2], [2]), (8, [1, 2], []), (16, [1, 2, 2], [8])])
@pytest.mark.parametrize("label_dim", [0, 3])
def test_forward_shapes(resolution, mult, attn, label_dim):
    net = _build(
        resolution=resolution,
        img_channels=1,
        model_channels=16,
        channel_mult=mult,
        num_blocks=1,
        attn_resolutions=attn,
        label_dim=label_dim,
    )
    labels = torch.eye(3)[[0, 2]] if label_dim else None
    y = _run(net, labels=labels)
    assert y.shape == (2, 1, resolution, resolution) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_conditioning_changes_output_and_large_label_dim():
    net = _randomize_zero_init(_build(**TINY, label_dim=2000))
    assert count_params(net) == describe_net({**TINY, "label_dim": 2000})["n_params"]
    a = _run(net, labels=torch.eye(2000)[[0, 1]])
    b = _run(net, labels=torch.eye(2000)[[5, 7]])
    assert not torch.allclose(a, b)
    # integer class indices are one-hot encoded
    c = _run(net, labels=torch.tensor([5, 7]))
    torch.testing.assert_close(b, c)
    with pytest.raises(ValueError, match="class_labels"):
        _run(net)


def test_backward_and_train_mode():
    net = _build(**TINY, label_dim=3, label_dropout=0.5, dropout=0.1)
    net.train()
    x = torch.randn(4, 1, 8, 8)
    y = net(x, torch.randn(4), torch.eye(3)[[0, 1, 2, 0]])
    y.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("embedding", ["positional", "fourier"])
def test_embeddings_embed_the_noise_level(embedding):
    """Each embedding is the one asked for, maps a noise level to [sin, cos] of its frequencies (positional:
    1 down to 1/MAX_POSITIONS, both ends; fourier: 2 pi x N(0, FOURIER_SCALE^2)), and the net's output
    follows the noise level and the embedding through it; the embedding adds no parameter."""
    net = _randomize_zero_init(_build(**TINY, embedding=embedding))
    emb = net.map_noise
    assert type(emb) is {"positional": PositionalEmbedding, "fourier": FourierEmbedding}[embedding]
    half = TINY["model_channels"] // 2  # channel_mult_noise 1 (ddpmpp)
    assert emb.freqs.shape == (half,)
    if embedding == "positional":
        assert emb.freqs[0] == 1 and emb.freqs[-1] == pytest.approx(1 / MAX_POSITIONS, rel=1e-5)
        assert torch.all(emb.freqs[1:] < emb.freqs[:-1])
    else:
        assert 0.3 * FOURIER_SCALE < emb.freqs.std() < 3 * FOURIER_SCALE  # random, not unit
    t = torch.tensor([0.0, 0.25, -1.5])
    out = emb(t)
    torch.testing.assert_close(out[0], torch.cat([torch.zeros(half), torch.ones(half)]))  # sin 0, cos 0
    f = emb.freqs * (2 * math.pi if embedding == "fourier" else 1)
    torch.testing.assert_close(out[2, :half], torch.sin(-1.5 * f))
    torch.testing.assert_close(out[1, half:], torch.cos(0.25 * f))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    net.eval()
    with torch.no_grad():
        low, high = net(x, torch.full((2,), -2.0), None), net(x, torch.full((2,), 1.0), None)
    assert low.shape == (2, 1, 8, 8) and not torch.allclose(low, high)  # the noise level reaches the output
    other = _build(**TINY, embedding={"positional": "fourier", "fourier": "positional"}[embedding])
    other.load_state_dict(net.state_dict(), strict=False)  # same weights, the other embedding
    assert not torch.allclose(_run(other), _run(net))
    assert count_params(net) == count_params(other) == describe_net(TINY)["n_params"]


@pytest.mark.parametrize(
    "encoder_type,decoder_type", [("residual", "standard"), ("skip", "skip"), ("standard", "skip")]
)
def test_ncsnpp_and_progressive_variants(encoder_type, decoder_type):
    net = _build(**{**TINY, "arch": "ncsnpp", "encoder_type": encoder_type, "decoder_type": decoder_type})
    assert net.config["embedding"] == "fourier" and net.config["resample_filter"] == [1, 3, 3, 1]
    y = _run(_randomize_zero_init(net))
    assert y.shape == (2, 1, 8, 8) and torch.isfinite(y).all()


def test_ncsnpp_default_forward():
    net = _build(
        arch="ncsnpp",
        resolution=16,
        img_channels=3,
        model_channels=16,
        channel_mult=[1, 2, 2],
        num_blocks=1,
        attn_resolutions=[8],
    )
    assert _run(net).shape == (2, 3, 16, 16)


def test_same_seed_same_init():
    a, b, c = (_build(seed, arch="ncsnpp", **TINY) for seed in (0, 0, 1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    torch.testing.assert_close(_run(a), _run(b))


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_main_prints_json(capsys):
    assert main(["describe-net"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_params"] == 35_125_251 and info["n_skips"] == 9
    assert info["config"] == resolve_net_config(PAPER_NET)  # describe-net's base is the paper's net

    assert (
        main(
            [
                "describe-net",
                "resolution=8",
                "img_channels=1",
                "model_channels=16",
                "channel_mult=1,2",
                "num_blocks=1",
                "attn_resolutions=",
                "skip=1,0,1,1",
                "embedding=fourier",
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["skip"] == [1, 0, 1, 1] and info["config"]["attn_resolutions"] == []
    assert info["n_params"] == describe_net(TINY)["n_params"]


def test_cli_bad_key_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["describe-net", "widht=3"])
    assert exc.value.code == 2
    assert "widht" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["describe-net", "skip=1,1"])
    assert exc.value.code == 2
    assert "expected 9 entries" in capsys.readouterr().err


def test_cli_subprocess():
    out = subprocess.run(
        [sys.executable, "-m", "diffmem", "describe-net", "num_blocks=4"], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)["n_params"] == 55_732_739


def test_channels_last_net_equals_the_contiguous_net():
    net = _randomize_zero_init(_build(**{**TINY, "attn_resolutions": [4]}))
    ref = _run(net)
    got = _run(net.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # inductor compiles C++ kernels: ~2 min on 2 cores with a cold cache
@pytest.mark.skipif(
    not any(__import__("shutil").which(c) for c in ("cc", "gcc", "clang")),
    reason="torch.compile (inductor) needs a C compiler on the CPU",
)
def test_compiled_net_equals_the_eager_net():
    """torch.compile (inductor kernels) keeps the forward pass and the gradients within float tolerance."""
    net = _randomize_zero_init(_build(**TINY, dropout=0.0))
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, generator=g)
    compiled = torch.compile(net)
    outs = []
    for f in (net, compiled):
        net.zero_grad()
        y = f(x, t, None)
        y.square().mean().backward()
        outs.append((y.detach(), [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(outs[1][1], outs[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
