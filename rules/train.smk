rule train_sft:
    """LoRA SFT on the mining runs' verified-correct SQL and the gold SQL."""
    input:
        model=MODEL_DIR,
        trajectories=expand("results/rollouts/{run}/trajectories.parquet", run=SFT_RUNS),
        examples=f"{SFT_DATA_DIR}/examples.parquet",
    output:
        directory(f"{ADAPTER_DIR}/sft"),
    params:
        settings=training_settings("sft"),
        data_dir=lambda w, input: os.path.dirname(input.examples),
        sft_flags=SFT_DATA_FLAGS,
        # TensorBoard's event files with training.report_to: [tensorboard]
        tracking=lambda w, output: f"results/tracking/{os.path.basename(output[0])}",
    threads: config["training"]["threads"]
    resources:
        **gpu_resources(config["training"], mem_mb=8000, runtime=720),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/train/sft.log",
    benchmark:
        "results/benchmarks/train/sft.tsv"
    shell:
        "python -m workflow_scripts.cli.train sft --model {input.model} --data-dir {params.data_dir}"
        " --trajectories {input.trajectories} {params.sft_flags} --settings {params.settings:q}"
        " --tracking-dir {params.tracking} --out {output} > {log} 2>&1"


rule train_dpo:
    """LoRA DPO on the merged preference pairs, from the base model."""
    input:
        model=MODEL_DIR,
        pairs="results/pairs/merged/train.parquet",
    output:
        directory(f"{ADAPTER_DIR}/dpo"),
    params:
        settings=training_settings("dpo"),
        # SFT->DPO (rule train_sft_dpo) continues the SFT adapter; DPO starts from the base model
        init=lambda w, input: f"--init-adapter {input.init_adapter}" if "init_adapter" in input.keys() else "",
        # TensorBoard's event files with training.report_to: [tensorboard]
        tracking=lambda w, output: f"results/tracking/{os.path.basename(output[0])}",
    threads: config["training"]["threads"]
    resources:
        **gpu_resources(config["training"], mem_mb=12000, runtime=720),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/train/dpo.log",
    benchmark:
        "results/benchmarks/train/dpo.tsv"
    shell:
        "python -m workflow_scripts.cli.train dpo --model {input.model} --pairs {input.pairs} {params.init}"
        " --settings {params.settings:q} --tracking-dir {params.tracking} --out {output} > {log} 2>&1"


use rule train_dpo as train_sft_dpo with:
    """LoRA DPO on the merged preference pairs, continuing the SFT adapter (SFT->DPO)."""
    input:
        model=MODEL_DIR,
        pairs="results/pairs/merged/train.parquet",
        init_adapter=f"{ADAPTER_DIR}/sft",
    output:
        directory(f"{ADAPTER_DIR}/sft_dpo"),
    log:
        "results/logs/train/sft_dpo.log",
    benchmark:
        "results/benchmarks/train/sft_dpo.tsv"


rule train_grpo:
    """LoRA GRPO rewarded by the sandbox, from the base model."""
    input:
        model=MODEL_DIR,
        **data_files(config["train_dataset"], "examples", "gold", "schema"),
    output:
        directory(f"{ADAPTER_DIR}/grpo"),
    params:
        settings=training_settings("grpo"),
        rollout=GRPO_ROLLOUT,
        execution=EXECUTION,
        data_dir=lambda w, input: os.path.dirname(input.examples),
        # SFT->GRPO (rule train_sft_grpo) continues the SFT adapter; GRPO starts a new one on the base model
        init=lambda w, input: f"--init-adapter {input.init_adapter}" if "init_adapter" in input.keys() else "",
        # TensorBoard's event files with training.report_to: [tensorboard]
        tracking=lambda w, output: f"results/tracking/{os.path.basename(output[0])}",
    threads: config["training"]["threads"]
    resources:
        **gpu_resources(config["training"], mem_mb=12000, runtime=720),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/train/grpo.log",
    benchmark:
        "results/benchmarks/train/grpo.tsv"
    shell:
        "python -m workflow_scripts.cli.train grpo --model {input.model} --data-dir {params.data_dir} {params.init}"
        " --rollout {params.rollout:q} --execution {params.execution:q} --settings {params.settings:q}"
        " --tracking-dir {params.tracking} --out {output} > {log} 2>&1"


use rule train_grpo as train_sft_grpo with:
    """LoRA GRPO rewarded by the sandbox, continuing the SFT adapter (SFT->GRPO)."""
    input:
        model=MODEL_DIR,
        **data_files(config["train_dataset"], "examples", "gold", "schema"),
        init_adapter=f"{ADAPTER_DIR}/sft",
    output:
        directory(f"{ADAPTER_DIR}/sft_grpo"),
    log:
        "results/logs/train/sft_grpo.log",
    benchmark:
        "results/benchmarks/train/sft_grpo.tsv"
