"""CIFAR-10: the train split of the official python tarball, read without trusting its pickles, or the
dataset zip of the EDM / DiffMemorize code.

``path`` is the tarball, a folder holding it, or a folder holding the extracted
``cifar-10-batches-py/`` (or that folder itself). The batches are pickles; they are read with a
restricted unpickler that builds only dicts, lists, bytes, strings, numbers and numpy arrays,
never other classes. The tarball's md5 is checked against the official one (per-batch md5s for an
extracted folder) unless ``verify_md5=False``. A missing file is downloaded by torchvision into
that folder when ``download=True``.

``path`` may also be the zip that the EDM / DiffMemorize ``dataset_tool.py`` makes from the tarball
(``cifar10-32x32.zip``), or a folder holding it (when it holds no tarball): 32x32 RGB PNG files, one per
image (``00000/img00000000.png``, ...), and ``dataset.json`` = ``{"labels": [[file name, label], ...]}``.
Images are read in file-name order, which is the tarball's order. There is no official checksum of such a
zip: its data id is a hash of its bytes (:mod:`diffmem.plan.identity`), and with ``verify_md5`` on (the
default) it must hold the train split's 50,000 images, 5,000 per class.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: check_path runs while the DAG is built
    import numpy as np

CIFAR10_TGZ = "cifar-10-python.tar.gz"
CIFAR10_TGZ_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_ZIP = "cifar10-32x32.zip"  # the name the EDM / DiffMemorize READMEs give it
ZIP_LABELS = "dataset.json"
CIFAR10_TRAIN_MD5 = {  # the extracted train batches of the official tarball
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.cache
def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    import _codecs

    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,  # how protocol-2 pickles from Python 3 store bytes
        ("builtins", "bytearray"): bytearray,
        ("__builtin__", "bytearray"): bytearray,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only builtin containers, numbers, strings and numpy arrays."""

    def find_class(self, module, name):
        allowed = _numpy_reconstructors()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only dicts, lists, bytes, "
            "numbers and numpy arrays"
        )


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` (e.g. a CIFAR-10 batch) allowing only plain data and numpy arrays."""
    import io

    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _parse_batch(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a dict, got {type(obj).__name__}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{where}: a CIFAR-10 batch needs keys b'data' and b'labels', has {list(obj)}")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{where}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{where}: b'labels' must be N={data.shape[0]} ints in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _find_cifar10(path: str | None, download: bool) -> tuple[str, Path]:
    """Return ("tar", tarball), ("dir", extracted batches folder) or ("zip", dataset zip); download if asked."""
    if path is None:
        raise ValueError(
            f"data.path is required for source 'cifar10': the official {CIFAR10_TGZ}, the folder that "
            f"holds it, or the folder that holds the extracted {CIFAR10_DIR}/"
        )
    p = Path(path)
    if p.is_file():
        return ("zip" if p.suffix.lower() == ".zip" else "tar"), p
    if p.is_dir():
        if (p / CIFAR10_TGZ).is_file():
            return "tar", p / CIFAR10_TGZ
        if (p / CIFAR10_DIR / "data_batch_1").is_file():
            return "dir", p / CIFAR10_DIR
        if (p / "data_batch_1").is_file():
            return "dir", p
        if (p / CIFAR10_ZIP).is_file():
            return "zip", p / CIFAR10_ZIP
    folder = p.parent if p.name.endswith((".tar.gz", ".tgz")) else p
    if download:
        import torchvision

        folder.mkdir(parents=True, exist_ok=True)
        torchvision.datasets.CIFAR10(root=str(folder), train=True, download=True)
        if (folder / CIFAR10_TGZ).is_file():
            return "tar", folder / CIFAR10_TGZ
        return "dir", folder / CIFAR10_DIR
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {p} as the tarball, {folder / CIFAR10_TGZ} and "
        f"{folder / CIFAR10_DIR}/data_batch_1 and {folder / CIFAR10_ZIP}. Download {CIFAR10_URL} into {folder}, "
        "give the dataset zip of the EDM / DiffMemorize dataset_tool.py as data.path, or set "
        "data.download: true (load_source(..., download=True)) on a machine with internet."
    )


def find_zip(path: str | None) -> Path | None:
    """The dataset zip that ``path`` names (the file, or a folder holding it and no tarball), else None.
    Cheap and numpy-free: :mod:`diffmem.plan.identity` asks it while the DAG is built."""
    if not path:
        return None
    try:
        kind, where = _find_cifar10(path, download=False)
    except (FileNotFoundError, ValueError):
        return None
    return where if kind == "zip" else None


def _check_zip(where: Path) -> None:
    import zipfile

    expected = f"a dataset zip of PNG files and {ZIP_LABELS} (EDM / DiffMemorize dataset_tool.py)"
    if not zipfile.is_zipfile(where):
        raise ValueError(f"{where} is not a zip file; expected {expected}")
    with zipfile.ZipFile(where) as z:
        names = z.namelist()
    if ZIP_LABELS not in names:
        raise ValueError(f"{where} has no {ZIP_LABELS} (the labels); expected {expected}")
    if not any(n.lower().endswith(".png") for n in names):
        raise ValueError(f"{where} holds no PNG file; expected {expected}")


def check_path(path: str | None, download: bool = False) -> None:
    """Cheap up-front check that ``path`` can hold CIFAR-10 (before any job): it is found as
    :func:`load_cifar10` looks for it, a tarball is gzip and its first member lies in
    ``cifar-10-batches-py/`` (one header read, not the whole archive), an extracted folder has every train
    batch. Raises ValueError saying what was found and what was expected; the md5 is checked by the job."""
    if path is None:
        _find_cifar10(path, download=False)  # raises: the message says what path may be
    p = Path(path)
    if download and not p.exists():
        return  # the job downloads it
    kind, where = _find_cifar10(path, download=False)
    if kind == "zip":
        return _check_zip(where)
    expected = f"the official {CIFAR10_TGZ} (a gzip tar holding {CIFAR10_DIR}/)"
    if kind == "dir":
        missing = [n for n in CIFAR10_TRAIN_MD5 if not (where / n).is_file()]
        if missing:
            raise ValueError(f"{where} is missing {', '.join(missing)}; expected the extracted {CIFAR10_DIR}/")
        return
    with open(where, "rb") as f:
        magic = f.read(2)
    if magic != b"\x1f\x8b":
        raise ValueError(f"{where} is not a gzip file; expected {expected}")
    try:
        with tarfile.open(where, "r:gz") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{where} is not a readable tar.gz ({e}); expected {expected}") from None
    if first is None or first.name.split("/")[0] != CIFAR10_DIR:
        found = "an empty archive" if first is None else f"first member {first.name!r}"
        raise ValueError(f"{where} holds {found}; expected {expected}")


def load_zip(where: str | Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels of a dataset zip, in file-name order. ``verify``: it must be
    the CIFAR-10 train split's 50,000 images, 5,000 per class."""
    import io
    import json
    import zipfile

    import numpy as np
    from PIL import Image

    where = Path(where)
    _check_zip(where)
    with zipfile.ZipFile(where) as z:
        with z.open(ZIP_LABELS) as f:
            meta = json.load(f)
        pairs = meta.get("labels") if isinstance(meta, dict) else None
        if not pairs:
            raise ValueError(f"{where}:{ZIP_LABELS} has no labels; CIFAR-10 needs {{'labels': [[file, label], ...]}}")
        labels_of = {str(name): label for name, label in pairs}
        files = sorted(n for n in z.namelist() if n.lower().endswith(".png"))
        unlabelled = [n for n in files if n not in labels_of]
        if unlabelled:
            raise ValueError(
                f"{where}: {len(unlabelled)} PNG files without a label in {ZIP_LABELS}, e.g. {unlabelled[0]}"
            )
        images = np.empty((len(files), 3, 32, 32), dtype=np.uint8)
        for i, name in enumerate(files):
            with Image.open(io.BytesIO(z.read(name))) as im:
                if im.mode != "RGB" or im.size != (32, 32):
                    raise ValueError(f"{where}:{name} is {im.mode} {im.size[0]}x{im.size[1]}; CIFAR-10 is RGB 32x32")
                images[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    labels = np.array([int(labels_of[n]) for n in files], dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{where}: labels must be 0..9, got {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=10)
    if verify and (len(files) != 50000 or (counts != 5000).any()):
        raise ValueError(
            f"{where}: {len(files)} images, per class {counts.tolist()}; the CIFAR-10 train split has 50000, "
            "5000 per class. To read another zip in this format, set data.verify_md5: false "
            "(load_source(..., verify_md5=False))."
        )
    return images, labels


def load_cifar10(path, download, verify_md5) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    kind, where = _find_cifar10(path, download)
    if kind == "zip":
        return load_zip(where, verify=verify_md5)
    batches = []
    if kind == "tar":
        if verify_md5:
            got = _md5(where)
            if got != CIFAR10_TGZ_MD5:
                raise ValueError(
                    f"{where}: md5 {got} is not the official CIFAR-10 tarball's {CIFAR10_TGZ_MD5} "
                    "(corrupt or partial download?). To read a tarball in the official format that is "
                    "not the official file (e.g. a test tarball), set data.verify_md5: false "
                    "(load_source(..., verify_md5=False))."
                )
        with tarfile.open(where, "r:gz") as tar:
            for name in CIFAR10_TRAIN_MD5:
                member_name = f"{CIFAR10_DIR}/{name}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise ValueError(
                        f"{where} has no {member_name}: not the official CIFAR-10 python tarball layout"
                    ) from None
                f = tar.extractfile(member) if member.isfile() else None
                if f is None:
                    raise ValueError(f"{where}: {member_name} is not a regular file")
                batches.append(_parse_batch(restricted_loads(f.read()), f"{where}:{member_name}"))
    else:
        for name, md5 in CIFAR10_TRAIN_MD5.items():
            file = where / name
            if not file.is_file():
                raise FileNotFoundError(f"{file} is missing from the extracted CIFAR-10 folder {where}")
            if verify_md5 and _md5(file) != md5:
                raise ValueError(
                    f"{file}: md5 is not the official {md5}. To read batches in the official format that "
                    "are not the official files, set data.verify_md5: false (load_source(..., "
                    "verify_md5=False))."
                )
            batches.append(_parse_batch(restricted_loads(file.read_bytes()), str(file)))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return images, labels
