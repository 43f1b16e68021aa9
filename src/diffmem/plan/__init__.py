"""The plan: from the workflow's YAML config to the runs, files and jobs it asks for. Torch- and numpy-free
at import, so Snakemake builds the DAG without paying for them.

- :mod:`~diffmem.plan.schema`: the workflow's JSON schema, loaded once; per-value checks against it;
- :mod:`~diffmem.plan.load`: YAML files layered, the schema's defaults, dotted keys, ``--config`` retyping;
- :mod:`~diffmem.plan.records`: resolved settings, a run's settings at one size, run.json and sample.json;
- :mod:`~diffmem.plan.expand`: the experiments of a config -> their values (:class:`~diffmem.plan.expand.Value`);
- :mod:`~diffmem.plan.checks`: sizes, brackets and figures checked before any job; data files before a real run;
- :mod:`~diffmem.plan.figure_specs`: what a figure's jobs are told (where its values' results lie, a caption);
- :mod:`~diffmem.plan.config`: the names of the five above in one module (what the library and tests import);
- :mod:`~diffmem.plan.identity`: the ids that name subsets, trainings, samples and scores;
- :mod:`~diffmem.plan.layout`: where every result lies under ``results/<name>/`` (the one place for paths);
- :mod:`~diffmem.plan.lock`: one workflow per results tree (an ``flock`` the main Snakemake process holds);
- :mod:`~diffmem.plan.resources`: what a job asks the cluster for (run time, memory, retries);
- :mod:`~diffmem.plan.plan`: the :class:`~diffmem.plan.plan.Plan` of a workflow run, which answers every question
  the Snakemake rules ask (targets, inputs, params, resources);
- :mod:`~diffmem.plan.memory`: a training step's GPU memory (counted activations, the measured peak) and the
  micro-batch that fits a declared GPU;
- :mod:`~diffmem.plan.cost`: what a config will cost in GPU-hours (``python -m diffmem cost``);
- :mod:`~diffmem.plan.search_cost`: what the EMM search spends against a fixed grid of sizes;
- :mod:`~diffmem.plan.search_cost_report`: its tables for a config and a run (``python -m diffmem emm-cost``);
- :mod:`~diffmem.plan.settings_factory`: complete run settings from the schema's defaults (tests, benchmark).

Imports from :mod:`diffmem.science` and :mod:`diffmem.data`, never from the wings above.
"""
