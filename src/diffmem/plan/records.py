"""A value's settings, resolved, and what a run's files say about them.

- :func:`resolve_settings`: the settings that follow from others (net resolution, channels, label count,
  the net's defaults), so that two spellings of one setting are one run;
- :func:`run_settings` / :func:`data_settings`: a value's settings at one size, and the part that decides
  its subset;
- :func:`run_record` / :func:`sample_record`: what ``run.json`` and ``sample.json`` hold (the identity,
  :mod:`diffmem.plan.identity`, and in words what it is);
- :func:`job_options`: the settings that change no number, which jobs read from the config;
- :func:`micro_batch`: how many images of a run's per-GPU batch one pass takes (changes no number either);
- :func:`flat_settings`: nested settings as dotted keys, for captions and people.
"""

from __future__ import annotations

import copy
from typing import Any

from diffmem.data.sources import facts as source_facts
from diffmem.errors import ConfigError
from diffmem.plan import identity, memory
from diffmem.science.augment import augment_dim
from diffmem.science.netconfig import resolve_net_config


def resolve_settings(base: dict) -> dict:
    """Fill the settings that follow from others (net resolution, unless set, and channels from the data)."""
    s = copy.deepcopy(base)
    data, model = s["data"], s["model"]
    if data.get("labels") is True:  # YAML reads an unquoted `true` as a boolean
        data["labels"] = "true"
    side = int(data["resolution"])
    net_side = model.get("resolution")
    if net_side is not None and (int(net_side) < side or int(net_side) % side):
        raise ConfigError(
            f"model.resolution {net_side} must be a multiple of data.resolution {side} (the net trains on the "
            f"data enlarged by pixel repetition), or null for the data's side"
        )
    model["resolution"] = side if net_side is None else int(net_side)
    model["img_channels"] = source_facts(data["source"]).channels
    if data["labels"] == "none":
        model["label_dim"] = 0
    elif data["labels"] == "true":
        model["label_dim"] = int(data["classes"])
    elif data["labels"] == "random":
        if not data.get("label_classes"):
            raise ConfigError("data.labels=random needs data.label_classes (the number of random classes)")
        model["label_dim"] = int(data["label_classes"])
    elif data["labels"] == "unique":
        model["label_dim"] = None  # = |D|, filled per size by run_settings()
    else:
        raise ConfigError(f"data.labels must be none|true|random|unique, got {data['labels']!r}")
    if model["arch"] != "optimum":
        try:
            model["augment_dim"] = augment_dim(s.get("train", {}).get("augment"))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        s["model"] = canonical_model(model)
    return s


def canonical_model(model: dict) -> dict:
    """The network settings with every default filled in (embedding, skip mask, ...), so that two
    spellings of the same net (``embedding: null`` and ``positional``) give the same run id."""
    unique = model.get("label_dim") is None
    probe = {**model, "label_dim": 1 if unique else model["label_dim"]}
    try:
        resolved = resolve_net_config(probe)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"model settings are invalid: {e}") from None
    if unique:
        resolved["label_dim"] = None
    return resolved


def run_settings(value_settings: dict, size: int) -> dict:
    """Full settings of one run: a value's settings at training-set size ``size``."""
    s = copy.deepcopy(value_settings)
    s["data"]["size"] = int(size)
    if s["data"]["labels"] == "unique":
        s["model"]["label_dim"] = int(size)
    return s


def data_settings(settings: dict) -> dict:
    """The part of the settings that decides the subset (without size)."""
    d = copy.deepcopy(settings["data"])
    d.pop("size", None)
    return d


def run_record(settings: dict) -> dict:
    """What a run folder's ``run.json`` holds: the run's training identity and, in words, what it is."""
    rec = identity.train_identity(settings)
    d, m, t = rec["data"], rec["model"], rec["train"]
    net = (
        "closed-form optimal denoiser"
        if m["arch"] == "optimum"
        else (
            f"{m['arch']} ({m['model_channels']} channels, {m['num_blocks']} blocks/resolution, "
            f"{rec['diffusion']['precond']} preconditioning), {t['duration']['value']:g} {t['duration']['unit']} of "
            f"batch {t['batch']}, lr {t['lr']:g}, seed {t['seed']}"
        )
    )
    size = f"{d['size']} " if "size" in d else ""
    side = m.get("resolution", d["resolution"])
    enlarged = f"enlarged to {side}x{side} by pixel repetition " if side != d["resolution"] else ""
    rec["about"] = (
        f"{net}; trained on {size}{d['resolution']}x{d['resolution']} images of {d['source']} {enlarged}"
        f"({d['classes']} classes, labels {d['labels']}, subset seed {d['seed']})"
    )
    return rec


def sample_record(sample: dict) -> dict:
    """What a samples folder's ``sample.json`` holds: the sampler's identity and, in words, what it is."""
    rec = identity.sample_identity({"sample": sample})
    rec["about"] = (
        f"{rec['n']} samples per snapshot, EDM Heun with {rec['num_steps']} steps, sigma "
        f"{rec['sigma_min']:g}..{rec['sigma_max']:g}, rho {rec['rho']:g}, seeds {rec['seed']}.."
        f"{rec['seed'] + rec['n'] - 1}"
    )
    return rec


def job_options(config: dict) -> dict:
    """Settings that change no number (diffmem.plan.identity.OPERATIONAL), which jobs read from the config at
    run time rather than from their inputs, so changing them reruns nothing."""
    base = config["base"]
    return {
        "checkpoint_every": int(base["train"]["checkpoint_every"]),
        "sample_batch": int(base["sample"]["batch"]),
        "gpu": bool(config.get("gpu", False)),
        "gpus_per_run": int(config.get("gpus_per_run", 1)),
    }


def micro_batch(settings: dict, config: dict, where: str = "train") -> int:
    """Images per pass of a training (``settings``: the run's, at its size) on the config's GPUs: the largest
    divisor of the per-GPU batch (``train.batch`` / ``gpus_per_run``) whose step fits ``compute.gpu_memory_gb``
    by :func:`diffmem.plan.memory.micro_batch` (ConfigError naming ``where`` when one image does not fit); the
    whole per-GPU batch without ``gpu: true`` or a declared GPU memory. Operational like ``gpus_per_run``: the
    train job computes it from its run.json and the config at run time, and no run id depends on it."""
    gpus = int(config.get("gpus_per_run", 1)) if config.get("gpu") else 1
    limit = config.get("compute", {}).get("gpu_memory_gb") if config.get("gpu") else None
    return memory.micro_batch(settings["model"], int(settings["train"]["batch"]) // gpus, limit, where)


def flat_settings(settings: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": 1e-4}`` (lists stay values), for captions and people."""
    out: dict[str, Any] = {}
    for key, val in settings.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict) and val:
            out.update(flat_settings(val, f"{name}."))
        else:
            out[name] = val
    return out
