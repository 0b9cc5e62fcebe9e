# Execution-guided Text-to-SQL post-training with dataset-alignment analysis.
# Run `snakemake --cores all` for the whole pipeline; the final target is results/report/index.html.

configfile: "config.yaml"


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
    input:
        "results/report/index.html",
    default_target: True
