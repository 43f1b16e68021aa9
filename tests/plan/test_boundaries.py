"""Every check that compares settings with each other (or a setting with the edge of its range) refuses a
config before any job, at its boundary value and one step beyond it, and lets one step inside it pass.

A config is read as the workflow reads it (:func:`diffmem.plan.load.load_config`: the schema, per key) and
planned as the Snakefile plans it (:meth:`diffmem.plan.plan.Plan.build` without the data files: the checks
across keys, per value). ``None`` in a case: the config plans; a pattern: it is refused with an error
matching it, which names the key.
"""

from __future__ import annotations

import re

import pytest
import yaml

from diffmem.errors import ConfigError
from diffmem.plan.load import load_config
from diffmem.plan.plan import Plan

DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # images per class of scikit-learn's digits


def config(base: dict | None = None, emm: dict | None = None, exp: dict | None = None, **top) -> dict:
    """A small digits config with one experiment: ``base`` as dotted keys, ``emm`` over a [2, 16] bracket."""
    cfg = {
        "name": "bounds",
        "base": {
            "data": {"classes": 2},
            "model": {"model_channels": 8},
            "train": {"duration": {"unit": "steps", "value": 10}},
            "sample": {"n": 16},
        },
        "emm": {"lo": 2, "hi": 16, **(emm or {})},
        "experiments": {"e": exp or {}},
        **top,
    }
    for key, value in (base or {}).items():
        section, *parents, last = key.split(".")
        node = cfg["base"].setdefault(section, {})
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return cfg


def plan(cfg: dict, tmp_path) -> Plan:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Plan.build(load_config([str(path)]), check_files=False)


def refused(cfg: dict, tmp_path) -> str | None:
    """The error that refuses ``cfg`` before any job, or None when it plans."""
    try:
        plan(cfg, tmp_path)
    except ConfigError as e:
        return str(e)
    return None


def judge(cfg: dict, tmp_path, want: str | None) -> None:
    got = refused(cfg, tmp_path)
    if want is None:
        assert got is None, f"refused: {got}"
    else:
        assert got is not None, f"planned, but should be refused ({want})"
        assert re.search(want, got), got


EMM_LO_HI = r"emm\.lo=\d+ must be < emm\.hi=16"


@pytest.mark.parametrize(("lo", "want"), [(14, None), (15, None), (16, EMM_LO_HI), (17, EMM_LO_HI)])
def test_emm_lo_below_hi(lo, want, tmp_path):
    """lo == hi is no bracket: refused like lo > hi (the search would measure one size and call it found)."""
    judge(config(emm={"lo": lo}), tmp_path, want)


@pytest.mark.parametrize(("lo", "want"), [(15, None), (16, EMM_LO_HI), (17, EMM_LO_HI)])
def test_emm_lo_below_hi_in_an_experiments_emm(lo, want, tmp_path):
    judge(config(exp={"emm": {"lo": lo}}), tmp_path, want)


@pytest.mark.parametrize(
    ("lo", "hi", "want"),
    [
        (10, 19, None),  # 10 is allowed (classes 10: multiples of 10)
        (11, 20, None),  # 20 is
        (11, 19, r"no allowed size inside emm bracket \[11, 19\]"),
        (21, 29, r"no allowed size inside emm bracket \[21, 29\]"),
    ],
)
def test_emm_bracket_holds_an_allowed_size(lo, hi, want, tmp_path):
    judge(config({"data.classes": 10}, emm={"lo": lo, "hi": hi}), tmp_path, want)


@pytest.mark.parametrize(
    ("start", "want"),
    [
        ([2, 8, 16], None),
        ([2, 16], None),
        ([4, 8, 16], r"emm\.start: must run from emm\.lo=2 to emm\.hi=16"),  # one allowed size inside lo
        ([2, 8, 14], r"emm\.start: must run from emm\.lo=2 to emm\.hi=16"),
        ([2, 8, 18], r"emm\.start: must run from emm\.lo=2 to emm\.hi=16"),  # beyond hi
    ],
)
def test_emm_start_runs_from_lo_to_hi(start, want, tmp_path):
    judge(config(emm={"start": start}), tmp_path, want)


RATIO_EDGES = [(0, r"less than or equal to the minimum of 0"), (1e-9, None), (1, None),
               (1 + 1e-9, r"greater than the maximum of 1")]  # fmt: skip


@pytest.mark.parametrize(("value", "want"), RATIO_EDGES)
def test_emm_threshold_lies_in_0_1(value, want, tmp_path):
    judge(config(emm={"threshold": value}), tmp_path, want and rf"emm\.threshold.*{want}")
    judge(config(exp={"emm": {"threshold": value}}), tmp_path, want and rf"experiments\.e\.emm\.threshold.*{want}")


