# Execution-guided Text-to-SQL post-training with dataset-alignment analysis.
# Run `snakemake --cores all` for the whole pipeline; the final target is results/report/index.html.

configfile: "config.yaml"

# `snakemake --report report.zip` after a run: the HTML page and the main tables (report/*.rst)
report: "report/workflow.rst"

# `gpu` is counted per machine: on one machine the workflow profile's `resources: gpu: 1` (profiles/default)
# runs GPU jobs one at a time; a cluster executor (profiles/slurm) leaves local resources out of its tally,
# so GPU jobs are submitted at once and the scheduler places them (README, "GPUs").
resource_scopes:
    gpu="local",


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/rollout.smk"
include: "rules/pairs.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/alignment.smk"
include: "rules/report.smk"


rule all:
    """The whole workflow: the final report."""
    input:
        "results/report/index.html",
    default_target: True
