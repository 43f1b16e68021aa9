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

:func:`check_path` is the check before any job: the tarball is streamed once to its end (every member read,
so a truncated file is caught; its md5 on the way when verified), a zip's labels are matched to its PNG files.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import pickle
import tarfile
import zlib
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


def _check_md5(file: Path, want: str, got: str | None = None) -> None:
    """ValueError unless ``file``'s md5 (``got``, else read here) is the official ``want``."""
    got = got or _md5(file)
    if got != want:
        raise ValueError(
            f"{file}: md5 {got} is not the official CIFAR-10 file's {want} (corrupt or partial download?). "
            "To read files in the official format that are not the official ones (e.g. a test tarball), set "
            "data.verify_md5: false (load_source(..., verify_md5=False))."
        )


class _HashingReader:
    """A binary file's ``read`` that feeds every byte read to ``digest`` (one pass for unzipping and md5)."""

    def __init__(self, f, digest):
        self.f, self.digest = f, digest

    def read(self, n: int = -1) -> bytes:
        block = self.f.read(n)
        self.digest.update(block)
        return block


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


def _zip_labels(z, where: Path) -> tuple[list[str], list[int]]:
    """The PNG files of an open dataset zip in file-name order and their labels, as its dataset.json declares
    them: every file labelled, every label naming a file of the zip, each an integer 0..9."""
    import json

    with z.open(ZIP_LABELS) as f:
        meta = json.load(f)
    pairs = meta.get("labels") if isinstance(meta, dict) else None
    if not pairs:
        raise ValueError(f"{where}:{ZIP_LABELS} has no labels; CIFAR-10 needs {{'labels': [[file, label], ...]}}")
    labels_of = {str(name): label for name, label in pairs}
    files = sorted(n for n in z.namelist() if n.lower().endswith(".png"))
    unlabelled = [n for n in files if n not in labels_of]
    if unlabelled:
        raise ValueError(f"{where}: {len(unlabelled)} PNG files without a label in {ZIP_LABELS}, e.g. {unlabelled[0]}")
    present = set(files)
    absent = [n for n in labels_of if n not in present]
    if absent:
        raise ValueError(
            f"{where}:{ZIP_LABELS} labels {len(labels_of)} images but the zip holds {len(files)} PNG files; "
            f"{len(absent)} labelled files are missing, e.g. {absent[0]} (a partial copy?)"
        )
    labels = [labels_of[n] for n in files]
    bad = next((x for x in labels if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= 9), None)
    if bad is not None:
        raise ValueError(f"{where}:{ZIP_LABELS}: labels must be integers 0..9, found {bad!r}")
    return files, labels


def _check_zip_image(mode: str, size: tuple[int, int], where: Path, name: str) -> None:
    """ValueError unless a zip's PNG is RGB 32x32 (its PIL mode and size), as CIFAR-10's are."""
    if mode != "RGB" or size != (32, 32):
        raise ValueError(f"{where}:{name} is {mode} {size[0]}x{size[1]}; CIFAR-10 is RGB 32x32")


def _check_zip_headers(z, where: Path, files: list[str]) -> None:
    """Each PNG of an open zip read by its header (no pixel decoded) and held to :func:`_check_zip_image`."""
    from PIL import Image

    for name in files:
        try:
            with z.open(name) as f, Image.open(f) as im:
                mode_size = im.mode, im.size
        except Exception as e:  # Pillow raises many kinds: UnidentifiedImageError, SyntaxError, OSError
            raise ValueError(f"{where}:{name} is not a readable PNG ({type(e).__name__}: {e})") from None
        _check_zip_image(*mode_size, where, name)


def _check_zip_counts(where: Path, labels: list[int], verify: bool) -> list[int]:
    """The images per class of a zip's labels; with ``verify``, ValueError unless they are the train split's."""
    counts = [labels.count(c) for c in range(10)]
    if verify and (len(labels) != 50000 or any(c != 5000 for c in counts)):
        raise ValueError(
            f"{where}: {len(labels)} images, per class {counts}; the CIFAR-10 train split has 50000, "
            "5000 per class. To read another zip in this format, set data.verify_md5: false "
            "(load_source(..., verify_md5=False))."
        )
    return counts


