"""SQL extraction from a model's reply: code fences, prose around the query, trailing semicolons."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_SQL_FENCE_LANGS = {"sql", "sqlite", "sqlite3", "mysql", "postgres", "postgresql", "psql", "tsql", "plsql"}
_UPPER_START = re.compile(r"\b(SELECT|WITH)\b")
_LINE_START = re.compile(r"(?:^|(?<=[:`\n]))[ \t]*(select|with)\b", re.IGNORECASE | re.MULTILINE)
_CTE = re.compile(r"with\s+(recursive\s+)?[\w\"`\[\]]+\s*(\([^)]*\)\s*)?as\s*\(", re.IGNORECASE)
# Words after SELECT that mean prose ("a SELECT statement is used", "select the names"), not a query.
_PROSE_AFTER_SELECT = frozenset(
    str.split(
        "statement statements query queries clause clauses keyword command is are was will can to and or "
        "the an this that these those which"
    )
)
_SQL_WORDS = frozenset(
    str.split(
        "SELECT FROM WHERE GROUP ORDER HAVING LIMIT OFFSET JOIN INNER LEFT RIGHT OUTER CROSS FULL "
        "NATURAL ON USING AND OR NOT UNION INTERSECT EXCEPT AS WITH CASE WHEN THEN ELSE END IN EXISTS "
        "BETWEEN LIKE IS NULL DISTINCT ALL BY ASC DESC COUNT SUM AVG MIN MAX CAST VALUES"
    )
)
_QUOTE_CLOSE = {"'": "'", '"': '"', "`": "`", "[": "]"}


def extract_sql(text: str) -> str:
    """Return the first SQL query (SELECT or WITH) in a model's output, on one line, or "" when there is none.

    Looks first in ```sql fences, then in other fences, then in the whole text; the query starts at its
    SELECT/WITH (skipping prose, `SQL:` prefixes and echoed prompts before it) and ends at the end of its
    first statement: a `;`, a closing fence, a sentence-ending period, a blank line or a line of prose.
    Whitespace outside string literals is collapsed to single spaces; the trailing `;` is dropped.
    """
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    candidates = [body for lang, body in blocks if lang in _SQL_FENCE_LANGS]
    candidates += [body for lang, body in blocks if lang not in _SQL_FENCE_LANGS]
    candidates.append(text)
    for candidate in candidates:
        sql = _first_statement(candidate)
        if sql:
            return sql
    return ""


def _first_statement(text: str) -> str:
    """Return the first SQL query in `text` (no fences handled), normalized, or ""."""
    start = _query_start(text)
    if start is None:
        return ""
    before = text[start - 1] if start else ""
    if before in ("'", '"', "`") and text[start - 2 : start] != "``":
        # Inline code or a string argument (`SELECT ...`, execute("SELECT ...")): the query ends at its quote.
        end = text.find(before, start)
        return _normalize(text[start : end if end != -1 else len(text)])
    return _normalize(_cut_statement(text[start:]))


def _query_start(text: str) -> int | None:
    """Return where the first plausible SELECT/WITH query starts in `text`, or None."""
    starts = sorted(
        {m.start(1) for m in _UPPER_START.finditer(text)} | {m.start(1) for m in _LINE_START.finditer(text)}
    )
    for start in starts:
        if text[start : start + 4].lower() == "with":
            if _CTE.match(text, start):
                return start
            continue
        following = re.match(r"select\s+(\S+)", text[start:], re.IGNORECASE)
        if following and following.group(1).lower().rstrip(",:.") not in _PROSE_AFTER_SELECT:
            return start
    return None


def _cut_statement(text: str) -> str:
    """Return `text` up to the end of the SQL statement it starts with (quote-aware)."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in _QUOTE_CLOSE:
            i = _skip_quoted(text, i)
            continue
        if char == ";" or text.startswith("```", i) or text.startswith("<|", i):
            return text[:i]
        if char == "." and (i + 1 == n or text[i + 1].isspace()):
            return text[:i]
        if char == "\n" and _ends_statement_at_line(text[i + 1 :]):
            return text[:i]
        i += 1
    return text


def _skip_quoted(text: str, i: int) -> int:
    """Return the index just after the quoted string or identifier opening at `text[i]` (len if unclosed)."""
    quote, close = text[i], _QUOTE_CLOSE[text[i]]
    end = text.find(close, i + 1)
    # A doubled quote inside a literal ('it''s') is an escaped quote, not the end of the literal.
    while end != -1 and quote != "[" and text[end + 1 : end + 2] == quote:
        end = text.find(quote, end + 2)
    return len(text) if end == -1 else end + 1


def _ends_statement_at_line(rest: str) -> bool:
    """Whether the text after a newline starts something that is not SQL: a blank line or a line of prose."""
    line = rest.split("\n", 1)[0]
    if not line.strip():
        return True
    words = line.split()
    first = words[0]
    if first.endswith(":") and first[:-1].isalpha():
        return True
    prose_word = (
        first.isalpha() and first[0].isupper() and first[1:].islower() and first.upper() not in _SQL_WORDS
    )
    # Two lowercase words after it: "This query returns", not a table alias such as "Singer s JOIN".
    return prose_word and len(words) > 2 and all(w.isalpha() and w.islower() for w in words[1:3])


def _normalize(sql: str) -> str:
    """Collapse whitespace outside string literals to single spaces and strip trailing `;` and spaces."""
    parts: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in _QUOTE_CLOSE:
            end = _skip_quoted(sql, i)
            parts.append(sql[i:end])
            i = end
        elif char.isspace():
            while i < n and sql[i].isspace():
                i += 1
            parts.append(" ")
        else:
            parts.append(char)
            i += 1
    return "".join(parts).strip().rstrip(";").strip()
