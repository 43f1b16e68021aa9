"""What a result *is*: the ids that name the folders of subsets, trainings, samples and scores.

One rule decides every id in the project: an id hashes exactly the settings that change the numbers of
that step, and nothing else. The steps nest, so each id covers its own settings plus its parent's id:

- **data id** (``subsets/<data_id>/n<size>.npz``): the data settings without where the files lie
  (``path``, ``download``, ``verify_md5``), plus a fingerprint of the source's *content* (the official
  CIFAR-10 tarball is pinned by its md5; an image folder or an unverified file by a hash of its bytes),
  so the same images found at another path keep their id and other images under the same path do not;
- **train id** (``runs/<train_id>/n<size>/``): the data identity, the net, the preconditioning and the
  training keys that change the weights (``checkpoint_every`` does not);
- **sample id** (``.../samples/<sample_id>/``): the sampler's settings (not ``batch``: every sample has its
  own seed, so the batch size changes no image);
- **score id** (``.../scores/<score_id>/``): the scoring settings (the d1/d2 threshold, the tie rule).

So a new sample count resamples without retraining, and a new threshold rescores without resampling.
Keys that change no number (``OPERATIONAL``) are read by the jobs from the config at run time.

Imports nothing heavy (no torch, no numpy): the workflow computes ids while it builds the DAG.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from diffmem.data.cifar10 import find_zip

#: Settings that change no number, per section: where files lie, whether to download or verify them,
#: how often a resumable state is written, how many samples go through the net at once.
OPERATIONAL: dict[str, tuple[str, ...]] = {
    "data": ("path", "download", "verify_md5"),
    "train": ("checkpoint_every",),
    "sample": ("batch",),
}
#: Keys added after ids were first issued, per section (a path inside it), with the value that does what the
#: code did before the key existed (what the key's absence means: the schema gives it no default, so a config
#: that leaves it out is unchanged). Written out at that value, a key is left out of identities (ids and
#: records) too, so both spellings share one folder; any other value is hashed.
DEFAULT_OMITTED: dict[str, dict[tuple[str, ...], Any]] = {
    "train": {("snapshots", "timing"): "images"},  # diffmem.science.schedule.SNAPSHOT_TIMINGS[0]
    "score": {("ties",): "memorized"},  # diffmem.science.memorization.TIE_RULES[0]
}
#: The sections a training run's weights depend on.
TRAIN_SECTIONS = ("data", "model", "diffusion", "train")
ID_LENGTH = 10

# The official CIFAR-10 python tarball; its md5 is checked when verify_md5 is on (diffmem.data.cifar10).
_PINNED_SOURCES = {"cifar10": "cifar-10-python.tar.gz md5 c58f30108f718f92721af3b95e74349a"}
_BUNDLED_SOURCES = ("digits", "fonts", "patches")  # generated or shipped with a package: the settings pin them


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def canonical(obj: Any) -> Any:
    """``obj`` with every mapping's keys sorted: the form a job's params take, so that Snakemake, which
    compares params as text, sees no change when a config file only lists its keys in another order."""
    return json.loads(canonical_json(obj))


def digest(obj: Any) -> str:
    """SHA-256 (hex) of a settings object; key order does not matter."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def short_id(obj: Any) -> str:
    """The folder name of a settings object: the first ``ID_LENGTH`` hex digits of its digest."""
    return digest(obj)[:ID_LENGTH]


# ------------------------------------------------------------------------------------ source content
_FINGERPRINTS: dict[tuple, str] = {}


def _hash_file(path: Path, h) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def content_fingerprint(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file's bytes, or of a folder's relative file names and bytes; None when missing.

    Memoized per process by (path, size, mtime) of the file or of every file of the folder."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    else:
        return None
    stats = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    key = (str(p.resolve()), stats)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(p) if f != p else f.name).encode() + b"\0")
            _hash_file(f, h)
        _FINGERPRINTS[key] = h.hexdigest()
    return _FINGERPRINTS[key]


def _cifar10_zip(path):
    return find_zip(path)


def source_fingerprint(src: dict, verify_md5: bool = True) -> str | None:
    """What pins the images of one data source: None for bundled sources (the settings do), the official
    md5 for a verified CIFAR-10 tarball, else (a CIFAR-10 dataset zip too) a hash of the bytes at ``path``
    (``missing:<path>`` when there is nothing there yet, e.g. in a dry run before the data is in place)."""
    source = src["source"]
    if source in _BUNDLED_SOURCES:
        return None
    path = src.get("path")
    if source == "cifar10" and (zipped := _cifar10_zip(path)) is not None:
        return content_fingerprint(zipped)  # a dataset zip has no official checksum: its bytes pin it
    if source in _PINNED_SOURCES and src.get("verify_md5", verify_md5):
        return _PINNED_SOURCES[source]
    if not path:
        return f"missing:{path}"
    return content_fingerprint(path) or f"missing:{path}"


# ---------------------------------------------------------------------------------------- identities
def _without(section: dict, name: str) -> dict:
    """``section`` without its operational keys and without the keys of :data:`DEFAULT_OMITTED` at their value."""
    out = copy.deepcopy(section)
    for key in OPERATIONAL.get(name, ()):
        out.pop(key, None)
    for path, value in DEFAULT_OMITTED.get(name, {}).items():
        node = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == value:
            del node[path[-1]]
    return out


def data_identity(data: dict) -> dict:
    """The data settings that decide which images a subset holds (idempotent: an identity maps to
    itself, so ``run.json``, which holds identities, hashes to its own folder's id)."""
    if "fingerprint" in data:
        return copy.deepcopy(data)
    verify = data.get("verify_md5", True)
    out = _without(data, "data")
    out["fingerprint"] = source_fingerprint(data, verify)
    blend = data.get("blend")
    if blend:
        out["blend"] = _without(blend, "data")
        out["blend"]["fingerprint"] = source_fingerprint(blend, verify)
    return out


def train_identity(settings: dict) -> dict:
    """The settings a training run's weights depend on (``data.size`` included when present)."""
    return {
        "data": data_identity(settings["data"]),
        "model": copy.deepcopy(settings["model"]),
        "diffusion": copy.deepcopy(settings["diffusion"]),
        "train": _without(settings["train"], "train"),
    }


def sample_identity(settings: dict) -> dict:
    return _without(settings["sample"], "sample")


def score_identity(settings: dict) -> dict:
    return _without(settings["score"], "score")


def data_id(settings: dict) -> str:
    d = data_identity(settings["data"])
    d.pop("size", None)
    return short_id(d)


def train_id(settings: dict) -> str:
    """Folder of a training run under ``runs/`` (the size is the sub-folder ``n<size>``)."""
    t = train_identity(settings)
    t["data"].pop("size", None)
    if t["data"].get("labels") == "unique":
        t["model"]["label_dim"] = None  # one label per image: |D|, which the size sub-folder says
    return short_id(t)


def train_digest(settings: dict) -> str:
    """Full digest of a sized run's training identity, recorded in its state and snapshots so that a
    folder is never resumed or overwritten by another training."""
    return digest(train_identity(settings))


def sample_id(settings: dict) -> str:
    return short_id(sample_identity(settings))


def score_id(settings: dict) -> str:
    return short_id(score_identity(settings))
