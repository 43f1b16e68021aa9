# diffmem: reproduce "On Memorization in Diffusion Models" (Gu et al., arXiv 2310.02664).
# Table of contents: the rules live in workflow/rules/, the science in src/diffmem/.

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# The workflow runs the diffmem of this checkout (src/), never an installed copy, and does not need
# one: building the DAG imports only torch- and numpy-free modules (Snakemake + PyYAML suffice).
#  - DAG building: src/ goes first on this process's sys.path.
#  - Jobs without --use-conda: PYTHONPATH starts with src/. Local jobs inherit it; sbatch exports it
#    to Slurm jobs (whose snakemake re-reads this file anyway).
#  - Jobs with --use-conda: Snakemake removes PYTHONPATH there, but the preamble it writes into every
#    `script:` extends the job's sys.path by this process's sys.path, which holds src/. envs/ install
#    no diffmem, so nothing in the env shadows it.
SRC = os.path.join(workflow.basedir, "src")
if sys.path[:1] != [SRC]:
    sys.path.insert(0, SRC)
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != SRC:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))


envvars:
    "PYTHONPATH",  # set just above; declared so that remote executors pass it on to jobs


# Every config file read with limits before the config is used (diffmem.plan.load.read_yaml: size, aliases,
# duplicate keys; errors name file, line and column). Snakemake parsed --configfile already: a file it cannot
# parse never gets here (its own message), one it can is refused here before any check walks it.
from diffmem.errors import ConfigError
from diffmem.plan.load import read_yaml

try:
    for _path in workflow.overwrite_configfiles or [p for p in ["config/config.yaml"] if os.path.exists(p)]:
        read_yaml(_path)
except ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None

# The embedded default, unless --configfile names another config (a preset replaces it whole, so
# the default's experiments never leak into config/paper.yaml or config/smoke.yaml).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/emm.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/index.smk"


rule all:
    default_target: True
    input:
        PLAN.final_targets(),
