rule score_predictions:
    input:
        examples=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/examples.parquet",
        gold=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/gold.parquet",
        excluded=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/excluded.parquet",
        summary=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/summary.json",
        pred=lambda w: config["predictions"][w.name]["path"],
    output:
        per_example="results/predictions/{name}/per_example.parquet",
        summary="results/predictions/{name}/summary.json",
    params:
        ingested=lambda w: data_dir(config["predictions"][w.name]["dataset"]),
        sandbox=as_json(config["sandbox"]),
        keep_distinct="--keep-distinct" if config["matching"]["keep_distinct"] else "",
    threads: config["sandbox"]["workers"]
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/score_predictions/{name}.log",
    benchmark:
        "results/benchmarks/score_predictions/{name}.tsv"
    shell:
        "python -m workflow_scripts.evaluate --ingested {params.ingested} --pred {input.pred}"
        " --sandbox {params.sandbox:q} {params.keep_distinct}"
        " --out results/predictions/{wildcards.name} > {log} 2>&1"
