"""The workflow's steps as library functions: each reads its input files, calls the wings below, and writes
its outputs atomically. ``workflow/scripts/*.py`` are thin wrappers around them.

- :mod:`~diffmem.steps.pipeline`: the steps (subset, train, sample, score, EMM round, table, figure);
- :mod:`~diffmem.steps.job_env`: what every workflow script sets up first (its log file, threads).
"""
