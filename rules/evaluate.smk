rule score_predictions:
    """Score an external predictions file (predictions.NAME) against its data set's gold."""
    input:
        examples=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/examples.parquet",
        gold=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/gold.parquet",
        gold_ts=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/gold_ts.parquet",
        excluded=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/excluded.parquet",
        summary=lambda w: f"{data_dir(config['predictions'][w.name]['dataset'])}/summary.json",
        pred=lambda w: config["predictions"][w.name]["path"],
    output:
        per_example="results/predictions/{name}/per_example.parquet",
        summary="results/predictions/{name}/summary.json",
    params:
        ingested=lambda w: data_dir(config["predictions"][w.name]["dataset"]),
        execution=EXECUTION,
        r_ves=lambda w: config["predictions"][w.name]["r_ves_repeats"],
        out_dir=lambda w, output: os.path.dirname(output.summary),
    threads: config["sandbox"]["workers"]
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/score_predictions/{name}.log",
    benchmark:
        "results/benchmarks/score_predictions/{name}.tsv"
    shell:
        "python -m workflow_scripts.cli.evaluate score --ingested {params.ingested} --pred {input.pred}"
        " --execution {params.execution:q} --r-ves {params.r_ves} --out {params.out_dir} > {log} 2>&1"


rule compare_variants:
    """The evaluation matrix: every variant's EX one-shot and with repair, paired tests."""
    input:
        trajectories=expand("results/rollouts/eval_{variant}/trajectories.parquet", variant=VARIANTS),
        examples=f"{data_dir(config['eval_dataset'])}/examples.parquet",
        excluded=f"{data_dir(config['eval_dataset'])}/excluded.parquet",
    output:
        compare=report(
            "results/evaluation/compare.parquet", caption="../report/evaluation.rst", category="Evaluation"
        ),
        difficulty="results/evaluation/difficulty.parquet",
        taxonomy="results/evaluation/taxonomy.parquet",
        routing="results/evaluation/routing.parquet",
        paired_one_shot="results/evaluation/paired_one_shot.parquet",
        paired_repair=report(
            "results/evaluation/paired_repair.parquet", caption="../report/evaluation.rst", category="Evaluation"
        ),
        paired_voting="results/evaluation/paired_voting.parquet",
        outcomes="results/evaluation/outcomes.parquet",
        summary=report("results/evaluation/compare.json", caption="../report/summary.rst", category="Evaluation"),
    params:
        variants=" ".join(f"--variant {v}=results/rollouts/eval_{v}" for v in VARIANTS),
        seed=config["evaluation"]["bootstrap_seed"],
        out_dir=lambda w, output: os.path.dirname(output.summary),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/compare_variants.log",
    benchmark:
        "results/benchmarks/compare_variants.tsv"
    shell:
        "python -m workflow_scripts.cli.evaluate compare {params.variants} --seed {params.seed}"
        " --examples {input.examples}"
        " --out-dir {params.out_dir} > {log} 2>&1"
