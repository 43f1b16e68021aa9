"""diffmem.science.augment: the EDM recipe's geometric augmentation with labels, known answers."""

from __future__ import annotations

import pytest
import torch
from runs import EDM_CIFAR10, assert_same, final_weights, make_settings, make_subset

from diffmem.science import augment as A

ALL_ON = {"p": 1.0, **{k: 1.0 for k in A.KINDS}}


def _images(n=16, c=3, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, c, side, side), generator=g) * 2 - 1


def only(kind, p=1.0):
    return {"p": p, **{k: (1e8 if k == kind else 0.0) for k in A.KINDS}}


def test_label_layout_and_dims():
    assert A.augment_dim(EDM_CIFAR10) == 9  # EDM's CIFAR-10 net: augment_dim = 9
    assert [k for k, _ in A.label_layout(EDM_CIFAR10)] == [
        "xflip",
        "yflip",
        "scale",
        "rotate_frac",
        "rotate_frac",
        "aniso",
        "aniso",
        "translate_frac",
        "translate_frac",
    ]
    assert A.augment_dim(ALL_ON) == 13 and A.augment_dim(None) == 0
    assert A.augment_dim({**EDM_CIFAR10, "p": 0.0}) == 0  # off: no labels, no map_augment in the net
    x = _images()
    y, lab = A.augment(x, EDM_CIFAR10, seed=3)
    assert y.shape == x.shape and y.dtype == x.dtype and lab.shape == (16, 9) and lab.dtype == torch.float32


def test_p_zero_is_identity():
    x = _images()
    for cfg in ({**ALL_ON, "p": 0.0}, None, {**EDM_CIFAR10, "p": 0.0}):
        y, lab = A.augment(x, cfg, seed=1)
        assert y is x and lab.shape == (16, 0)
    # a kind that does not fire leaves the image bit-exact and its labels zero
    y, lab = A.augment(x, {**only("rotate_frac"), "p": 1e-12}, seed=1)
    assert torch.equal(y, x) and not lab.any()


def test_flip_label_flips_the_image():
    x = _images(n=64)
    y, lab = A.augment(x, only("xflip"), seed=5)
    flipped = lab[:, 0] == 1
    assert 10 < int(flipped.sum()) < 54  # a 50/50 coin per image
    assert torch.equal(y[flipped], x[flipped].flip(3)) and torch.equal(y[~flipped], x[~flipped])
    y, lab = A.augment(x, only("yflip"), seed=5)
    flipped = lab[:, 0] == 1
    assert torch.equal(y[flipped], x[flipped].flip(2)) and torch.equal(y[~flipped], x[~flipped])


def test_quarter_turns_and_integer_shifts_match_their_labels():
    x = _images(n=32)
    y, lab = A.augment(x, only("rotate_int"), seed=2)
    for i in range(32):
        k = {(0, 0): 0, (1, 0): 1, (1, 1): 2, (0, 1): 3}[(int(lab[i, 0]), int(lab[i, 1]))]
        assert torch.equal(y[i], torch.rot90(x[i], k, dims=(1, 2)))
    y, lab = A.augment(x, only("translate_int"), seed=2)
    shifts = (lab * 8 * A.TRANSLATE_INT_MAX).round().long()  # side 8: +-1 pixel
    assert shifts.abs().max() <= 1 and (shifts != 0).any()
    for i in range(32):
        tx, ty = int(shifts[i, 0]), int(shifts[i, 1])
        # inside the border the content moves by (tx, ty) pixels
        assert torch.equal(y[i, :, 2:6, 2:6], x[i, :, 2 - ty : 6 - ty, 2 - tx : 6 - tx])


def test_fractional_resampling_known_answers():
    """The affine resampler on maps with exact answers: a quarter turn is rot90, a whole-pixel shift moves
    the content, and the labels drive a transform of the stated size."""
    import math

    x = _images(n=3, side=8)
    quarter = A._resample(x, A._rotate(torch.full((3,), math.pi / 2, dtype=torch.float64)))
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5) or torch.allclose(
        quarter, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5
    )
    shift = A._resample(x, A._translate(-torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)))
    assert torch.allclose(shift[..., 1:], x[..., :-1], atol=1e-5)  # content one pixel to the right
    # translate_frac: label u shifts by u * W / 8 pixels; a constant image stays constant under every kind
    const = torch.full((4, 3, 16, 16), 0.25)
    for kind in A.GEOMETRIC:
        y, lab = A.augment(const, only(kind), seed=0)
        assert torch.allclose(y, const, atol=1e-6) and lab.abs().sum(dim=1).min() > 0, kind
    # a rotate_frac label is (cos a - 1, sin a): on the circle of radius 1 around (-1, 0)
    _, lab = A.augment(x, only("rotate_frac"), seed=0)
    assert torch.allclose((lab[:, 0] + 1) ** 2 + lab[:, 1] ** 2, torch.ones(3), atol=1e-6)


