"""Training one run: the loop, its state and resume, data parallel, GPU claims, metrics.

- :mod:`~diffmem.training.loop`: the training loop (seeded, resumable, paused before a walltime), its CLI;
- :mod:`~diffmem.training.data_parallel`: one process or several under ``torchrun``; the device;
- :mod:`~diffmem.training.gpu_locks`: which GPU a job takes on a workstation (a lock file per device);
- :mod:`~diffmem.training.metrics`: ``train/stats.jsonl`` and TensorBoard events from the progress hook.

Imports from :mod:`diffmem.science`, :mod:`diffmem.data` and :mod:`diffmem.plan`.
"""
