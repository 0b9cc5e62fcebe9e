rule demo_data:
    """Generate the embedded demo benchmark: SQLite databases, train/dev/in-domain questions, tables.json."""
    output:
        train=DEMO_OUTPUTS["train"],
        dev=DEMO_OUTPUTS["dev"],
        indomain=DEMO_OUTPUTS["indomain"],
        tables=DEMO_OUTPUTS["tables"],
        databases=directory(DEMO_OUTPUTS["databases"]),
    params:
        seed=config["demo"]["seed"],
        out_dir=lambda w, output: os.path.dirname(output.train),
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/demo_data.log",
    benchmark:
        "results/benchmarks/demo_data.tsv"
    shell:
        "python -m workflow_scripts.cli.data demo --out {params.out_dir} --seed {params.seed} > {log} 2>&1"


rule ingest:
    """Ingest a data set: examples, gold results executed in the sandbox, schema, excluded examples."""
    input:
        unpack(dataset_inputs),
    output:
        examples="results/data/{dataset}/examples.parquet",
        gold="results/data/{dataset}/gold.parquet",
        gold_ts="results/data/{dataset}/gold_ts.parquet",
        excluded="results/data/{dataset}/excluded.parquet",
        schema="results/data/{dataset}/schema.parquet",
        summary=report(
            "results/data/{dataset}/summary.json",
            caption="../report/summary.rst",
            category="Data sets",
            subcategory="{dataset}",
        ),
    params:
        dataset=lambda w: as_json(config["datasets"][w.dataset]),
        missing_db=config["ingest"]["missing_db"],
        execution=EXECUTION,
        out_dir=lambda w: data_dir(w.dataset),
    threads: config["sandbox"]["workers"]
    conda:
        "../envs/cpu.yaml"
    log:
        "results/logs/ingest/{dataset}.log",
    benchmark:
        "results/benchmarks/ingest/{dataset}.tsv"
    shell:
        "python -m workflow_scripts.cli.data ingest --name {wildcards.dataset} --dataset {params.dataset:q}"
        " --missing-db {params.missing_db} --execution {params.execution:q}"
        " --out-dir {params.out_dir} > {log} 2>&1"