def test_same_seed_same_augmentations_other_seed_others():
    x = _images(n=32)
    y1, l1 = A.augment(x, ALL_ON, seed=11)
    y2, l2 = A.augment(x.clone(), ALL_ON, seed=11)
    assert torch.equal(y1, y2) and torch.equal(l1, l2)
    y3, l3 = A.augment(x, ALL_ON, seed=12)
    assert not torch.equal(l1, l3)
    # the draws do not depend on the images: other images, same labels
    _, l4 = A.augment(_images(n=32, seed=9), ALL_ON, seed=11)
    assert torch.equal(l1, l4)


def test_probability_p():
    x = _images(n=4000, side=4, c=1)
    _, lab = A.augment(x, {**only("scale"), "scale": 1.0, "p": 0.12}, seed=4)
    assert abs(float((lab[:, 0] != 0).float().mean()) - 0.12) < 0.02
    _, lab = A.augment(x, {**only("xflip"), "xflip": 1e8, "p": 0.12}, seed=4)  # EDM: always a fresh coin
    assert abs(float(lab[:, 0].mean()) - 0.5) < 0.03


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"p": 1.5}, "train.augment.p=1.5"),
        ({"q": 1, "p": 0}, "train.augment.q"),
        ({"p": 0.1, "scale": -1}, "train.augment.scale=-1"),
        ({}, "p is missing"),
    ],
)
def test_bad_settings_are_named(cfg, match):
    with pytest.raises(ValueError, match=match):
        A.check(cfg)


# ---------------------------------------------------------------------------------------------------
# The net and the training loop.


def test_net_takes_augment_labels_and_none_means_zeros():
    from diffmem.science import nets

    cfg = {
        "resolution": 8,
        "img_channels": 1,
        "model_channels": 8,
        "channel_mult": [1, 2],
        "num_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
    }
    plain = nets.count_params(nets.build_net(cfg))
    torch.manual_seed(0)
    net = nets.build_net({**cfg, "augment_dim": 9}).eval()
    assert nets.count_params(net) == plain + 9 * 8  # EDM: a bias-free 9 -> noise-channels projection
    x, sigma = _images(n=4, c=1), torch.full((4,), 0.5)
    none = net(x, sigma)
    assert torch.equal(none, net(x, sigma, augment_labels=torch.zeros(4, 9)))
    assert not torch.equal(none, net(x, sigma, augment_labels=torch.ones(4, 9)))  # (output ~1e-5 at init)
    with pytest.raises(ValueError, match="augment_labels"):
        net(x, sigma, augment_labels=torch.zeros(4, 3))


def _train_settings(augment, steps=10):
    """The shared tiny run with VP preconditioning, one snapshot and ``augment`` (net sized to its labels)."""
    s = make_settings(steps, snapshots=1, augment=augment)
    s["model"]["augment_dim"] = A.augment_dim(augment)
    s["diffusion"]["precond"] = "vp"
    return s


def test_training_with_augmentation_is_deterministic_and_resumes_bit_identically(tmp_path):
    from diffmem.training import loop as tr

    torch.set_num_threads(1)
    quiet = {"log": lambda s: None}
    aug = {**ALL_ON, "p": 0.5}
    s, subset = _train_settings(aug), make_subset()
    tr.train(s, subset, tmp_path / "a", **quiet)
    tr.train(s, subset, tmp_path / "b", max_steps=7, **quiet)  # stop after step 7, resume from state.pt
    assert tr.train(s, subset, tmp_path / "b", **quiet)["resumed_from"] == [7]
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert_same(a, b)
    assert "map_augment.weight" in a and a["map_augment.weight"].shape == (8, 13)
    # augmentation changes the run; p = 0 trains the plain net (no augmentation weights)
    tr.train(_train_settings({**aug, "p": 0.0}), subset, tmp_path / "off", **quiet)
    off = final_weights(tmp_path / "off")
    assert "map_augment.weight" not in off
    assert any(not torch.equal(a[k], off[k]) for k in off)
    with pytest.raises(ValueError, match="model.augment_dim is 0"):
        tr.train({**s, "model": {**s["model"], "augment_dim": 0}}, subset, tmp_path / "bad", **quiet)


def test_workflow_resolves_augment_dim_from_the_setting():
    from diffmem.plan import config as dmc

    s = _train_settings(EDM_CIFAR10)
    s["model"].pop("augment_dim")
    s["data"].update({"source": "digits", "resolution": 8, "classes": 10})
    assert dmc.resolve_settings(s)["model"]["augment_dim"] == 9
    s["train"]["augment"] = {**EDM_CIFAR10, "p": 0.0}
    assert dmc.resolve_settings(s)["model"]["augment_dim"] == 0
