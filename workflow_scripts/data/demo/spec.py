"""The vocabulary of the demo's declarative database specs: columns, value generators, tables, databases.

A database is declared, not coded: each table lists its columns with an SQL type, a natural-language name
and a value generator, and the question families (families.py) read the roles of the columns (the table's
label, a category, a measure, a foreign key) to ask the same kinds of questions of every database.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["key", "label", "category", "measure", "foreign_key"]


@dataclass(frozen=True)
class IntRange:
    """Distinct integers drawn from [lo, hi] (the range must hold at least as many values as rows)."""

    lo: int
    hi: int

    def draw(self, rng: random.Random, n: int) -> list[Any]:
        return rng.sample(range(self.lo, self.hi + 1), n)


@dataclass(frozen=True)
class RealRange:
    """Distinct reals in [lo, hi] with `digits` decimals."""

    lo: float
    hi: float
    digits: int = 1

    def draw(self, rng: random.Random, n: int) -> list[Any]:
        scale = 10**self.digits
        ints = rng.sample(range(round(self.lo * scale), round(self.hi * scale) + 1), n)
        return [round(i / scale, self.digits) for i in ints]


@dataclass(frozen=True)
class Choice:
    """Values drawn with replacement from `values`; every value appears at least once when rows allow."""

    values: tuple[str, ...]

    def draw(self, rng: random.Random, n: int) -> list[Any]:
        out = list(self.values[:n]) + [rng.choice(self.values) for _ in range(n - len(self.values))]
        rng.shuffle(out)
        return out


@dataclass(frozen=True)
class Labels:
    """Distinct "first second" labels from the product of two word lists (e.g. "Golden Harbor")."""

    first: tuple[str, ...]
    second: tuple[str, ...]

    def draw(self, rng: random.Random, n: int) -> list[Any]:
        return [f"{a} {b}" for a, b in rng.sample([(a, b) for a in self.first for b in self.second], n)]


FIRST_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
    "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Lopez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White",
)  # fmt: skip
PERSON = Labels(FIRST_NAMES, LAST_NAMES)


@dataclass(frozen=True)
class ColumnSpec:
    """One column: name, SQL type, natural-language name, role in questions, and its value generator.

    The key column takes 1..n and a foreign key takes the referenced table's keys: neither has a generator.
    """

    name: str
    type: str
    nl: str
    role: Role
    values: IntRange | RealRange | Choice | Labels | None = None
    references: str | None = None  # the parent table of a foreign key


@dataclass(frozen=True)
class TableSpec:
    """One table: its name, singular and plural nouns, row count and columns (the first is the key)."""

    name: str
    singular: str
    plural: str
    rows: int
    columns: tuple[ColumnSpec, ...]

    @property
    def key(self) -> ColumnSpec:
        return self.columns[0]

    @property
    def label(self) -> ColumnSpec:
        return next(c for c in self.columns if c.role == "label")

    def with_role(self, role: Role) -> list[ColumnSpec]:
        """The columns of `role`, in declaration order."""
        return [c for c in self.columns if c.role == role]


@dataclass(frozen=True)
class DatabaseSpec:
    """One database: its id and tables, parents before the children that reference them."""

    db_id: str
    tables: tuple[TableSpec, ...]

    def table(self, name: str) -> TableSpec:
        return next(t for t in self.tables if t.name == name)


def key(table: str) -> ColumnSpec:
    """The integer primary key `<table>_id`."""
    return ColumnSpec(f"{table}_id", "INTEGER", f"{table.replace('_', ' ')} id", "key")


def label(name: str, nl: str, values: Labels) -> ColumnSpec:
    """A table's distinct text label (the name questions ask for)."""
    return ColumnSpec(name, "TEXT", nl, "label", values)


def category(name: str, nl: str, values: Sequence[str]) -> ColumnSpec:
    """A text column of a few repeated values (filters, groups, DISTINCT)."""
    return ColumnSpec(name, "TEXT", nl, "category", Choice(tuple(values)))


def measure(name: str, nl: str, values: IntRange | RealRange) -> ColumnSpec:
    """A numeric column of distinct values (comparisons, aggregates, ordering)."""
    return ColumnSpec(name, "REAL" if isinstance(values, RealRange) else "INTEGER", nl, "measure", values)


def foreign_key(parent: str) -> ColumnSpec:
    """`<parent>_id`, referencing the parent table's key."""
    return ColumnSpec(f"{parent}_id", "INTEGER", parent.replace("_", " "), "foreign_key", references=parent)


@dataclass(frozen=True)
class GeneratedDatabase:
    """A database spec with its generated rows (tuples in column order, per table)."""

    spec: DatabaseSpec
    rows: dict[str, list[tuple[Any, ...]]]

    @property
    def db_id(self) -> str:
        return self.spec.db_id

    def column(self, table: str, column: str) -> list[Any]:
        """All values of one column, in row order."""
        names = [c.name for c in self.spec.table(table).columns]
        idx = names.index(column)
        return [row[idx] for row in self.rows[table]]
