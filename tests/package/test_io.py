"""Result files: usual modes (umask respected), byte-reproducible checkpoints, and damaged files named with
the way out by every reader."""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest

from diffmem import io


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writers_respect_the_umask(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what a plain open() gives
    io.write_json(tmp_path / "a.json", {"x": 1})
    io.write_text(tmp_path / "b.txt", "x")
    io.write_npz(tmp_path / "c.npz", x=np.arange(3))
    with io.atomic_path(tmp_path / "d.png") as tmp:
        tmp.write_bytes(b"png")
    for name in ("a.json", "b.txt", "c.npz", "d.png"):
        assert mode(tmp_path / name) == mode(plain) == 0o666 & ~mask, name
    assert not list(tmp_path.glob(".tmp-*"))


def test_torch_save_mode_and_bytes_do_not_depend_on_the_temporary_name(tmp_path, umask):
    torch = pytest.importorskip("torch")
    obj = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "step": 3}
    io.torch_save(obj, tmp_path / "a.pt")
    io.torch_save(obj, tmp_path / "b.pt")
    assert mode(tmp_path / "a.pt") == 0o644
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.pt", "b.pt")]
    assert digest[0] == digest[1]
    assert torch.equal(io.torch_load(tmp_path / "a.pt")["w"], obj["w"])


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), io.atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def results_tree(tmp_path):
    """A run folder laid out as the workflow writes it (diffmem.plan.layout)."""
    train = tmp_path / "runs" / "abc" / "n10" / "train"
    score = tmp_path / "runs" / "abc" / "n10" / "samples" / "s1" / "scores" / "t1"
    return train, score


def test_truncated_json_names_the_file_and_the_way_out(tmp_path):
    train, score = results_tree(tmp_path)
    for path in (score / "memorization.json", tmp_path / "emm" / "e" / "v" / "round0.json"):
        io.write_json(path, {"ratio": 0.5, "next": [10, 20]})
        truncate(path)
        with pytest.raises(io.CorruptFileError) as err:
            io.read_json(path)
        msg = str(err.value)
        assert str(path) in msg and "Delete it" in msg and f"snakemake --cores 1 {path}" in msg
        assert isinstance(err.value, ValueError)  # callers that caught ValueError (JSONDecodeError) still do
    summary = train / "train.json"
    io.write_json(summary, {"snapshots": []})
    summary.write_text("")
    with pytest.raises(io.CorruptFileError, match=f"Delete the training folder {train}"):
        io.read_json(summary)


def test_missing_file_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.read_json(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError):
        io.read_npz(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        io.torch_load(tmp_path / "nope.pt")


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9])
def test_truncated_npz_names_the_file(tmp_path, keep):
    path = tmp_path / "subsets" / "d1" / "n10.npz"
    rng = np.random.default_rng(0)
    io.write_npz(path, images=rng.integers(0, 255, (10, 1, 8, 8), dtype=np.uint8), labels=np.arange(10))
    assert io.read_npz(path)["labels"].tolist() == list(range(10))
    truncate(path, keep)
    with pytest.raises(io.CorruptFileError, match=rf"{path}.*Delete it and then run snakemake again"):
        io.read_npz(path)


