rule mine_pairs:
    """Mine natural preference pairs (chosen vs rejected SQL) from a rollout run."""
    input:
        trajectories="results/rollouts/{run}/trajectories.parquet",
        examples=lambda w: run_data(w)["examples"],
    output:
        "results/pairs/natural/{run}.parquet",
    params:
        data_dir=lambda w, input: os.path.dirname(input.examples),
        use_gold="--use-gold-when-failed" if config["mining"]["use_gold_when_failed"] else "",
        max_pairs=config["mining"]["max_pairs_per_group"],
        min_cost_gap=(
            f"--min-cost-gap {config['mining']['min_cost_gap']}"
            if config["mining"]["min_cost_gap"] is not None
            else ""
        ),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/pairs/mine_{run}.log",
    benchmark:
        "results/benchmarks/pairs/mine_{run}.tsv"
    shell:
        "python -m workflow_scripts.cli.pairs mine --run {wildcards.run} --trajectories {input.trajectories}"
        " --data-dir {params.data_dir} {params.use_gold} --max-pairs-per-group {params.max_pairs}"
        " {params.min_cost_gap} --out {output} > {log} 2>&1"


rule synthetic_negatives:
    """Build synthetic hard negatives (AST perturbations of gold SQL) and their pairs."""
    input:
        **data_files(run_settings(config["synthetic"]["run"])["dataset"], "examples", "gold", "schema"),
    output:
        negatives="results/pairs/synthetic/negatives.parquet",
        pairs="results/pairs/synthetic/pairs.parquet",
    params:
        data_dir=lambda w, input: os.path.dirname(input.examples),
        settings=as_json(config["synthetic"]),
        run=as_json(only(run_settings(config["synthetic"]["run"]), PROMPT_KEYS)),
        execution=EXECUTION,
        out_dir=lambda w, output: os.path.dirname(output.pairs),
    threads: config["sandbox"]["workers"]
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/pairs/synthetic.log",
    benchmark:
        "results/benchmarks/pairs/synthetic.tsv"
    shell:
        "python -m workflow_scripts.cli.pairs synthetic --data-dir {params.data_dir}"
        " --settings {params.settings:q} --run-settings {params.run:q} --execution {params.execution:q}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule merge_pairs:
    """Merge natural and synthetic pairs into the Synth20 DPO training set, with quality checks."""
    input:
        natural=expand("results/pairs/natural/{run}.parquet", run=config["mining"]["runs"]),
        synthetic="results/pairs/synthetic/pairs.parquet",
        negatives="results/pairs/synthetic/negatives.parquet",
    output:
        pairs="results/pairs/merged/pairs.parquet",
        train="results/pairs/merged/train.parquet",
        quality=report("results/pairs/merged/quality.json", caption="../report/summary.rst", category="Pairs"),
    params:
        natural=lambda w, input: " ".join(f"--input natural={f}" for f in input.natural),
        settings=as_json(config["merge"]),
        out_dir=lambda w, output: os.path.dirname(output.pairs),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/pairs/merge.log",
    benchmark:
        "results/benchmarks/pairs/merge.tsv"
    shell:
        "python -m workflow_scripts.cli.pairs merge {params.natural} --input synthetic={input.synthetic}"
        " --negatives {input.negatives} --settings {params.settings:q} --out-dir {params.out_dir} > {log} 2>&1"
