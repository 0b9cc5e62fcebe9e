"""Synthetic hard negatives: each perturbation on real SQLite databases, purity, determinism, and yield."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from sqlglot import exp

from tests.conftest import make_concert_db
from workflow_scripts.cli.data import ingest
from workflow_scripts.core.matching import CORRECT, order_matters, verdict
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.schema import Table, tables_from_schema
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.data.ingest import DatasetSpec, read_schema
from workflow_scripts.pairs.negatives import (
    NEGATIVE_TYPES,
    SYNTHETIC_COLUMNS,
    Negative,
    build_synthetic,
    column_values,
    literal_columns,
    make_negatives,
    missing_join,
    parse,
    render,
    wrong_column,
)

TYPES = list(NEGATIVE_TYPES)


@pytest.fixture(scope="module")
def concert(tmp_path_factory) -> tuple[Path, list[Table]]:
    """The conftest concert database (singer 1..20: country France/Peru/Japan by id % 3, age 20 + id)."""
    path = make_concert_db(tmp_path_factory.mktemp("negatives") / "concert.sqlite")
    return path, tables_from_schema(read_schema(path, "concert"), "concert")


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=1, timeout_s=2.0) as sb:
        yield sb


def judged(sandbox: Sandbox, db: Path, gold_sql: str, negatives: list[Negative], match: MatchSettings):
    """The verdict of every negative against the gold result, as `build_synthetic` judges it."""
    jobs = [(db, match.prepare(sql)) for sql in [gold_sql, *(n.sql for n in negatives)]]
    gold, *results = sandbox.execute_many(jobs)
    assert gold.ok, gold.error_message
    return [verdict(gold, r, order_matters=order_matters(gold_sql)) for r in results]


# Gold queries where every negative of the type must change the result on the concert database.
CASES = [
    ("wrong_column", "SELECT name FROM singer WHERE country = 'Peru'"),
    ("wrong_column", "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
                     "WHERE T2.venue = 'Hall 1'"),
    ("missing_join", "SELECT T2.venue FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
                     "WHERE T1.country = 'Peru'"),
    ("missing_join", "SELECT T1.name, count(*) FROM singer AS T1 JOIN concert AS T2 "
                     "ON T1.singer_id = T2.singer_id WHERE T2.year = 2012 GROUP BY T1.singer_id"),
    ("wrong_aggregation", "SELECT country, max(age) FROM singer GROUP BY country"),
    ("wrong_aggregation", "SELECT count(*) FROM concert WHERE venue = 'Hall 2'"),
    ("wrong_comparison", "SELECT name FROM singer WHERE age > 30"),
    ("wrong_comparison", "SELECT venue FROM concert WHERE venue LIKE '%3'"),
    ("wrong_order", "SELECT name FROM singer ORDER BY age DESC LIMIT 1"),
    ("wrong_literal", "SELECT name FROM singer WHERE country = 'Japan'"),
    ("wrong_literal", 'SELECT name FROM singer WHERE age = 26 AND country = "France"'),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "gold_sql"), CASES)
def test_every_negative_executes_differently_from_gold(concert, sandbox, kind, gold_sql):
    db, tables = concert
    tree = parse(gold_sql)
    assert tree is not None
    values = column_values(db, literal_columns(tree, tables), tables)
    negatives = make_negatives(gold_sql, tables, types=[kind], seed=0, per_type=3, values=values)
    assert negatives and all(n.type == kind for n in negatives)
    verdicts = judged(sandbox, db, gold_sql, negatives, MatchSettings())
    assert all(v not in (CORRECT, "syntax_error") for v in verdicts), list(
        zip(negatives, verdicts, strict=True)
    )


def test_missing_distinct_differs_only_when_distinct_is_kept(concert, sandbox):
    db, tables = concert
    gold_sql = "SELECT DISTINCT country FROM singer"
    negatives = make_negatives(gold_sql, tables, types=["missing_distinct"], seed=0)
    assert [n.sql for n in negatives] == ["SELECT country FROM singer"]
    # Spider's match deletes DISTINCT from both queries, so the negative is not wrong there
    assert judged(sandbox, db, gold_sql, negatives, MatchSettings()) == [CORRECT]
    assert judged(sandbox, db, gold_sql, negatives, MatchSettings(keep_distinct=True)) == ["wrong_row_count"]
    union = make_negatives(
        "SELECT country FROM singer UNION SELECT venue FROM concert",
        tables,
        types=["missing_distinct"],
        seed=0,
    )
    assert [n.sql for n in union] == ["SELECT country FROM singer UNION ALL SELECT venue FROM concert"]


def test_literals_come_from_the_compared_column(concert):
    db, tables = concert
    tree = parse("SELECT T1.name FROM singer AS T1 WHERE T1.country = 'Japan' AND T1.age BETWEEN 21 AND 23")
    keys = literal_columns(tree, tables)
    assert keys == {("singer", "country"), ("singer", "age")}
    values = column_values(db, keys, tables)
    assert sorted(values[("singer", "country")]) == ["France", "Japan", "Peru"]
    assert all(isinstance(v, int) for v in values[("singer", "age")])
    negatives = make_negatives(
        render(tree), tables, types=["wrong_literal"], seed=1, per_type=20, values=values
    )
    countries = {
        eq.expression.name
        for n in negatives
        for eq in parse(n.sql).find_all(exp.EQ)
        if eq.this.name == "country"
    }
    assert countries - {"Japan"} and countries <= {"France", "Japan", "Peru"}
    assert len(negatives) > 2  # the BETWEEN bounds move too


def test_wrong_column_stays_within_the_same_table(concert):
    _, tables = concert
    columns = {t.name: {c.name for c in t.columns} for t in tables}
    gold_sql = (
        "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
        "WHERE T2.venue = 'Hall 1'"
    )
    tree = parse(gold_sql)
    seen = set()
    for seed in range(30):
        new = wrong_column(tree, tables, random.Random(seed))
        (changed,) = [
            (old, now)
            for old, now in zip(tree.find_all(exp.Column), new.find_all(exp.Column), strict=True)
            if old.sql() != now.sql()
        ]
        old, now = changed
        assert now.table == old.table  # qualifier kept
        table = "singer" if old.table == "T1" else "concert"
        assert now.name in columns[table] and now.name != old.name
        seen.add((old.name, now.name))
    # the one other TEXT column of singer is preferred; concert has none, so any other column goes
    assert {now for old, now in seen if old == "name"} == {"country"}
    assert {now for old, now in seen if old == "venue"} <= {"concert_id", "singer_id", "year"}


@pytest.mark.parametrize(
    ("kind", "gold_sql"),
    [
        ("wrong_column", "SELECT name FROM singer JOIN concert ON singer.singer_id = concert.singer_id "
                         "WHERE venue = 'Hall 1'"),
        ("wrong_aggregation", "SELECT venue, count(*) FROM singer JOIN concert "
                              "ON singer.singer_id = concert.singer_id GROUP BY venue"),
    ],
)  # fmt: skip
def test_a_new_name_that_would_be_ambiguous_is_qualified(concert, sandbox, kind, gold_sql):
    db, tables = concert
    negatives = make_negatives(gold_sql, tables, types=[kind], seed=0, per_type=8)
    assert any("concert.singer_id" in n.sql for n in negatives)
    assert "ambiguous_column" not in judged(sandbox, db, gold_sql, negatives, MatchSettings())


def test_missing_join_rewires_onto_a_same_named_column(concert):
    _, tables = concert
    gold_sql = (
        "SELECT T2.singer_id, T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
        "ORDER BY T2.singer_id"
    )
    made = {render(missing_join(parse(gold_sql), tables, random.Random(s))) for s in range(10)}
    assert made == {
        "SELECT T1.singer_id, T1.name FROM singer AS T1 ORDER BY T1.singer_id",
        "SELECT T2.singer_id FROM concert AS T2 ORDER BY T2.singer_id",
    }


@pytest.mark.parametrize(
    ("kind", "sql"),
    [
        ("missing_join", "SELECT name FROM singer WHERE age > 3"),
        ("missing_join", "SELECT T1.name FROM singer AS T1 JOIN (SELECT singer_id FROM concert) AS T2 "
                         "ON T1.singer_id = T2.singer_id"),
        ("wrong_column", "SELECT count(*) FROM singer"),
        ("wrong_aggregation", "SELECT name FROM singer WHERE age > 3"),
        ("wrong_comparison", "SELECT name FROM singer ORDER BY age"),
        ("wrong_comparison", "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 "
                             "ON T1.singer_id = T2.singer_id"),
        ("wrong_order", "SELECT name FROM singer WHERE age > 3"),
        ("missing_distinct", "SELECT name FROM singer"),
        ("wrong_literal", "SELECT name FROM singer WHERE country = venue"),
    ],
)  # fmt: skip
def test_not_applicable_gives_none(concert, kind, sql):
    _, tables = concert
    assert NEGATIVE_TYPES[kind](parse(sql), tables, random.Random(0)) is None
    assert make_negatives(sql, tables, types=[kind], seed=0) == []


@pytest.mark.parametrize(
    "sql", ["", "SELEC name FRM singer", "SELECT name FROM singer WHERE (", "not sql at all"]
)
def test_unparseable_gold_gives_no_negatives(concert, sql):
    assert make_negatives(sql, concert[1], types=TYPES, seed=0) == []


def test_unknown_type_is_an_error(concert):
    with pytest.raises(ValueError, match="unknown negative types"):
        make_negatives("SELECT name FROM singer", concert[1], types=["wrong_everything"], seed=0)


# --- on the demo training set ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_train(demo_dir: Path, tmp_path_factory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("demo_train")
    spec = DatasetSpec("demo_train", demo_dir / "train.json", demo_dir / "database", demo_dir / "tables.json")
    ingest(spec, out, missing_db="error", sandbox_cfg={"workers": 1, "timeout_s": 2.0}, match=MatchSettings())
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in ("examples", "gold", "schema")}


def demo_queries(data) -> list[tuple[str, list[Table]]]:
    tables = {db: tables_from_schema(data["schema"], db) for db in data["examples"]["db_id"].unique()}
    return [
        (sql, tables[db])
        for db, sql in zip(data["examples"]["db_id"], data["examples"]["gold_sql"], strict=True)
    ]


def test_the_input_tree_is_never_changed(demo_train):
    for sql, tables in demo_queries(demo_train):
        tree = parse(sql)
        before, fresh = render(tree), parse(sql)
        for kind, perturb in NEGATIVE_TYPES.items():
            for seed in range(3):
                new = perturb(tree, tables, random.Random(seed))
                assert new is None or new is not tree, kind
                assert render(tree) == before and tree == fresh, (kind, sql)


def test_negatives_are_deterministic_distinct_and_never_the_gold(demo_train):
    differs = 0
    for sql, tables in demo_queries(demo_train):
        first = make_negatives(sql, tables, types=TYPES, seed=7, per_type=2)
        assert first == make_negatives(sql, tables, types=TYPES, seed=7, per_type=2)
        differs += first != make_negatives(sql, tables, types=TYPES, seed=8, per_type=2)
        sqls = [n.sql for n in first]
        assert len(set(sqls)) == len(sqls)
        assert render(parse(sql)) not in sqls and sql not in sqls
        assert all(parse(s) is not None for s in sqls)
    assert differs > 0


def test_build_synthetic_on_the_demo_train_set(demo_train):
    data = demo_train
    with Sandbox(workers=2, timeout_s=2.0) as sb:
        out = build_synthetic(
            data["examples"],
            data["gold"],
            data["schema"],
            sb,
            MatchSettings(),
            types=TYPES,
            per_type=1,
            seed=0,
        )
    assert list(out.columns) == SYNTHETIC_COLUMNS
    kept = out[out["kept"]]
    counts = kept["type"].value_counts()
    for kind in ("wrong_column", "missing_join", "wrong_aggregation"):
        assert counts.get(kind, 0) >= 3, counts.to_dict()
    assert set(counts.index) >= {"wrong_comparison", "wrong_order", "wrong_literal"}
    # kept exactly when the result differs from gold; non-executing negatives are kept
    assert (out["kept"] == ~out["verdict"].isin([CORRECT, "truncated"])).all()
    assert (out["executes"] == (out["status"] == "ok")).all()
    assert out.loc[~out["executes"], "kept"].all()
    assert out["executes"].mean() > 0.9
    gold_rendered = out["gold_sql"].map(lambda s: render(parse(s)))
    assert not (out["sql"] == gold_rendered).any() and not (out["sql"] == out["gold_sql"].str.strip()).any()
    assert not out.duplicated(["example_id", "sql"]).any()
    # DISTINCT is deleted before matching, so only UNION ALL negatives can survive
    assert kept.loc[kept["type"] == "missing_distinct", "sql"].str.contains("UNION ALL").all()
    assert set(out["example_id"]) <= set(data["examples"]["id"])
    assert json.loads(json.dumps(out["question"].tolist()))  # plain strings, ready for a preference file
