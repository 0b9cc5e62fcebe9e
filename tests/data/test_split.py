"""The cross-domain split (`cli.data split`) on a real data set file and real SQLite files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from workflow_scripts.cli.data import main
from workflow_scripts.core.errors import UserError
from workflow_scripts.data.split import split_by_db


def records(dbs: int = 12, per_db: int = 10) -> list[dict]:
    """Spider-style records listed database by database, as Spider's train file is."""
    return [
        {"db_id": f"db{d:02d}", "question": f"q{d}-{i}", "query": "SELECT 1"}
        for d in range(dbs)
        for i in range(per_db)
    ]


def test_no_database_is_on_both_sides_and_the_held_out_ones_are_capped():
    train, heldout, held = split_by_db(records(), 3, per_db=4, seed=0)
    assert len(held) == 3 and held == sorted(held)
    assert {r["db_id"] for r in heldout} == set(held)
    assert not {r["db_id"] for r in train} & set(held)
    assert len(heldout) == 3 * 4 and len(train) == 9 * 10
    # the held-out questions keep the file's order: the first 4 of each database
    assert [r["question"] for r in heldout if r["db_id"] == held[0]] == [
        f"q{int(held[0][2:])}-{i}" for i in range(4)
    ]


def test_the_training_side_is_shuffled_so_that_a_limit_spans_many_databases():
    train, _, held = split_by_db(records(), 3, seed=0)
    assert len({r["db_id"] for r in train[:20]}) >= 6  # in file order the first 20 come from 2 databases
    again, _, held_again = split_by_db(records(), 3, seed=0)
    assert again == train and held_again == held
    other, _, _ = split_by_db(records(), 3, seed=1)
    assert other != train


@pytest.mark.parametrize("count", [0, 12])
def test_holding_out_none_or_all_databases_is_refused(count: int):
    with pytest.raises(UserError, match="Fix: choose --heldout-dbs between 1 and 11"):
        split_by_db(records(), count)


def test_the_command_writes_both_sides_and_skips_databases_missing_from_db_root(tmp_path: Path):
    data = tmp_path / "train.json"
    data.write_text(json.dumps(records()))
    for d in range(11):  # db11 has no SQLite file
        (tmp_path / "database" / f"db{d:02d}").mkdir(parents=True)
        sqlite3.connect(tmp_path / "database" / f"db{d:02d}" / f"db{d:02d}.sqlite").close()
    out = tmp_path / "split"
    main(["split", "--input", str(data), "--db-root", str(tmp_path / "database"), "--heldout-dbs", "2",
          "--per-db", "5", "--seed", "0", "--out-dir", str(out)])  # fmt: skip
    summary = json.loads((out / "split.json").read_text())
    train, heldout = (json.loads((out / f"{n}.json").read_text()) for n in ("train", "heldout"))
    assert (
        summary["train_questions"] == len(train) == 9 * 10
        and summary["heldout_questions"] == len(heldout) == 10
    )
    assert "db11" not in {r["db_id"] for r in train + heldout}
    assert sorted({r["db_id"] for r in heldout}) == summary["heldout_dbs"]