@pytest.mark.parametrize(("value", "want"), RATIO_EDGES)
def test_score_threshold_lies_in_0_1(value, want, tmp_path):
    judge(config({"score.threshold": value}), tmp_path, want and rf"score\.threshold.*{want}")
    judge(config(exp={"set": {"score.threshold": value}}), tmp_path, want and r"experiments\.e\.set\.score\.threshold")


@pytest.mark.parametrize(("value", "want"), [(0, r"emm\.tolerance"), (1e-9, None)])
def test_emm_tolerance_is_positive(value, want, tmp_path):
    judge(config(emm={"tolerance": value}), tmp_path, want)
    judge(config(exp={"emm": {"tolerance": value}}), tmp_path, want and rf"experiments\.e\.{want}")


@pytest.mark.parametrize(
    ("labels", "label_classes", "want"),
    [
        ("random", None, r"data\.labels=random needs data\.label_classes"),
        ("random", 0, r"label_classes"),
        ("random", 1, None),
        ("random", 2, None),
        ("none", None, None),  # label_classes matters only with random labels
    ],
)
def test_random_labels_need_their_classes(labels, label_classes, want, tmp_path):
    judge(config({"data.labels": labels, "data.label_classes": label_classes}), tmp_path, want)


@pytest.mark.parametrize(
    ("alpha", "want"),
    [(-1e-9, r"data\.blend"), (0, None), (1e-9, None), (1, None), (1 + 1e-9, r"data\.blend")],
)
def test_blend_alpha_lies_in_0_1(alpha, want, tmp_path):
    blend = {"source": "fonts", "alpha": alpha, "class": 0}
    judge(config({"data.classes": 1, "data.blend": blend}), tmp_path, want)


MULTIPLE = r"model\.resolution {} must be a multiple of data\.resolution 8"


@pytest.mark.parametrize("side", [4, 7, 8, 9, 15, 16, 17, 24])
def test_net_side_is_a_multiple_of_the_data_side(side, tmp_path):
    """model.resolution: the data's side or a multiple of it (pixel repetition), nothing else."""
    judge(config({"model.resolution": side}), tmp_path, None if side % 8 == 0 else MULTIPLE.format(side))


@pytest.mark.parametrize(
    ("sizes", "want"),
    [
        ([2], None),
        ([1], r"sizes \[1\] cannot be made.*multiples of 2"),
        ([3], r"sizes \[3\] cannot be made"),
        ([4], None),
    ],
)
def test_listed_sizes_are_class_balanced(sizes, want, tmp_path):
    judge(config(exp={"mode": "sizes", "sizes": sizes}), tmp_path, want)


@pytest.mark.parametrize("classes", [2, 10])
@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_listed_sizes_stop_at_the_smallest_class(classes, extra, tmp_path):
    """The largest size is classes x the smallest class's images: allowed, one class-balanced step below
    too, one above not."""
    size = classes * (min(DIGITS_COUNTS[:classes]) + extra)
    want = rf"sizes \[{size}\] cannot be made.*up to {size - classes}" if extra > 0 else None
    judge(config({"data.classes": classes}, exp={"mode": "sizes", "sizes": [size]}), tmp_path, want)


@pytest.mark.parametrize(("skip", "want"), [([1, 1, 1], r"'skip': expected 4 entries"), ([1, 0, 1, 1], None),
                                            ([1, 1, 1, 1, 1], r"'skip': expected 4 entries")])  # fmt: skip
def test_skip_mask_has_one_entry_per_skip(skip, want, tmp_path):
    """(num_blocks + 1) x levels = 4 skips for the net of one block over channel_mult [1, 2]."""
    judge(config({"model.skip": skip}), tmp_path, want)


@pytest.mark.parametrize(("attn", "want"), [([8], None), ([4], None), ([3], r"\[3\] is not a resolution"),
                                            ([2], r"\[2\] is not a resolution"), ([16], r"\[16\] is not")])  # fmt: skip
def test_attention_at_a_resolution_of_the_net(attn, want, tmp_path):
    judge(config({"model.attn_resolutions": attn}), tmp_path, want)


SIGMA = r"sample\.sigma_min={} must be < sample\.sigma_max=80"


@pytest.mark.parametrize(("sigma_min", "want"), [(79.9, None), (80, SIGMA.format(80)), (80.1, SIGMA.format(r"80\.1"))])
def test_sigma_min_below_sigma_max(sigma_min, want, tmp_path):
    """Refused before any job (the sampler refused it only after the training, in the sample job)."""
    judge(config({"sample.sigma_min": sigma_min, "sample.sigma_max": 80}), tmp_path, want)
    judge(config(exp={"set": {"sample.sigma_min": sigma_min}}, base={"sample.sigma_max": 80}), tmp_path, want)


