"""Question families: templates that render a question and its gold SQL from any demo database.

Each family reads the roles of a database's columns (label, category, measure, foreign key) and its data,
and returns candidate questions: one per table, column or value it applies to. The same family therefore
asks the same kind of question of every database, with that database's own names and values, which is
what a few LoRA steps on a 135M model can learn and what a held-out database tests.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from workflow_scripts.data.demo.spec import ColumnSpec, GeneratedDatabase, TableSpec


@dataclass(frozen=True)
class Question:
    """One rendered question: its family, natural-language text and gold SQL."""

    family: str
    question: str
    query: str


Family = Callable[[GeneratedDatabase, random.Random], list[Question]]


def lit(value: Any) -> str:
    """A SQL literal: strings in single quotes, numbers as written."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def pick(rng: random.Random, values: Sequence[Any]) -> Any:
    """A random element of the sorted distinct `values` (independent of row order)."""
    return rng.choice(sorted(set(values)))


def middle(rng: random.Random, values: Sequence[Any]) -> Any:
    """A value from the middle half of the sorted distinct `values` (some values lie on either side)."""
    uniq = sorted(set(values))
    return rng.choice(uniq[len(uniq) // 4 : (3 * len(uniq)) // 4] or uniq[1:-1] or uniq)


def _plural(nl: str) -> str:
    """The English plural of a natural-language column name ("city" -> "cities", "name" -> "names")."""
    if nl.endswith("s"):
        return nl
    return f"{nl[:-1]}ies" if nl.endswith("y") and nl[-2:-1] not in "aeiou" else f"{nl}s"


def _parent_child(db: GeneratedDatabase) -> tuple[TableSpec, TableSpec, ColumnSpec]:
    """The child table, the parent it references and the foreign-key column."""
    child = next(t for t in db.spec.tables if t.with_role("foreign_key"))
    fk = child.with_role("foreign_key")[0]
    return db.spec.table(str(fk.references)), child, fk


def count_all(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """How many rows a table has."""
    return [
        Question("count", f"How many {t.plural} are there?", f"SELECT count(*) FROM {t.name}")
        for t in db.spec.tables
    ]


def count_where(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """How many rows have a category value."""
    out = []
    for t in db.spec.tables:
        for c in t.with_role("category"):
            v = pick(rng, db.column(t.name, c.name))
            question = f"How many {t.plural} have the {c.nl} {v}?"
            out.append(
                Question("count_where", question, f"SELECT count(*) FROM {t.name} WHERE {c.name} = {lit(v)}")
            )
    return out


def filter_equal(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The labels of the rows with a category value."""
    out = []
    for t in db.spec.tables:
        for c in t.with_role("category"):
            v = pick(rng, db.column(t.name, c.name))
            question = f"What are the {_plural(t.label.nl)} of the {t.plural} whose {c.nl} is {v}?"
            query = f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {lit(v)}"
            out.append(Question("filter_equal", question, query))
    return out


def _compare(name: str, word: str, op: str) -> Family:
    def family(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
        out = []
        for t in db.spec.tables:
            for m in t.with_role("measure"):
                x = middle(rng, db.column(t.name, m.name))
                question = f"Which {t.plural} have a {m.nl} {word} {x}? Give their {_plural(t.label.nl)}."
                query = f"SELECT {t.label.name} FROM {t.name} WHERE {m.name} {op} {lit(x)}"
                out.append(Question(name, question, query))
        return out

    family.__doc__ = f"The labels of the rows whose measure is {word} a value."
    return family


filter_greater = _compare("filter_greater", "greater than", ">")
filter_less = _compare("filter_less", "less than", "<")


def filter_like(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The labels that contain a word."""
    out = []
    for t in db.spec.tables:
        word = pick(rng, [str(v).split(" ")[0] for v in db.column(t.name, t.label.name)])
        question = f"Which {t.plural} have a {t.label.nl} containing '{word}'? List them."
        query = f"SELECT {t.label.name} FROM {t.name} WHERE {t.label.name} LIKE '%{word}%'"
        out.append(Question("filter_like", question, query))
    return out


def between(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The labels of the rows whose measure lies in a range."""
    out = []
    for t in db.spec.tables:
        for m in t.with_role("measure"):
            uniq = sorted(set(db.column(t.name, m.name)))
            lo = uniq[rng.randrange(1, len(uniq) // 2)]
            hi = uniq[rng.randrange(len(uniq) // 2, len(uniq) - 1)]
            question = (
                f"What are the {_plural(t.label.nl)} of the {t.plural} with a {m.nl} between {lo} and {hi}?"
            )
            query = f"SELECT {t.label.name} FROM {t.name} WHERE {m.name} BETWEEN {lit(lo)} AND {lit(hi)}"
            out.append(Question("between", question, query))
    return out


AGGREGATES = (("average", "avg"), ("maximum", "max"), ("minimum", "min"), ("total", "sum"))


def aggregate(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """One aggregate (avg, max, min, sum) of a measure."""
    out = []
    for t in db.spec.tables:
        for m in t.with_role("measure"):
            word, fn = rng.choice(AGGREGATES)
            question = f"What is the {word} {m.nl} of all {t.plural}?"
            out.append(Question("aggregate", question, f"SELECT {fn}({m.name}) FROM {t.name}"))
    return out


def distinct(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The distinct values of a category."""
    return [
        Question("distinct", f"What are the different {_plural(c.nl)} of the {t.plural}?",
                 f"SELECT DISTINCT {c.name} FROM {t.name}")
        for t in db.spec.tables
        for c in t.with_role("category")
    ]  # fmt: skip


def group_count(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The number of rows per category value."""
    return [
        Question("group_count", f"How many {t.plural} are there for each {c.nl}?",
                 f"SELECT {c.name}, count(*) FROM {t.name} GROUP BY {c.name}")
        for t in db.spec.tables
        for c in t.with_role("category")
    ]  # fmt: skip


def group_having(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The category values with more than n rows."""
    out = []
    for t in db.spec.tables:
        for c in t.with_role("category"):
            counts = sorted(Counter(db.column(t.name, c.name)).values(), reverse=True)
            n = max(1, min(counts[len(counts) // 2], counts[0] - 1))
            question = f"Which {_plural(c.nl)} have more than {n} {t.plural}?"
            query = f"SELECT {c.name} FROM {t.name} GROUP BY {c.name} HAVING count(*) > {n}"
            out.append(Question("group_having", question, query))
    return out


def order_top(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The label of the row with the highest measure."""
    return [
        Question("order_top", f"What is the {t.label.nl} of the {t.singular} with the highest {m.nl}?",
                 f"SELECT {t.label.name} FROM {t.name} ORDER BY {m.name} DESC LIMIT 1")
        for t in db.spec.tables
        for m in t.with_role("measure")
    ]  # fmt: skip


def order_bottom(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The labels of the k rows with the lowest measure."""
    out = []
    for t in db.spec.tables:
        for m in t.with_role("measure"):
            k = rng.choice((2, 3, 5))
            question = f"List the {_plural(t.label.nl)} of the {k} {t.plural} with the lowest {m.nl}."
            query = f"SELECT {t.label.name} FROM {t.name} ORDER BY {m.name} LIMIT {k}"
            out.append(Question("order_bottom", question, query))
    return out


def _join(parent: TableSpec, child: TableSpec, fk: ColumnSpec) -> str:
    return f"FROM {child.name} AS T1 JOIN {parent.name} AS T2 ON T1.{fk.name} = T2.{parent.key.name}"


def join_filter(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The child labels whose parent has a category value (a join over the foreign key)."""
    parent, child, fk = _parent_child(db)
    used = set(db.column(child.name, fk.name))
    keys = db.column(parent.name, parent.key.name)
    out = []
    for c in parent.with_role("category"):
        values = sorted({v for k, v in zip(keys, db.column(parent.name, c.name), strict=True) if k in used})
        for v in values[:2]:
            question = (
                f"What are the {_plural(child.label.nl)} of the {child.plural} whose {parent.singular} has "
                f"the {c.nl} {v}?"
            )
            query = f"SELECT T1.{child.label.name} {_join(parent, child, fk)} WHERE T2.{c.name} = {lit(v)}"
            out.append(Question("join_filter", question, query))
    rng.shuffle(out)
    return out


def join_group(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The number of children per parent label (join and group)."""
    parent, child, fk = _parent_child(db)
    label = parent.label.name
    question = f"For each {parent.singular} {parent.label.nl}, how many {child.plural} are there?"
    query = f"SELECT T2.{label}, count(*) {_join(parent, child, fk)} GROUP BY T2.{label}"
    return [Question("join_group", question, query)]


def join_show(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """Every child label with its parent's label."""
    parent, child, fk = _parent_child(db)
    own, theirs = child.label.nl, parent.label.nl
    question = f"Show the {own} of every {child.singular} and the {theirs} of its {parent.singular}."
    query = f"SELECT T1.{child.label.name}, T2.{parent.label.name} {_join(parent, child, fk)}"
    return [Question("join_show", question, query)]


def nested_in(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The parent labels that have a child with a measure above a value (IN subquery)."""
    parent, child, fk = _parent_child(db)
    out = []
    for m in child.with_role("measure"):
        x = middle(rng, db.column(child.name, m.name))
        question = (
            f"What are the {_plural(parent.label.nl)} of the {parent.plural} that have a {child.singular} "
            f"with a {m.nl} greater than {x}?"
        )
        query = (
            f"SELECT {parent.label.name} FROM {parent.name} WHERE {parent.key.name} IN "
            f"(SELECT {fk.name} FROM {child.name} WHERE {m.name} > {lit(x)})"
        )
        out.append(Question("nested_in", question, query))
    return out


def nested_not_in(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The parent labels that have no child (NOT IN subquery)."""
    parent, child, fk = _parent_child(db)
    question = f"What are the {_plural(parent.label.nl)} of the {parent.plural} that have no {child.plural}?"
    query = (
        f"SELECT {parent.label.name} FROM {parent.name} WHERE {parent.key.name} NOT IN "
        f"(SELECT {fk.name} FROM {child.name})"
    )
    return [Question("nested_not_in", question, query)]


def above_average(db: GeneratedDatabase, rng: random.Random) -> list[Question]:
    """The labels of the rows whose measure is above its average (scalar subquery)."""
    out = []
    for t in db.spec.tables:
        for m in t.with_role("measure"):
            question = f"Which {t.plural} have a {m.nl} above the average? Give their {_plural(t.label.nl)}."
            query = (
                f"SELECT {t.label.name} FROM {t.name} WHERE {m.name} > (SELECT avg({m.name}) FROM {t.name})"
            )
            out.append(Question("above_average", question, query))
    return out


FAMILIES: dict[str, Family] = {
    "count": count_all,
    "count_where": count_where,
    "filter_equal": filter_equal,
    "filter_greater": filter_greater,
    "filter_less": filter_less,
    "filter_like": filter_like,
    "between": between,
    "aggregate": aggregate,
    "distinct": distinct,
    "group_count": group_count,
    "group_having": group_having,
    "order_top": order_top,
    "order_bottom": order_bottom,
    "join_filter": join_filter,
    "join_group": join_group,
    "join_show": join_show,
    "nested_in": nested_in,
    "nested_not_in": nested_not_in,
    "above_average": above_average,
}