def test_corrupt_byte_inside_npz_names_the_file(tmp_path):
    path = tmp_path / "samples.npz"
    io.write_npz(path, samples=np.random.default_rng(1).integers(0, 255, (50, 3, 8, 8), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(io.CorruptFileError, match=str(path)):
        io.read_npz(path)


def test_truncated_checkpoints_name_the_training_folder(tmp_path):
    torch = pytest.importorskip("torch")
    train, _ = results_tree(tmp_path)
    state = {"w": torch.ones(100), "step": 1}
    snap, st = train / "snapshot-000.pt", train / "state.pt"
    for path in (snap, st):
        io.torch_save(state, path)
        truncate(path)
    with pytest.raises(io.CorruptFileError) as err:
        io.torch_load(snap)
    assert str(snap) in str(err.value) and f"delete the whole training folder {train}" in str(err.value)
    assert str(train / "train.json") in str(err.value)
    with pytest.raises(io.CorruptFileError, match=rf"{st}.*restarts from step 0"):
        io.torch_load(st)


class _Boom:
    def __reduce__(self):
        return (os.getcwd, ())


def test_checkpoint_holding_code_is_refused_with_its_name(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "evil.pt"
    import torch

    torch.save({"x": _Boom()}, path)  # unpickling it would call code: weights_only refuses
    with pytest.raises(io.CorruptFileError, match=str(path)):
        io.torch_load(path)


def test_subset_loader_names_a_damaged_or_foreign_subset(tmp_path):
    from diffmem import data

    s = data.make_subset(
        {
            "source": "digits",
            "resolution": 8,
            "classes": 2,
            "labels": "none",
            "seed": 0,
            "size": 10,
            "pick": "random",
            "resize": "area",
        }
    )
    path = tmp_path / "subsets" / "d1" / "n10.npz"
    data.save_subset(path, s)
    truncate(path)
    with pytest.raises(io.CorruptFileError, match=rf"{path} is truncated or corrupt.*Delete it"):
        data.load_subset(path)
    io.write_npz(path, images=np.zeros((1, 1, 2, 2), np.uint8))
    with pytest.raises(io.CorruptFileError, match=rf"{path}.*no array 'labels'"):
        data.load_subset(path)


def test_reading_json_imports_neither_numpy_nor_torch(tmp_path):
    """The workflow reads EMM rounds with read_json while it builds the DAG: that must stay cheap."""
    import subprocess
    import sys

    io.write_json(tmp_path / "round0.json", {"done": False})
    code = (
        "import sys; from diffmem.io import read_json\n"
        f"assert read_json({str(tmp_path / 'round0.json')!r}) == {{'done': False}}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'torch'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_npz_is_byte_reproducible_and_reads_back(tmp_path, monkeypatch):
    import time

    arrays = {"images": np.arange(48, dtype=np.uint8).reshape(3, 1, 4, 4), "settings": np.array('{"a": 1}')}
    io.write_npz(tmp_path / "a.npz", **arrays)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400 * 365)  # a write a year later
    io.write_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = io.read_npz(tmp_path / "a.npz")
    assert back["images"].dtype == np.uint8 and np.array_equal(back["images"], arrays["images"])
    assert str(back["settings"]) == '{"a": 1}'
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:  # what np.load expects
        assert sorted(z.files) == ["images", "settings"]


# ------------------------------------------------------------------------------------ the manifest records


def test_files_in_a_results_folder_get_a_record_of_size_and_sha256(tmp_path):
    res = tmp_path / "results" / "x"
    (res / "runs").mkdir(parents=True)
    path = res / "emm" / "a" / "b" / "round0.json"
    io.write_json(path, {"next": [2]})
    rec = io.read_record(io.record_path(path))
    data = path.read_bytes()
    assert rec == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert io.results_root(path) == res.absolute()
    assert io.recorded_file(io.record_path(path)) == path and io.is_record(io.record_path(path))
    io.write_json(path, {"next": [4, 8]})  # a rewrite replaces the record
    assert io.read_record(io.record_path(path))["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert mode(io.record_path(path)) == mode(path)


def test_files_outside_a_results_folder_and_logs_get_no_record(tmp_path):
    io.write_json(tmp_path / "docs" / "a.json", {})
    assert not io.record_path(tmp_path / "docs" / "a.json").exists()
    (tmp_path / "subsets").mkdir()
    io.write_text(tmp_path / "logs" / "x.log", "t")
    assert not io.record_path(tmp_path / "logs" / "x.log").exists()
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["x.log"]


def test_a_failed_write_keeps_the_old_file_and_its_record(tmp_path):
    (tmp_path / "runs").mkdir()
    path = tmp_path / "tables" / "t.csv"
    io.write_text(path, "a,b\n1,2\n")
    before = io.record_path(path).read_text()
    with pytest.raises(RuntimeError), io.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "a,b\n1,2\n" and io.record_path(path).read_text() == before