def _check_tarball(where: Path, verify_md5: bool) -> None:
    """Stream a tarball once to its end: gzip, its first member in ``cifar-10-batches-py/``, every train batch
    a member, the gzip stream complete (its checksum and length: a truncated file fails), and the official
    md5 when ``verify_md5``. ValueError saying what was found and what was expected."""
    expected = f"the official {CIFAR10_TGZ} (a gzip tar holding {CIFAR10_DIR}/)"
    with open(where, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            raise ValueError(f"{where} is not a gzip file; expected {expected}")
    members, md5 = set(), hashlib.md5()
    with open(where, "rb") as raw:
        hashed = _HashingReader(raw, md5)
        try:
            with gzip.GzipFile(fileobj=hashed) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:  # stream mode: each member's bytes are read through
                    if not members and member.name.split("/")[0] != CIFAR10_DIR:
                        raise ValueError(f"{where} holds first member {member.name!r}; expected {expected}")
                    members.add(member.name if member.isfile() else f"{member.name}/")
                while gz.read(1 << 20):  # past the tar's end blocks to the gzip trailer
                    pass
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{where} is not a readable tar.gz, or is cut short ({e}); expected {expected}") from None
        while hashed.read(1 << 20):
            pass
    missing = [n for n in CIFAR10_TRAIN_MD5 if f"{CIFAR10_DIR}/{n}" not in members]
    if missing:
        found = "an empty archive" if not members else f"no file {CIFAR10_DIR}/{missing[0]}"
        raise ValueError(f"{where} holds {found}; expected {expected}")
    if verify_md5:
        _check_md5(where, CIFAR10_TGZ_MD5, md5.hexdigest())


def check_path(path: str | None, download: bool = False, verify_md5: bool = True) -> list[int] | None:
    """Check before any job that ``path`` holds CIFAR-10 as :func:`load_cifar10` looks for it. A tarball is
    streamed once (:func:`_check_tarball`); an extracted folder has every train batch (their md5s when
    ``verify_md5``); a dataset zip's labels match its PNG files (50,000, 5,000 per class, when
    ``verify_md5``), each PNG RGB 32x32 by its header. Returns the images per class when the file says so (a
    zip), else None. ValueError saying what was found and what was expected."""
    if path is None:
        _find_cifar10(path, download=False)  # raises: the message says what path may be
    if download and not Path(path).exists():
        return None  # the job downloads it
    kind, where = _find_cifar10(path, download=False)
    if kind == "zip":
        import zipfile

        _check_zip(where)
        with zipfile.ZipFile(where) as z:
            files, labels = _zip_labels(z, where)
            counts = _check_zip_counts(where, labels, verify_md5)
            _check_zip_headers(z, where, files)
            return counts
    if kind == "tar":
        return _check_tarball(where, verify_md5)
    missing = [n for n in CIFAR10_TRAIN_MD5 if not (where / n).is_file()]
    if missing:
        raise ValueError(f"{where} is missing {', '.join(missing)}; expected the extracted {CIFAR10_DIR}/")
    for name, md5 in CIFAR10_TRAIN_MD5.items() if verify_md5 else ():
        _check_md5(where / name, md5)
    return None


def load_zip(where: str | Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels of a dataset zip, in file-name order. ``verify``: it must be
    the CIFAR-10 train split's 50,000 images, 5,000 per class."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    where = Path(where)
    _check_zip(where)
    with zipfile.ZipFile(where) as z:
        files, labels = _zip_labels(z, where)
        _check_zip_counts(where, labels, verify)
        images = np.empty((len(files), 3, 32, 32), dtype=np.uint8)
        for i, name in enumerate(files):
            with Image.open(io.BytesIO(z.read(name))) as im:
                _check_zip_image(im.mode, im.size, where, name)
                images[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    return images, np.array(labels, dtype=np.int64)


def load_cifar10(path, download, verify_md5) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    kind, where = _find_cifar10(path, download)
    if kind == "zip":
        return load_zip(where, verify=verify_md5)
    batches = []
    if kind == "tar":
        if verify_md5:
            _check_md5(where, CIFAR10_TGZ_MD5)
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
            if verify_md5:
                _check_md5(file, md5)
            batches.append(_parse_batch(restricted_loads(file.read_bytes()), str(file)))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return images, labels
