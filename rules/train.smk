rule train_sft:
    input:
        model=config["model"]["path"],
        trajectories=expand("results/rollouts/{run}/trajectories.parquet", run=SFT_RUNS),
        examples=f"{data_dir(run_settings(SFT_RUNS[0])['dataset'])}/examples.parquet",
    output:
        directory(f"{ADAPTER_DIR}/sft"),
    params:
        settings=training_settings("sft"),
        data_dir=lambda w, input: os.path.dirname(input.examples),
        gold="--include-gold" if config["training"]["sft_data"]["include_gold"] else "--no-include-gold",
        correct=(
            "--include-correct" if config["training"]["sft_data"]["include_correct"] else "--no-include-correct"
        ),
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        cpus_per_gpu=cpus_per_gpu(config["training"]),
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/train/sft.log",
    benchmark:
        "results/benchmarks/train/sft.tsv"
    shell:
        "python -m workflow_scripts.stages.train sft --model {input.model} --data-dir {params.data_dir}"
        " --trajectories {input.trajectories} {params.gold} {params.correct} --settings {params.settings:q}"
        " --out {output} > {log} 2>&1"


rule train_dpo:
    input:
        model=config["model"]["path"],
        pairs="results/pairs/merged/train.parquet",
    output:
        directory(f"{ADAPTER_DIR}/dpo"),
    params:
        settings=training_settings("dpo"),
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        cpus_per_gpu=cpus_per_gpu(config["training"]),
        mem_mb=12000,
        runtime=720,
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/train/dpo.log",
    benchmark:
        "results/benchmarks/train/dpo.tsv"
    shell:
        "python -m workflow_scripts.stages.train dpo --model {input.model} --pairs {input.pairs}"
        " --settings {params.settings:q} --out {output} > {log} 2>&1"


rule train_sft_dpo:
    input:
        model=config["model"]["path"],
        pairs="results/pairs/merged/train.parquet",
        sft=f"{ADAPTER_DIR}/sft",
    output:
        directory(f"{ADAPTER_DIR}/sft_dpo"),
    params:
        settings=training_settings("dpo"),
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        cpus_per_gpu=cpus_per_gpu(config["training"]),
        mem_mb=12000,
        runtime=720,
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/train/sft_dpo.log",
    benchmark:
        "results/benchmarks/train/sft_dpo.tsv"
    shell:
        "python -m workflow_scripts.stages.train dpo --model {input.model} --pairs {input.pairs}"
        " --init-adapter {input.sft} --settings {params.settings:q} --out {output} > {log} 2>&1"
