"""What a run leaves for a reader: figures, tables, the index, report items, checks and summaries.

- :mod:`~diffmem.results.figures`: the figures, drawn from a figure's table and spec, in one style (a package:
  the style, the table, and one module per figure kind);
- :mod:`~diffmem.results.loss_curve`: one run's loss curve (``python -m diffmem plot-loss``);
- :mod:`~diffmem.results.index`: ``results/<name>/index.csv`` and readable links to the run folders;
- :mod:`~diffmem.results.report_items`: the Snakemake report's tables as HTML and EMM bracket grids;
- :mod:`~diffmem.results.summary`: a Markdown summary of EMM per experiment value;
- :mod:`~diffmem.results.verify`: every result file against its manifest record (``--fix`` removes);
  :mod:`~diffmem.results.expected`: the files the config's plan expects, and which absent ones are lost;
- :mod:`~diffmem.results.readme_pictures`: the README's small copies of a finished run's figures;
- :mod:`~diffmem.results.paper`: the paper's published points and directions (``paper_points.csv``,
  ``paper_claims.yaml``); :mod:`~diffmem.results.claims` judges the directions on a run's own tables;
- :mod:`~diffmem.results.compare`: a run against the paper (``python -m diffmem compare``).

Imports from every wing below it; the workflow steps and the command line import it.
"""
