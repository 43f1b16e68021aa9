"""From the workflow's YAML config to concrete runs: the names of the plan wing that the library, the
scripts and the tests use, gathered in one module (each lives in the module of its concept):

- :mod:`~diffmem.plan.load`: YAML files layered, the schema's defaults, dotted keys, ``--config`` retyping;
- :mod:`~diffmem.plan.expand`: experiments -> their values (:class:`Value`, with ids);
- :mod:`~diffmem.plan.records`: resolved settings, a run's settings at one size, ``run.json``/``sample.json``;
- :mod:`~diffmem.plan.checks`: sizes and figures checked before any job, data files before a real run;
- :mod:`~diffmem.plan.figure_specs`: what a figure's jobs are told, its caption.

The workflow asks its questions of :class:`diffmem.plan.plan.Plan`, built on these.
"""

from __future__ import annotations

from diffmem.errors import ConfigError
from diffmem.plan.checks import allowed_sizes, check_data, check_plan
from diffmem.plan.expand import Value, data_spec, expand, slug
from diffmem.plan.figure_specs import figure_caption, figure_spec, threshold_text
from diffmem.plan.load import load_config, merge, retype_overrides, set_key
from diffmem.plan.records import (
    canonical_model,
    data_settings,
    job_options,
    resolve_settings,
    run_record,
    run_settings,
    sample_record,
)

__all__ = [
    "ConfigError",
    "Value",
    "allowed_sizes",
    "canonical_model",
    "check_data",
    "check_plan",
    "data_settings",
    "data_spec",
    "expand",
    "figure_caption",
    "figure_spec",
    "job_options",
    "load_config",
    "merge",
    "resolve_settings",
    "retype_overrides",
    "run_record",
    "run_settings",
    "sample_record",
    "set_key",
    "slug",
    "threshold_text",
]
