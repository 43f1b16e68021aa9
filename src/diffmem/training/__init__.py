"""Training one run: the loop, its state and resume, data parallel, GPU claims, metrics.

Start at :mod:`~diffmem.training.loop`; the rest are its parts, each one concept:

- :mod:`~diffmem.training.loop`: ``train`` (one call: check, build or resume, step, finish) and its CLI
  (``python -m diffmem.training.loop``, also under ``torchrun``);
- :mod:`~diffmem.training.run`: one run in memory (net, EMA, optimizer, data, streams): a step, saving,
  resuming, the summary;
- :mod:`~diffmem.training.streams`: the seeded random streams and the data order, and each image's draws
  in a slice of the batch (``RowDraws``);
- :mod:`~diffmem.training.optim`: the optimizer, learning rate, gradient norm and clipping, the EMA update;
- :mod:`~diffmem.training.state`: the files of a run's folder (state.pt, snapshots, train.json), the check
  that they are this run's (``SettingsMismatchError``);
- :mod:`~diffmem.training.walltime`: pausing before a job's walltime (time budget, SIGTERM/SIGUSR1);
- :mod:`~diffmem.training.progress`: log lines and the records of the ``progress`` hook;
- :mod:`~diffmem.training.numerics`: ``train.precision`` and torch's backend flags (TF32, deterministic kernels);
- :mod:`~diffmem.training.data_parallel`: one process or several under ``torchrun``; each rank's slice of a
  batch and its rounds of a micro-batch (gradient accumulation); the device, and whether CUDA can run a GPU
  job (``check_cuda``);
- :mod:`~diffmem.training.gpu_locks`: which GPU a job takes on a workstation (a lock file per device), and
  the stop of a ``gpu: true`` job that CUDA cannot run (``require_cuda``);
- :mod:`~diffmem.training.metrics`: ``train/stats.jsonl`` and TensorBoard events from the progress hook.

Imports from :mod:`diffmem.science`, :mod:`diffmem.data` and :mod:`diffmem.plan`.
"""
