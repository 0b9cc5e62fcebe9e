rule default_model:
    output:
        directory(DEFAULT_MODEL_DIR),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/default_model.log",
    benchmark:
        "results/benchmarks/default_model.tsv"
    shell:
        "python -m workflow_scripts.cli.model --out {output} > {log} 2>&1"
