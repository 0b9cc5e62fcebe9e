ALIGNMENT = config["alignment"]
ALIGNMENT_TARGET = f"{data_dir(config['eval_dataset'])}/examples.parquet"
ALIGNMENT_TARGET_LIMIT = (
    f"--target-limit {config['evaluation']['limit']}" if config["evaluation"]["limit"] else ""
)


rule alignment_select:
    """Choose SFT subsets of equal size, structurally aligned with the eval target or not."""
    input:
        target=ALIGNMENT_TARGET,
        trajectories=expand("results/rollouts/{run}/trajectories.parquet", run=SFT_RUNS),
        examples=f"{SFT_DATA_DIR}/examples.parquet",
    output:
        subsets=expand("results/alignment/selection/{subset}.parquet", subset=SELECTION_SUBSETS),
        summary="results/alignment/selection/selection.json",
    params:
        # only what the selection uses, so that editing e.g. the sample-size study does not retrain the subsets
        settings=as_json(
            {
                "ngram_max": ALIGNMENT["ngram_max"],
                "alpha": ALIGNMENT["alpha"],
                "selection": {
                    "size": SELECTION["size"],
                    # the seed draws the random subset only
                    **({"seed": SELECTION["seed"]} if "random" in SELECTION_SUBSETS else {}),
                    "subsets": SELECTION_SUBSETS,
                },
            }
        ),
        target_limit=ALIGNMENT_TARGET_LIMIT,
        data_dir=lambda w, input: os.path.dirname(input.examples),
        sft_flags=SFT_DATA_FLAGS,
        out_dir=lambda w, output: os.path.dirname(output.summary),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/alignment/select.log",
    benchmark:
        "results/benchmarks/alignment/select.tsv"
    shell:
        "python -m workflow_scripts.cli.alignment select --target-examples {input.target}"
        " {params.target_limit} --data-dir {params.data_dir} --trajectories {input.trajectories}"
        " {params.sft_flags} --settings {params.settings:q} --out-dir {params.out_dir} > {log} 2>&1"


rule train_sft_subset:
    """LoRA SFT on one alignment subset (the selection study)."""
    input:
        model=MODEL_DIR,
        data="results/alignment/selection/{subset}.parquet",
    output:
        directory(f"{ADAPTER_DIR}/sft_{{subset}}"),
    wildcard_constraints:
        subset="aligned|random|misaligned",
    params:
        # the SFT settings, with alignment.selection.max_steps (when set): the same for every subset
        settings=as_json(
            {
                **config["training"]["sft"],
                "max_steps": SELECTION.get("max_steps") or config["training"]["sft"]["max_steps"],
                "lora": config["training"]["lora"],
                **training_run_keys(),
            }
        ),
        # TensorBoard's event files with training.report_to: [tensorboard]
        tracking=lambda w, output: f"results/tracking/{os.path.basename(output[0])}",
    threads: config["training"]["threads"]
    resources:
        **gpu_resources(config["training"], mem_mb=8000, runtime=720),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/train/sft_{subset}.log",
    benchmark:
        "results/benchmarks/train/sft_{subset}.tsv"
    shell:
        "python -m workflow_scripts.cli.train sft --model {input.model} --sft-data {input.data}"
        " --settings {params.settings:q} --tracking-dir {params.tracking} --out {output} > {log} 2>&1"


rule alignment:
    """Structural KL alignment (A_KL, AR) of every training set and every variant's predictions."""
    input:
        target=ALIGNMENT_TARGET,
        trajectories=expand("results/rollouts/{run}/trajectories.parquet", run=SFT_RUNS),
        examples=f"{SFT_DATA_DIR}/examples.parquet",
        pairs="results/pairs/merged/pairs.parquet",
        variants=expand("results/rollouts/eval_{variant}/trajectories.parquet", variant=VARIANTS),
        selection=expand("results/alignment/selection/{subset}.parquet", subset=SELECTION_SUBSETS),
        selection_runs=expand("results/rollouts/eval_sft_{subset}/trajectories.parquet", subset=SELECTION_SUBSETS),
        rewarded=[f"{ADAPTER_DIR}/{v}" for v in VARIANTS if v in GRPO_VARIANTS],
    output:
        table=report("results/alignment/alignment.parquet", caption="../report/alignment.rst", category="Alignment"),
        variants="results/alignment/variants.parquet",
        sample_size="results/alignment/sample_size.parquet",
        sample_size_summary="results/alignment/sample_size_summary.parquet",
        summary=report("results/alignment/summary.json", caption="../report/summary.rst", category="Alignment"),
    params:
        # what the analysis reads; the selection reaches it as inputs (the subsets and their evaluations)
        settings=as_json({k: ALIGNMENT[k] for k in ("ngram_max", "alpha", "c", "sample_size")}),
        target_limit=ALIGNMENT_TARGET_LIMIT,
        data_dir=lambda w, input: os.path.dirname(input.examples),
        sft_flags=SFT_DATA_FLAGS,
        variants=" ".join(
            f"--variant {v}=results/rollouts/eval_{v}" for v in [*VARIANTS, *(f"sft_{s}" for s in SELECTION_SUBSETS)]
        ),
        selection="--selection-dir results/alignment/selection" if SELECTION_SUBSETS else "",
        rewarded=" ".join(f"--rewarded {v}={ADAPTER_DIR}/{v}/rewarded.parquet" for v in VARIANTS if v in GRPO_VARIANTS),
        out_dir=lambda w, output: os.path.dirname(output.summary),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/alignment/analyze.log",
    benchmark:
        "results/benchmarks/alignment/analyze.tsv"
    shell:
        "python -m workflow_scripts.cli.alignment analyze --target-examples {input.target}"
        " {params.target_limit} --data-dir {params.data_dir} --trajectories {input.trajectories}"
        " {params.sft_flags} --pairs {input.pairs} {params.variants} {params.selection} {params.rewarded}"
        " --settings {params.settings:q} --out-dir {params.out_dir} > {log} 2>&1"
