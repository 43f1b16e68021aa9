"""GPU jobs on a workstation take different free devices (diffmem.training.gpu_locks), with fake device ids."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from diffmem.training import gpu_locks as gpus

SRC = Path(__file__).resolve().parents[2] / "src"

# A second process takes a GPU, prints its CUDA_VISIBLE_DEVICES, and holds the lock until stdin closes.
HOLDER = textwrap.dedent(
    """
    import os, sys
    from diffmem.training import gpu_locks as gpus
    gpus.claim(sys.argv[1], 1, timeout_s=0)
    print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    sys.stdin.read()
    """
)


def _holder(lock_dir: Path, visible: str) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "PYTHONPATH": str(SRC)}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_two_concurrent_processes_get_different_gpus_and_a_released_lock_is_reused(tmp_path):
    a = _holder(tmp_path, "0,1")
    try:
        first = a.stdout.readline().strip()
        b = _holder(tmp_path, "0,1")
        try:
            second = b.stdout.readline().strip()
            assert {first, second} == {"0", "1"}
            # both taken: a third job waits, and gives up after its timeout
            with pytest.raises(TimeoutError):
                gpus.acquire(tmp_path, 1, env={"CUDA_VISIBLE_DEVICES": "0,1"}, timeout_s=0)
        finally:
            b.stdin.close()
            b.wait(30)
    finally:
        a.stdin.close()
        a.wait(30)
    assert a.returncode == 0 and b.returncode == 0
    # the holder that ended (however it ended) released its device: the next job takes it
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    lease = gpus.claim(tmp_path, 1, env=env, timeout_s=0)
    assert lease.ids == ["0"] and env["CUDA_VISIBLE_DEVICES"] == "0"
    lease.release()


def test_threads_in_one_process_get_different_gpus_and_a_waiting_job_gets_the_released_one(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "3,5"}  # only the visible ids are candidates
    leases = []
    threads = [threading.Thread(target=lambda: leases.append(gpus.acquire(tmp_path, 1, env=env, timeout_s=0)))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(lease.ids[0] for lease in leases) == ["3", "5"]
    waiting: list = []
    waiter = threading.Thread(target=lambda: waiting.append(gpus.acquire(tmp_path, 1, env=env, poll_s=0.05)))
    waiter.start()
    freed = leases[1].ids[0]
    leases[1].release()
    waiter.join(10)
    assert waiting and waiting[0].ids == [freed]
    leases[0].release()
    waiting[0].release()


def test_a_job_taking_two_gpus_and_none_when_too_few(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    one = gpus.acquire(tmp_path, 1, env=env, timeout_s=0)
    two = gpus.claim(tmp_path, 2, env=env, timeout_s=0)
    assert one.ids == ["0"] and two.ids == ["1", "2"] and env["CUDA_VISIBLE_DEVICES"] == "1,2"
    with pytest.raises(ValueError, match="needs 4 GPUs"):
        gpus.acquire(tmp_path, 4, env={"CUDA_VISIBLE_DEVICES": "0,1,2"}, timeout_s=0)
    one.release()
    two.release()


def test_inside_one_slurm_allocation_jobs_take_different_gpus(tmp_path):
    """``salloc --gpus=2`` then Snakemake locally: every job sees the allocation's GPUs and the same job id;
    they must not all land on the first GPU. Another allocation (other job id) locks elsewhere."""
    alloc = {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "7", "SLURMD_NODENAME": "n1"}
    env1, env2 = dict(alloc), dict(alloc)
    one = gpus.claim(tmp_path, 1, env=env1, timeout_s=0)
    two = gpus.claim(tmp_path, 1, env=env2, timeout_s=0)
    assert (env1["CUDA_VISIBLE_DEVICES"], env2["CUDA_VISIBLE_DEVICES"]) == ("0", "1")
    assert (tmp_path / "slurm-7-n1" / "gpu-1.lock").is_file()
    own = {"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_ID": "9", "SLURMD_NODENAME": "n1"}
    three = gpus.claim(tmp_path, 1, env=own, timeout_s=0)
    assert three.ids == []  # a submitted job sees exactly its own GPU: nothing to choose, no lock, no folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slurm-7-n1"]
    wide = {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "8", "SLURMD_NODENAME": "n1"}
    four = gpus.claim(tmp_path, 1, env=wide, timeout_s=0)  # another allocation: not blocked by 7's locks
    assert four.ids == ["0"] and (tmp_path / "slurm-8-n1" / "gpu-0.lock").is_file()
    for lease in (one, two, four):
        lease.release()


def test_nothing_without_a_gpu_request_or_without_visible_gpus(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert gpus.claim(tmp_path, 0, env=env).ids == [] and env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert gpus.claim(tmp_path, 1, env={"CUDA_VISIBLE_DEVICES": ""}).ids == []
    env = {"CUDA_VISIBLE_DEVICES": "", "SLURM_JOB_ID": "7"}
    assert gpus.claim(tmp_path, 1, env=env).ids == [] and not any(tmp_path.iterdir())


def test_claim_for_job_uses_the_results_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(gpus.LOCK_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    smk = SimpleNamespace(resources=SimpleNamespace(gpu=1), config={"results": "results", "name": "x"})
    lease = gpus.claim_for_job(smk)
    assert lease.ids == ["4"] and os.environ["CUDA_VISIBLE_DEVICES"] == "4"
    assert (tmp_path / "results" / "x" / gpus.LOCK_DIR / "gpu-4.lock").is_file()
    lease.release()


# ------------------------------------------------------------------------------------------------
# A job of a gpu: true config stops where CUDA cannot run it (issue 22), unless compute.device: cpu opts in.


def gpu_config(device: str | None = None) -> dict:
    return {"results": "results", "name": "x", "gpu": True, "compute": {"device": device}}


def fake_cuda(monkeypatch, available=True, count=1, capability=(9, 0), arch=("sm_80", "sm_90"), warning=None):
    """torch.cuda as a machine would show it: availability (and the warning torch gives on the way), devices,
    their compute capability and name, the architectures this torch was built for."""
    import torch

    def is_available() -> bool:
        if warning:
            warnings.warn(warning, UserWarning, stacklevel=2)
        return available

    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "NVIDIA Test GPU")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch))


def refusal(config: dict, count: int = 1) -> str:
    from diffmem.training.data_parallel import CudaUnusable

    with pytest.raises(CudaUnusable) as err:
        gpus.require_cuda(config, count)
    return str(err.value)


def test_a_gpu_job_without_usable_cuda_stops_naming_what_it_found(monkeypatch):
    asked = "1 GPU(s) (gpu: true, compute.device: null)"
    fake_cuda(monkeypatch, available=False)
    msg = refusal(gpu_config())
    assert "torch.cuda.is_available() is False" in msg and asked in msg and "compute.device: cpu" in msg
    old = "CUDA initialization: The NVIDIA driver on your system is too old (found version 11040)."
    fake_cuda(monkeypatch, available=False, warning=old)
    assert "torch says: " + old in refusal(gpu_config())
    fake_cuda(monkeypatch, capability=(12, 1))
    msg = refusal(gpu_config("h200"))
    assert "NVIDIA Test GPU) has compute capability 12.1" in msg and "get_arch_list(): sm_80 sm_90" in msg
    assert "gpu: true, compute.device: h200" in msg
    fake_cuda(monkeypatch, count=1)
    assert "1 CUDA device(s) visible" in refusal(gpu_config(), count=2) and "the job needs 2" in refusal(
        gpu_config(), 2
    )


def test_usable_cuda_and_the_cpu_opt_in_pass(monkeypatch, tmp_path):
    from diffmem.training import data_parallel as dp

    fake_cuda(monkeypatch, capability=(8, 9), arch=("sm_80", "sm_86"))  # sm_86 code runs on 8.9
    gpus.require_cuda(gpu_config(), 1)
    assert dp.has_kernels(10, 0, ["sm_90", "compute_90"]) and not dp.has_kernels(10, 0, ["sm_90"])
    assert dp.has_kernels(9, 0, ["sm_90a"]) and not dp.has_kernels(8, 0, ["sm_86"])
    # compute.device: cpu (config/rehearsal.yaml's fake GPUs) runs on the CPU; so does a config without gpu
    fake_cuda(monkeypatch, available=False)
    gpus.require_cuda(gpu_config("cpu"), 1)
    gpus.require_cuda({**gpu_config(), "gpu": False}, 1)
    gpus.require_cuda(gpu_config(), 0)
    assert dp.default_device().type == "cpu"
    # claim_for_job checks after taking its GPUs
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(gpus.LOCK_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    smk = SimpleNamespace(resources=SimpleNamespace(gpu=1), config=gpu_config())
    with pytest.raises(dp.CudaUnusable, match="CUDA_VISIBLE_DEVICES='0'"):
        gpus.claim_for_job(smk)
    gpus.claim_for_job(SimpleNamespace(resources=SimpleNamespace(gpu=1), config=gpu_config("cpu"))).release()
