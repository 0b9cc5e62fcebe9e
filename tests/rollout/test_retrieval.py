"""Schema retrieval: tables from the ingested schema, sample values, table selection, gold tables, prompts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts.core.schema import Column, Table, tables_from_schema
from workflow_scripts.data.ingest import build_schema, read_schema
from workflow_scripts.rollout.retrieval import (
    MODES,
    expand_by_fk,
    fk_graph,
    gold_tables,
    load_tables,
    sample_values,
    schema_prompt,
    select_tables,
    table_recall,
    tokenize,
)


@pytest.fixture
def concert_db(concert_root: Path) -> Path:
    return concert_root / "concert" / "concert.sqlite"


@pytest.fixture
def concert(concert_db: Path, tmp_path: Path) -> list[Table]:
    """The concert tables, read back from a parquet file as the ingest stage writes it."""
    schema = read_schema(concert_db, "concert").assign(column_nl=None)
    schema.to_parquet(tmp_path / "schema.parquet")
    return tables_from_schema(pd.read_parquet(tmp_path / "schema.parquet"), "concert")


def _examples(root: Path, split: str) -> pd.DataFrame:
    records = json.loads((root / f"{split}.json").read_text(encoding="utf-8"))
    rows = [
        {"db_id": r["db_id"], "db_path": str(root / "database" / r["db_id"] / f"{r['db_id']}.sqlite")}
        | {"question": r["question"], "gold_sql": r["query"]}
        for r in records
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def demo_dev(demo_dir: Path) -> tuple[pd.DataFrame, dict[str, list[Table]]]:
    """The demo dev examples and the tables of their databases."""
    examples = _examples(demo_dir, "dev")
    schema = build_schema(examples, demo_dir / "tables.json")
    return examples, {db: tables_from_schema(schema, db) for db in sorted(set(examples["db_id"]))}


@pytest.fixture(scope="module")
def demo_tables(demo_dir: Path) -> dict[str, list[Table]]:
    """The tables of every demo database (train and dev)."""
    examples = pd.concat([_examples(demo_dir, "train"), _examples(demo_dir, "dev")], ignore_index=True)
    schema = build_schema(examples, demo_dir / "tables.json")
    return {db: tables_from_schema(schema, db) for db in sorted(set(examples["db_id"]))}


@pytest.fixture(scope="module")
def multi_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Table]]:
    """Spider-like databases of 3-4 tables (multi_table_schemas.sql), where table selection matters."""
    root = tmp_path_factory.mktemp("multi")
    statements: dict[str, list[str]] = {}
    db_id = None
    for line in (Path(__file__).parent / "multi_table_schemas.sql").read_text().splitlines():
        if line.startswith("-- ") and " " not in line[3:]:
            db_id = line[3:]
            statements[db_id] = []
        elif line.strip() and not line.startswith("--") and db_id is not None:
            statements[db_id].append(line)
    out = {}
    for db_id, ddl in statements.items():
        path = root / f"{db_id}.sqlite"
        con = sqlite3.connect(path)
        try:
            con.executescript("\n".join(ddl))
        finally:
            con.close()
        out[db_id] = tables_from_schema(read_schema(path, db_id).assign(column_nl=None), db_id)
    return out


# ------------------------------------------------------------------------------------------- building


def test_tables_from_schema_keeps_order_types_and_keys(concert):
    assert [t.name for t in concert] == ["singer", "concert"]
    singer, gig = concert
    assert [c.name for c in singer.columns] == ["singer_id", "name", "country", "age"]
    assert [c.type for c in singer.columns] == ["INTEGER", "TEXT", "TEXT", "INTEGER"]
    assert [c.is_primary_key for c in singer.columns] == [True, False, False, False]
    assert gig.columns[1] == Column("singer_id", "INTEGER", False, "singer", "singer_id")
    assert all(c.fk_table is None and c.fk_column is None and c.nl is None for c in singer.columns)
    assert singer.values == {}


def test_tables_from_schema_reads_tables_json_names(demo_tables):
    flight = next(t for t in demo_tables["flights"] if t.name == "flight")
    assert [c.nl for c in flight.columns][:3] == ["flight id", "flight number", "destination"]
    assert [t.name for t in demo_tables["store"]] == ["supplier", "product"]


def test_tables_from_schema_rejects_an_unknown_database(concert_db):
    with pytest.raises(KeyError, match="nope"):
        tables_from_schema(read_schema(concert_db, "concert"), "nope")


def test_sample_values_are_distinct_short_text_in_row_order(concert_db, concert):
    before = concert_db.read_bytes()
    values = sample_values(concert_db, concert, per_column=3)
    assert values == {
        "singer": {"name": ("Singer 1", "Singer 2", "Singer 3"), "country": ("Peru", "Japan", "France")},
        "concert": {"venue": ("Hall 1", "Hall 2", "Hall 3")},
    }
    assert sample_values(concert_db, concert, per_column=3) == values
    assert sample_values(concert_db, concert, per_column=0) == {}
    assert concert_db.read_bytes() == before


def test_sample_values_skip_nulls_long_multiline_and_non_text_values(tmp_path):
    path = tmp_path / "odd.sqlite"
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "odd table" ("note text" TEXT, code VARCHAR(5), raw)')
    long, split = "x" * 200, "a\nb"
    rows = [(None, "A", 1), (long, "A", "one"), (split, None, None), (" ok ", "B", "one"), ("ok", "C", 2.5)]
    conn.executemany('INSERT INTO "odd table" VALUES (?, ?, ?)', rows)
    conn.commit()
    conn.close()
    tables = [Table("odd table", (Column("note text", "TEXT"), Column("code", "VARCHAR(5)"), Column("raw")))]
    assert sample_values(path, tables, per_column=5) == {
        "odd table": {"note text": ("ok",), "code": ("A", "B", "C"), "raw": ("one",)}
    }


def test_load_tables_samples_values_only_when_configured(concert_root, concert_db):
    schema = read_schema(concert_db, "concert")
    assert all(t.values == {} for t in load_tables(schema, "concert", concert_db, cell_values=0))
    singer = load_tables(schema, "concert", concert_db, cell_values=2)[0]
    assert singer.values == {"name": ("Singer 1", "Singer 2"), "country": ("Peru", "Japan")}


def test_tokenize_splits_identifiers_and_strips_plurals():
    assert tokenize("How many singers are from France?") == ["singer", "france"]
    assert tokenize("Student_Course_Attendance") == ["student", "course", "attendance"]
    assert tokenize("InvoiceLine addresses countries") == ["invoice", "line", "address", "country"]
    assert tokenize("movie country") == ["movy", "country"]


# ------------------------------------------------------------------------------------------- selecting


@pytest.mark.parametrize("mode", ["retrieved", "bm25"])
def test_clear_questions_rank_their_table_first(concert, mode):
    assert select_tables("How many singers are from France?", concert, mode=mode, top_k=1) == ["singer"]
    assert select_tables("Which venues hosted concerts in 2014?", concert, mode=mode, top_k=1) == ["concert"]


def test_cell_values_find_a_table_named_by_a_value_only(concert_root, concert_db):
    schema = read_schema(concert_db, "concert")
    question = "List everything about Hall 2."
    without_values = load_tables(schema, "concert", concert_db)
    assert select_tables(question, without_values, mode="bm25", top_k=1) == ["singer"]
    with_values = load_tables(schema, "concert", concert_db, cell_values=3)
    assert select_tables(question, with_values, mode="bm25", top_k=1) == ["concert"]
    assert select_tables(question, with_values, mode="retrieved", top_k=1) == ["concert"]


def test_full_mode_and_large_top_k_give_every_table_in_schema_order(demo_tables):
    for tables in demo_tables.values():
        names = [t.name for t in tables]
        for mode in MODES:
            assert select_tables("How many singers are there?", tables, mode=mode, top_k=len(tables)) == names
        assert select_tables("anything", tables, mode="full", top_k=1) == names


@pytest.mark.parametrize(
    ("db_id", "question", "table"),
    [
        ("store", "Which products are in the Electronics category and cost more than 50?", "product"),
        ("store", "How many customers live in Boston?", "customer"),
        ("library", "Which books have more than 300 pages?", "book"),
        ("library", "What is the nationality of each author?", "author"),
        ("school", "What is the average gpa of students majoring in Physics?", "student"),
        ("hospital", "Which doctors have more than 20 years of experience?", "doctor"),
        ("flights", "What are the codes of the airports in Canada?", "airport"),
    ],
)
def test_questions_select_their_table(multi_tables, db_id, question, table):
    tables = multi_tables[db_id]
    assert select_tables(question, tables, mode="bm25", top_k=1) == [table]
    assert select_tables(question, tables, mode="retrieved", top_k=1) == [table]


def test_bm25_fk_adds_the_tables_linked_by_foreign_keys(concert, multi_tables):
    expected = ["singer", "concert"]
    assert select_tables("How many singers are from France?", concert, mode="bm25_fk", top_k=1) == expected
    store = multi_tables["store"]
    question = "Which products are in the Electronics category?"
    assert select_tables(question, store, mode="bm25", top_k=1) == ["product"]
    assert select_tables(question, store, mode="bm25_fk", top_k=1) == ["product", "order_item"]
    two_hops = select_tables(question, store, mode="bm25_fk", top_k=1, fk_hops=2)
    assert two_hops == ["product", "orders", "order_item"]
    assert select_tables(question, store, mode="bm25_fk", top_k=1, fk_hops=0) == ["product"]


def test_expand_by_fk_keeps_a_bridge_between_two_selected_tables(multi_tables):
    # stadium, singer, concert, singer_in_concert: singer_in_concert links singer and concert.
    tables = multi_tables["concert_singer"]
    graph = fk_graph(tables)
    assert graph == {0: {2}, 1: {3}, 2: {0, 3}, 3: {1, 2}}
    assert expand_by_fk({1, 2}, graph, hops=0) == {1, 2, 3}
    assert expand_by_fk({0, 1}, graph, hops=0) == {0, 1}
    assert expand_by_fk({1}, graph, hops=1) == {1, 3}
    assert expand_by_fk({1}, graph, hops=3) == {0, 1, 2, 3}


def test_fk_graph_ignores_dangling_and_self_references():
    tables = [
        Table("a", (Column("id", "INT", True), Column("parent", "INT", False, "A", "id"))),
        Table("b", (Column("a_id", "INT", False, "a", "id"), Column("x_id", "INT", False, "missing", "id"))),
    ]
    assert fk_graph(tables) == {0: {1}, 1: {0}}


@pytest.mark.parametrize("mode", MODES)
def test_top_k_is_respected_and_output_is_in_schema_order(multi_tables, mode):
    for tables in multi_tables.values():
        order = [t.name for t in tables]
        for top_k in range(1, len(tables)):
            for question in ("How many orders has each customer placed?", "Hello there", "average age"):
                selected = select_tables(question, tables, mode=mode, top_k=top_k)
                assert selected == sorted(selected, key=order.index)
                assert len(selected) >= 1
                if mode == "bm25":
                    assert len(selected) == top_k
                if mode == "retrieved":
                    assert len(selected) <= top_k


def test_ties_and_unmatched_questions_fall_back_to_schema_order(multi_tables):
    tables = multi_tables["library"]
    assert select_tables("Hello there?", tables, mode="retrieved", top_k=3) == ["author"]
    assert select_tables("Hello there?", tables, mode="bm25", top_k=2) == ["author", "book"]
    twins = [Table(name, (Column("id", "INT"),)) for name in ("b", "a", "c")]
    assert select_tables("id", twins, mode="bm25", top_k=2) == ["b", "a"]
    assert select_tables("id", twins, mode="retrieved", top_k=2) == ["b", "a"]


def test_selection_is_deterministic(demo_dev):
    examples, tables = demo_dev
    pairs = list(zip(examples["db_id"], examples["question"], strict=True))
    for mode in MODES:
        first = [select_tables(q, tables[d], mode=mode, top_k=2) for d, q in pairs]
        assert [select_tables(q, tables[d], mode=mode, top_k=2) for d, q in pairs] == first


def test_column_nl_names_count_in_the_table_document():
    emp = Table("emp", (Column("dno", "INT", nl="department number"),))
    tables = [emp, Table("misc", (Column("x", "INT"),))]
    assert select_tables("Which department?", tables, mode="bm25", top_k=1) == ["emp"]


def test_bad_arguments_are_rejected(concert):
    with pytest.raises(ValueError, match="mode"):
        select_tables("q", concert, mode="dense", top_k=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k"):
        select_tables("q", concert, mode="bm25", top_k=0)
    with pytest.raises(ValueError, match="no tables"):
        select_tables("q", [], mode="full", top_k=1)


# --------------------------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("SELECT count(*) FROM singer", {"singer"}),
        ("SELECT T2.name FROM Concert AS T1 JOIN Singer AS T2 ON T1.id = T2.id", {"concert", "singer"}),
        ("SELECT name FROM singer WHERE id NOT IN (SELECT singer_id FROM concert)", {"singer", "concert"}),
        ("SELECT a FROM (SELECT name AS a FROM singer) AS sub", {"singer"}),
        ("WITH recent AS (SELECT * FROM concert WHERE year > 2014) SELECT count(*) FROM recent", {"concert"}),
        ("SELECT name FROM singer INTERSECT SELECT venue FROM concert", {"singer", "concert"}),
        ('SELECT name FROM singer WHERE country = "France"', {"singer"}),
        ("SELECT 1", set()),
        ("SELECT * FROM", set()),
        ("SELECT name FROM singer WHERE (", set()),
        ("this is not sql", set()),
        ("", set()),
    ],
)
def test_gold_tables(sql, tables):
    assert gold_tables(sql) == tables


def test_table_recall():
    assert table_recall(["singer", "concert"], {"singer"}) == 1.0
    assert table_recall(["Singer"], {"singer", "concert"}) == 0.5
    assert table_recall([], {"singer"}) == 0.0
    assert table_recall(["singer"], set()) is None


def test_bm25_fk_reaches_high_gold_table_recall_on_the_demo_dev_set(demo_dev):
    examples, tables = demo_dev
    recalls = {mode: [] for mode in ("bm25", "bm25_fk")}
    for db_id, question, sql in examples[["db_id", "question", "gold_sql"]].itertuples(index=False):
        for mode, values in recalls.items():
            selected = select_tables(question, tables[db_id], mode=mode, top_k=2)
            values.append(table_recall(selected, gold_tables(sql)))
    assert all(r is not None for values in recalls.values() for r in values)
    # Measured with seed 0: bm25 0.98, bm25_fk 1.00 (34 questions).
    assert sum(recalls["bm25_fk"]) / len(recalls["bm25_fk"]) >= 0.95
    assert sum(recalls["bm25"]) / len(recalls["bm25"]) >= 0.9


# -------------------------------------------------------------------------------------------- rendering


def test_schema_prompt_shows_foreign_keys_only_between_shown_tables(concert):
    singer = (
        "CREATE TABLE singer (\n  singer_id INTEGER,\n  name TEXT,\n  country TEXT,\n  age INTEGER,\n"
        "  PRIMARY KEY (singer_id)\n);"
    )
    concert_columns = "CREATE TABLE concert (\n  concert_id INTEGER,\n  singer_id INTEGER,\n  year INTEGER,\n"
    assert schema_prompt(concert, with_values=False) == (
        f"{singer}\n\n{concert_columns}  venue TEXT,\n  PRIMARY KEY (concert_id),\n"
        "  FOREIGN KEY (singer_id) REFERENCES singer(singer_id)\n);"
    )
    alone = schema_prompt([concert[1]], with_values=False)
    assert alone == f"{concert_columns}  venue TEXT,\n  PRIMARY KEY (concert_id)\n);"


def test_schema_prompt_names_the_shown_table_for_loosely_declared_keys():
    tables = [
        Table("Singer", (Column("id", "INT", True),)),
        Table("gig", (Column("singer", "INT", False, "SINGER", None),)),
    ]
    prompt = schema_prompt(tables, with_values=False)
    assert "  FOREIGN KEY (singer) REFERENCES Singer\n" in prompt
    conn = sqlite3.connect(":memory:")
    conn.executescript(prompt)
    conn.close()


def test_schema_prompt_is_valid_sqlite_and_deterministic(demo_tables):
    for tables in demo_tables.values():
        prompt = schema_prompt(tables, with_values=True)
        assert prompt == schema_prompt(list(tables), with_values=True)
        conn = sqlite3.connect(":memory:")
        conn.executescript(prompt)
        created = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        conn.close()
        assert created == [t.name for t in tables]


def test_schema_prompt_values_and_odd_identifiers(concert_db, concert):
    valued = load_tables(read_schema(concert_db, "concert"), "concert", concert_db, cell_values=2)
    text = schema_prompt(valued, with_values=True)
    assert "-- examples: name: 'Singer 1', 'Singer 2'; country: 'Peru', 'Japan'" in text
    assert "-- examples: venue: 'Hall 1', 'Hall 2'" in text
    assert "-- examples" not in schema_prompt(valued, with_values=False)
    assert schema_prompt(valued, with_values=False) == schema_prompt(concert, with_values=False)
    columns = (Column("Home Town", "TEXT", True), Column("it's", ""))
    odd = [Table("my table", columns, {"Home Town": ("O'Hare",)})]
    text = schema_prompt(odd, with_values=True)
    assert text == (
        'CREATE TABLE "my table" (\n  "Home Town" TEXT,\n  "it\'s",\n  PRIMARY KEY ("Home Town")\n);\n'
        "-- examples: \"Home Town\": 'O''Hare'"
    )
    conn = sqlite3.connect(":memory:")
    conn.executescript(text)
    conn.close()
