rule report:
    input:
        datasets=expand("results/data/{dataset}/summary.json", dataset=DATASETS),
        excluded=expand("results/data/{dataset}/excluded.parquet", dataset=DATASETS),
        model=config["model"]["path"],
        predictions=expand("results/predictions/{name}/summary.json", name=PREDICTIONS),
    output:
        "results/report/index.html",
    params:
        title=config["report"]["title"],
        datasets=" ".join(f"--dataset {d}={data_dir(d)}" for d in DATASETS),
        predictions=" ".join(f"--prediction {n}=results/predictions/{n}" for n in PREDICTIONS),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    shell:
        "python -m workflow_scripts.report --title {params.title:q} {params.datasets} {params.predictions}"
        " --model {input.model} --out {output} > {log} 2>&1"
