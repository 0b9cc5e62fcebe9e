rule rollout_shard:
    """Roll out one shard of a run: generate SQL, execute it, repair with feedback up to max_turns."""
    input:
        unpack(rollout_model_inputs),
        unpack(run_data),
    output:
        "results/rollouts/{run}/shards/{shard}.parquet",
    params:
        settings=lambda w: rollout_params(w.run),
        data_dir=lambda w, input: os.path.dirname(input.examples),
        execution=EXECUTION,
    threads: lambda w: run_settings(w.run)["threads"]
    resources:
        gpu=lambda w: run_settings(w.run)["gpus"],
        cpus_per_gpu=lambda w: cpus_per_gpu(run_settings(w.run)),
        mem_mb=8000,
        runtime=240,
    conda:
        lambda w: run_env(w.run)
    log:
        "results/logs/rollout/{run}/shard_{shard}.log",
    benchmark:
        "results/benchmarks/rollout/{run}/shard_{shard}.tsv"
    shell:
        "python -m workflow_scripts.cli.rollout shard --run {wildcards.run} --settings {params.settings:q}"
        " --data-dir {params.data_dir} --shard {wildcards.shard} --execution {params.execution:q}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule rollout_gather:
    """Gather a run's shards into trajectories, GRPO groups and a summary."""
    input:
        lambda w: run_shards(w.run),
    output:
        trajectories="results/rollouts/{run}/trajectories.parquet",
        grpo="results/rollouts/{run}/grpo_rollouts.parquet",
        summary=report(
            "results/rollouts/{run}/summary.json",
            caption="../report/summary.rst",
            category="Rollouts",
            subcategory="{run}",
        ),
    params:
        settings=lambda w: rollout_params(w.run),
        out_dir=lambda w, output: os.path.dirname(output.summary),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/rollout/{run}/gather.log",
    benchmark:
        "results/benchmarks/rollout/{run}/gather.tsv"
    shell:
        "python -m workflow_scripts.cli.rollout gather --run {wildcards.run} --settings {params.settings:q}"
        " --out-dir {params.out_dir} {input} > {log} 2>&1"


rule retrieval_recall:
    """Gold-table recall of every schema retrieval mode on the eval data set."""
    input:
        examples="results/data/{dataset}/examples.parquet",
        schema="results/data/{dataset}/schema.parquet",
    output:
        "results/retrieval/{dataset}/recall.parquet",
    params:
        top_k=config["rollout"]["top_k_tables"],
        fk_hops=config["rollout"]["fk_hops"],
        cell_values=config["rollout"]["cell_values"],
        evidence=str(config["prompt"]["evidence"]).lower(),
        data_dir=lambda w: data_dir(w.dataset),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/retrieval/{dataset}.log",
    benchmark:
        "results/benchmarks/retrieval/{dataset}.tsv"
    shell:
        "python -m workflow_scripts.cli.rollout recall --data-dir {params.data_dir} --top-k {params.top_k}"
        " --fk-hops {params.fk_hops} --cell-values {params.cell_values} --evidence {params.evidence}"
        " --out {output} > {log} 2>&1"


if REPAIR_STUDY["enabled"]:

    rule repair_study:
        """Repair eval_base's first-turn answers under every feedback mode x repair scope."""
        input:
            model=run_settings("eval_base")["model"],
            first_turn="results/rollouts/eval_base/trajectories.parquet",
            **data_files(config["eval_dataset"], "examples", "gold", "gold_ts", "schema"),
        output:
            trajectories="results/repair_study/trajectories.parquet",
            table=report(
                "results/repair_study/study.parquet", caption="../report/repair_study.rst", category="Repair study"
            ),
            summary="results/repair_study/summary.json",
        params:
            settings=as_json(without(run_settings("eval_base"), (*RESOURCE_KEYS, *STUDY_UNUSED_KEYS))),
            study=as_json(REPAIR_STUDY),
            data_dir=lambda w, input: os.path.dirname(input.examples),
            execution=EXECUTION,
            out_dir=lambda w, output: os.path.dirname(output.table),
        threads: run_settings("eval_base")["threads"]
        resources:
            **gpu_resources(run_settings("eval_base"), mem_mb=8000, runtime=240),
        conda:
            run_env("eval_base")
        log:
            "results/logs/repair_study.log",
        benchmark:
            "results/benchmarks/repair_study.tsv"
        shell:
            "python -m workflow_scripts.cli.rollout study --settings {params.settings:q}"
            " --study {params.study:q} --data-dir {params.data_dir} --first-turn {input.first_turn}"
            " --execution {params.execution:q} --threads {threads}"
            " --out-dir {params.out_dir} > {log} 2>&1"
