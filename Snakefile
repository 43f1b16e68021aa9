# diffmem: reproduce "On Memorization in Diffusion Models" (Gu et al., arXiv 2310.02664).
# Table of contents: the rules live in workflow/rules/, the science in src/diffmem/.

import os

from snakemake.utils import min_version

min_version("9.0")

# envs/diffmem.yaml installs this checkout into the conda env through ${DIFFMEM_ROOT}.
os.environ.setdefault("DIFFMEM_ROOT", workflow.basedir)


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


rule all:
    input:
        get_final_outputs(),
    default_target: True
