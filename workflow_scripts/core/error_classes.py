"""The error classes of a query that did not succeed (``ExecResult.error_class``), from SQLite's message.

* ``syntax_error``: SQLite could not parse the query (incl. incomplete input, bad token).
* ``no_such_table`` / ``no_such_column`` / ``ambiguous_column``: name resolution failed.
* ``refused_write``: the statement would change state (write, DDL, ATTACH, transaction, pragma).
* ``timeout``: ran past ``timeout_s`` (status ``"timeout"``), inside SQLite or by the guard.
* ``too_large``: a string/blob, SQLite's heap, the result or the worker's memory hit its cap; also a
  worker killed by SIGKILL that the sandbox did not kill (the kernel's OOM killer).
* ``empty_query``: empty or comment-only input.
* ``multiple_statements``: more than one statement (trailing semicolons are tolerated).
* ``no_such_database``: the database file does not exist.
* ``other_execution_error``: anything else, e.g. unknown function, misuse of aggregate, a worker
  that crashed (message says so).

:func:`classify_error` maps a SQLite / sqlite3 message to its class; the sandbox sets the classes it finds
itself (``timeout`` by its guard, ``too_large``, ``empty_query``, ``no_such_database``).
"""

from __future__ import annotations

from typing import Final, Literal

SYNTAX_ERROR: Final = "syntax_error"
NO_SUCH_TABLE: Final = "no_such_table"
NO_SUCH_COLUMN: Final = "no_such_column"
AMBIGUOUS_COLUMN: Final = "ambiguous_column"
REFUSED_WRITE: Final = "refused_write"
TIMEOUT: Final = "timeout"
TOO_LARGE: Final = "too_large"
EMPTY_QUERY: Final = "empty_query"
MULTIPLE_STATEMENTS: Final = "multiple_statements"
NO_SUCH_DATABASE: Final = "no_such_database"
OTHER_EXECUTION_ERROR: Final = "other_execution_error"

ErrorClass = Literal[
    "syntax_error",
    "no_such_table",
    "no_such_column",
    "ambiguous_column",
    "refused_write",
    "timeout",
    "too_large",
    "empty_query",
    "multiple_statements",
    "no_such_database",
    "other_execution_error",
]
ERROR_CLASSES: Final[tuple[str, ...]] = (
    SYNTAX_ERROR,
    NO_SUCH_TABLE,
    NO_SUCH_COLUMN,
    AMBIGUOUS_COLUMN,
    REFUSED_WRITE,
    TIMEOUT,
    TOO_LARGE,
    EMPTY_QUERY,
    MULTIPLE_STATEMENTS,
    NO_SUCH_DATABASE,
    OTHER_EXECUTION_ERROR,
)

# Prefix tests first: messages quote user text, which must not decide the class.
_PREFIX_CLASSES: tuple[tuple[str, str], ...] = (
    ("incomplete input", SYNTAX_ERROR),
    ("unrecognized token", SYNTAX_ERROR),
    ("no such table", NO_SUCH_TABLE),
    ("no such view", NO_SUCH_TABLE),
    ("no such column", NO_SUCH_COLUMN),
    ("ambiguous column name", AMBIGUOUS_COLUMN),
    ("not authorized", REFUSED_WRITE),
    ("authorization denied", REFUSED_WRITE),
    ("attempt to write a readonly database", REFUSED_WRITE),
    ("too many attached databases", REFUSED_WRITE),
    ("interrupted", TIMEOUT),
    ("string or blob too big", TOO_LARGE),
    ("out of memory", TOO_LARGE),
    ("you can only execute one statement at a time", MULTIPLE_STATEMENTS),
)
_CONTAINS_CLASSES: tuple[tuple[str, str], ...] = (
    ("no such table", NO_SUCH_TABLE),
    ("no such column", NO_SUCH_COLUMN),
    ("ambiguous column name", AMBIGUOUS_COLUMN),
    ("readonly", REFUSED_WRITE),
    ("read-only", REFUSED_WRITE),
    ("not authorized", REFUSED_WRITE),
)


def classify_error(message: str) -> str:
    """Map a SQLite / sqlite3 error message to an error class."""
    m = message.strip().lower()
    if m.endswith("syntax error"):
        return SYNTAX_ERROR
    for prefix, cls in _PREFIX_CLASSES:
        if m.startswith(prefix):
            return cls
    for needle, cls in _CONTAINS_CLASSES:
        if needle in m:
            return cls
    return OTHER_EXECUTION_ERROR
