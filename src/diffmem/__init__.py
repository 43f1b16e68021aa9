"""diffmem: the science behind the reproduction of 'On Memorization in Diffusion Models'.

Wings, from the bottom up; a module imports only from its own wing or the ones below it
(``tests/package/test_imports.py`` fails on an import that runs upward or closes a cycle):

- :mod:`diffmem.errors`, :mod:`diffmem.io`: the exceptions that cross wings; atomic writers and
  readers that name a damaged file.
- :mod:`diffmem.science`: nets and their settings, preconditioning and losses, the sampler, the
  memorization score, the EMM search policy, the schedule, augmentation, precision.
- :mod:`diffmem.data`: image sources and the nested, class-balanced subsets drawn from them.
- :mod:`diffmem.plan`: from the YAML config to runs: loading and validation, expansion, identity,
  where every result lies (layout), what each job asks for (resources), what a config costs.
- :mod:`diffmem.training`: the training loop, its state and resume, data parallel, GPU claims, metrics.
- :mod:`diffmem.results`: figures, tables, the index, report items, verify, summaries.
- :mod:`diffmem.steps`: the workflow's steps, each reading files, calling the wings below, writing files.
- :mod:`diffmem.__main__`: the command line (``python -m diffmem ...``).
"""

from pathlib import Path

__version__ = "0.1.0"

#: The checkout this package lies in (``src/diffmem/..``): where the workflow's schema and benchmarks are.
CHECKOUT = Path(__file__).resolve().parents[2]
#: Measured speeds and memory (``scripts/benchmark.py``, ``python -m diffmem count-activations``) the plan models read.
BENCHMARKS = CHECKOUT / "benchmarks"
#: The paper's preset and its published points: what ``compare`` and the figures' reference markers hold runs against.
PAPER_CONFIG = CHECKOUT / "config" / "paper.yaml"
PAPER_POINTS = Path(__file__).resolve().parent / "results" / "paper_points.csv"
