"""Stage `retrieval_recall`: gold-table recall of every schema retrieval mode on one data set."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from workflow_scripts.artifacts import write_parquet
from workflow_scripts.errors import run_cli
from workflow_scripts.retrieval import MODES, gold_tables, load_tables, select_tables, table_recall


def recall_table(
    examples: pd.DataFrame, schema: pd.DataFrame, *, top_k: int, fk_hops: int, cell_values: int
) -> pd.DataFrame:
    """Return one row per (mode, example): tables selected, tables in the database, gold-table recall."""
    rows = []
    tables_of = {}
    for ex in examples.itertuples(index=False):
        if ex.db_id not in tables_of:
            tables_of[ex.db_id] = load_tables(schema, ex.db_id, ex.db_path, cell_values)
        tables = tables_of[ex.db_id]
        wanted = gold_tables(ex.gold_sql)
        for mode in MODES:
            selected = select_tables(ex.question, tables, mode=mode, top_k=top_k, fk_hops=fk_hops)
            rows.append(
                {
                    "mode": mode,
                    "example_id": ex.id,
                    "db_id": ex.db_id,
                    "selected": len(selected),
                    "tables": len(tables),
                    "recall": table_recall(selected, wanted),
                    "all_gold_found": wanted <= {s.lower() for s in selected},
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--top-k", type=int, required=True)
    parser.add_argument("--fk-hops", type=int, default=1)
    parser.add_argument("--cell-values", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    table = recall_table(
        pd.read_parquet(args.data_dir / "examples.parquet"),
        pd.read_parquet(args.data_dir / "schema.parquet"),
        top_k=args.top_k,
        fk_hops=args.fk_hops,
        cell_values=args.cell_values,
    )
    write_parquet(
        table, args.out, {"top_k": args.top_k, "fk_hops": args.fk_hops, "cell_values": args.cell_values}
    )
    print(table.groupby("mode")[["recall", "selected"]].mean().round(3).to_string())


if __name__ == "__main__":
    run_cli(main)
