"""The steps under the one name callers used before they had a module each: re-exports, no code.

New code imports the step's own module (:mod:`~diffmem.steps.sample`, :mod:`~diffmem.steps.table`, ...).
"""

from diffmem.steps.emm import emm_result, emm_round
from diffmem.steps.sample import SamplingPaused, load_denoiser, net_images, sample_run
from diffmem.steps.score import score_run
from diffmem.steps.table import TABLE_COLUMNS, figure_table, write_csv
from diffmem.steps.train import TrainingPaused, train_run

__all__ = [
    "TABLE_COLUMNS", "SamplingPaused", "TrainingPaused", "emm_result", "emm_round", "figure_table", "load_denoiser",
    "net_images", "sample_run", "score_run", "train_run", "write_csv",
]  # fmt: skip