@pytest.mark.parametrize(
    ("gpus", "batch", "want"),
    [
        (2, 128, None),
        (3, 128, r"train\.batch=128 must be a multiple of gpus_per_run=3"),
        (4, 128, None),
        (2, 127, r"train\.batch=127 must be a multiple of gpus_per_run=2"),
        (2, 126, None),
    ],
)
def test_train_batch_splits_evenly_over_the_gpus_of_a_run(gpus, batch, want, tmp_path):
    """Refused before any job (the training job refused it after its wait in the queue)."""
    judge(config({"train.batch": batch}, gpu=True, gpus_per_run=gpus), tmp_path, want)
    judge(config({"train.batch": batch}, gpu=False, gpus_per_run=gpus), tmp_path, None)  # on the CPU: one process


@pytest.mark.parametrize(("channels", "want"), [(8, None), (12, None), (14, r"GroupNorm over"), (16, None)])
def test_net_channels_fit_group_norm(channels, want, tmp_path):
    judge(config({"model.model_channels": channels}), tmp_path, want)


@pytest.mark.parametrize(("every", "ok"), [(49_999, False), (50_000, True), (50_001, False), (100_000, True)])
def test_official_snapshots_come_every_whole_ticks(every, ok, tmp_path):
    """timing official: every must be a multiple of 50,000 images (the released loop's ticks)."""
    snapshots = {"every": {"unit": "images", "value": every}, "timing": "official"}
    cfg = config({"train.snapshots": snapshots, "train.duration": {"unit": "images", "value": 1_000_000}})
    if ok:
        assert plan(cfg, tmp_path)
    else:
        with pytest.raises(ValueError, match=r"train\.snapshots\.every:.*multiple of 50000 images"):
            plan(cfg, tmp_path)


@pytest.mark.parametrize(("classes", "ok"), [(9, True), (10, True), (11, False)])
def test_classes_within_the_source(classes, ok, tmp_path):
    cfg = config({"data.classes": classes}, emm={"lo": 20, "hi": 200})
    if ok:
        assert plan(cfg, tmp_path)
    else:
        with pytest.raises(ValueError, match=r"data\.classes=11 but the source has 10 classes"):
            plan(cfg, tmp_path)


def test_a_figure_of_training_length_needs_listed_sizes(tmp_path):
    figures = {"f": {"kind": "epochs", "experiments": ["e"]}}
    judge(config(figures=figures), tmp_path, r"figures\.f: kind epochs needs experiments with mode: sizes")
    judge(config(exp={"mode": "sizes", "sizes": [2]}, figures=figures), tmp_path, None)


def test_a_sweep_that_reaches_sigma_min_is_refused_at_that_value(tmp_path):
    """A factor sweeping sample.sigma_max down to sigma_min (0.002): the value at the boundary is named."""
    exp = {"factor": "sample.sigma_max", "values": [80, 0.0021, 0.002], "labels": ["full", "tiny", "none"]}
    judge(config(exp=exp), tmp_path, r"experiments\.e value 'none': sample\.sigma_min=0\.002 must be < .*=0\.002")
    judge(config(exp={**exp, "values": [80, 0.0021, 0.0022]}), tmp_path, None)


@pytest.mark.parametrize(
    ("start", "want"),
    [([2, 4, 16], None), ([2, 3, 16], r"experiments\.e value 'base': emm\.start: sizes \[3\] cannot be made"),
     ([2, 15, 16], r"emm\.start: sizes \[15\]"), ([2, 14, 16], None)],
)  # fmt: skip
def test_emm_start_sizes_are_class_balanced(start, want, tmp_path):
    """Classes 2: every size of emm.start even (the emm_round job refused an odd one after the dry run)."""
    judge(config(emm={"start": start}), tmp_path, want)


@pytest.mark.parametrize(("classes", "want"), [(10, None), (11, r"experiments\.e value 'base': data\.classes=11")])
def test_classes_beyond_the_source_is_a_config_error(classes, want, tmp_path):
    """A ConfigError (``config error:`` in the workflow), not a ValueError's traceback."""
    judge(config({"data.classes": classes}, emm={"lo": 20, "hi": 200}), tmp_path, want)


@pytest.mark.parametrize(("every", "ok"), [(49_999, False), (50_000, True), (50_001, False)])
def test_official_snapshots_off_ticks_is_a_config_error(every, ok, tmp_path):
    snapshots = {"every": {"unit": "images", "value": every}, "timing": "official"}
    cfg = config({"train.snapshots": snapshots, "train.duration": {"unit": "images", "value": 1_000_000}})
    judge(cfg, tmp_path, None if ok else r"experiments\.e value 'base': train\.snapshots\.every:.*multiple of 50000")


@pytest.mark.parametrize(("classes", "want"), [(1, None), (2, r"data\.classes=2 but data\.blend")])
def test_a_blend_blends_one_class(classes, want, tmp_path):
    blend = {"source": "fonts", "alpha": 0.5, "class": 0}
    judge(config({"data.classes": classes, "data.blend": blend}), tmp_path, want)
