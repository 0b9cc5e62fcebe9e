rule report:
    """Write the HTML report, results/report/index.html, from every stage's outputs."""
    input:
        datasets=expand("results/data/{dataset}/summary.json", dataset=USED_DATASETS),
        excluded=expand("results/data/{dataset}/excluded.parquet", dataset=USED_DATASETS),
        model=MODEL_DIR,
        rollouts=expand("results/rollouts/{run}/summary.json", run=[*RUNS, *EVAL_RUNS]),
        evaluation="results/evaluation/compare.json",
        retrieval=f"results/retrieval/{config['eval_dataset']}/recall.parquet",
        pairs="results/pairs/merged/quality.json",
        predictions=expand("results/predictions/{name}/summary.json", name=PREDICTIONS),
        alignment="results/alignment/summary.json",
        adapters=[f"{ADAPTER_DIR}/{a}" for a in ADAPTERS],
        repair_study=["results/repair_study/study.parquet"] if REPAIR_STUDY["enabled"] else [],
    output:
        report("results/report/index.html", caption="../report/index.rst", category="Report"),
    params:
        title=config["report"]["title"],
        # the Summary's opening: report.intro, or the built-in text of the embedded demo when it is evaluated
        intro=(
            f"--intro {shlex.quote(config['report']['intro'])}"
            if config["report"].get("intro")
            else ("--demo" if config["eval_dataset"].startswith("demo_") else "")
        ),
        datasets=" ".join(f"--dataset {d}={data_dir(d)}" for d in USED_DATASETS),
        predictions=" ".join(f"--prediction {n}=results/predictions/{n}" for n in PREDICTIONS),
        rollouts=" ".join(f"--rollout {r}=results/rollouts/{r}" for r in [*RUNS, *EVAL_RUNS]),
        evaluation=lambda w, input: os.path.dirname(input.evaluation),
        alignment=lambda w, input: os.path.dirname(input.alignment),
        repair_study=lambda w, input: " ".join(f"--repair-study {f}" for f in input.repair_study),
        costs=" ".join(f"--cost {v}=results/rollouts/eval_{v}" for v in VARIANTS),
        adapters=" ".join(f"--adapter {a}={ADAPTER_DIR}/{a}" for a in ADAPTERS),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    shell:
        "python -m workflow_scripts.cli.report --title {params.title:q} {params.intro} {params.datasets}"
        " {params.predictions}"
        " {params.rollouts} --retrieval {input.retrieval} --pairs {input.pairs}"
        " --evaluation {params.evaluation} --alignment {params.alignment}"
        " {params.repair_study} {params.costs} {params.adapters}"
        " --model {input.model} --out {output} > {log} 2>&1"
