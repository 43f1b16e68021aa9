"""The workflow's steps as library functions, one module per step: each reads its input files, calls the
wings below, and writes its outputs atomically. ``workflow/scripts/*.py`` are thin wrappers around them.

- :mod:`~diffmem.steps.subset`: a class-balanced nested subset of the config's data (``write_subset``);
- :mod:`~diffmem.steps.train`: one run, in this process or data parallel through torchrun (``train_run``);
- :mod:`~diffmem.steps.sample`: every snapshot of a run sampled, resumably (``sample_run``);
- :mod:`~diffmem.steps.score`: the memorization ratio of every snapshot, and the best (``score_run``);
- :mod:`~diffmem.steps.emm`: an EMM search's rounds and its result (``emm_round``, ``emm_result``);
- :mod:`~diffmem.steps.table`: a figure's table (``figure_table``, ``TABLE_COLUMNS``, ``write_csv``);
- :mod:`~diffmem.steps.figure`: a figure drawn from its table (``draw_figure_file``);
- :mod:`~diffmem.steps.job_env`: what every workflow script sets up first (its log file, threads);
- :mod:`~diffmem.steps.attempts`: a job's attempts: a walltime pause resumes, any other failure is not retried.
"""
