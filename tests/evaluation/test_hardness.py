"""Spider hardness from the gold SQL (sqlglot), and the eval set's breakdowns of EX by level."""

from __future__ import annotations

import pandas as pd
import pytest

from workflow_scripts.evaluation.hardness import hardness_counts, spider_hardness
from workflow_scripts.evaluation.matrix import breakdowns, example_groups

# Spider dev queries (concert_singer, world_1) with the level Spider's evaluation.py gives them, and one
# query that is hard without nesting (more than two "others" on two clauses).
KNOWN = [
    ("SELECT count(*) FROM singer", "easy"),
    ("SELECT name, country, age FROM singer ORDER BY age DESC", "medium"),
    ("SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'France'", "medium"),
    (
        "SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
        "GROUP BY T1.stadium_id",
        "medium",
    ),
    ("SELECT song_name FROM singer WHERE age > (SELECT avg(age) FROM singer)", "hard"),
    ("SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30", "hard"),
    ("SELECT a, count(*), max(b) FROM t WHERE x = 1 AND y = 2 GROUP BY a, c", "hard"),
    (
        "SELECT T2.name, T2.capacity FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
        "WHERE T1.year >= 2014 GROUP BY T2.stadium_id ORDER BY count(*) DESC LIMIT 1",
        "extra",
    ),
    # Spider's quirk: the NOT of `NOT IN` counts as an aggregation, which makes this extra, not hard
    (
        "SELECT avg(lifeexpectancy) FROM country WHERE name NOT IN (SELECT T1.name FROM country AS T1 JOIN "
        "countrylanguage AS T2 ON T1.code = T2.countrycode WHERE T2.language = 'English' "
        "AND T2.isofficial = 'T')",
        "extra",
    ),
]


@pytest.mark.parametrize(("sql", "expected"), KNOWN)
def test_spider_hardness_of_known_queries(sql: str, expected: str) -> None:
    assert spider_hardness(sql) == expected


def test_hardness_counts_and_unparsed_query() -> None:
    # WHERE, ORDER BY, LIMIT, one join, one OR, one LIKE; no nesting; two select columns
    sql = "SELECT a.x, b.y FROM a JOIN b ON a.id = b.id WHERE a.x LIKE '%q%' OR b.y > 2 ORDER BY a.x LIMIT 3"
    assert hardness_counts(sql) == (6, 0, 2)
    assert spider_hardness("SELEC x FRM") is None


def test_breakdowns_by_family_and_hardness_for_demo_like_examples() -> None:
    examples = pd.DataFrame({
        "id": ["e1", "e2", "e3"], "difficulty": [None, None, None],
        "family": ["count", "count", "filter_eq"],
        "gold_sql": ["SELECT count(*) FROM t", "SELECT count(*) FROM u",
                     "SELECT a, b FROM t WHERE c = 1 ORDER BY a"],
    })  # fmt: skip
    groups = example_groups(examples)
    assert list(groups) == ["question family", "Spider hardness"]  # no difficulty in the data
    outcome = pd.DataFrame(
        {"first_correct": [True, False, False], "final_correct": [True, True, False]},
        index=pd.Index(["e1", "e2", "e3"], name="example_id"),
    )
    table = breakdowns({"sft": outcome}, groups)
    family = table[(table["breakdown"] == "question family") & (table["mode"] == "one-shot")]
    assert family.set_index("level")["EX"].to_dict() == {"count": 0.5, "filter_eq": 0.0, "all": 1 / 3}
    hardness = table[(table["breakdown"] == "Spider hardness") & (table["mode"] == "repair")]
    assert hardness.set_index("level")["examples"].to_dict() == {"easy": 2, "medium": 1, "all": 3}
    assert hardness.set_index("level")["EX"].to_dict() == {"easy": 1.0, "medium": 0.0, "all": 2 / 3}
