"""Structural dataset alignment (arXiv 2510.04919): how close two SQL sets are in structure, not content.

    python -m workflow_scripts.cli.alignment table --target T --against NAME=FILE [...] [--out TABLE]

Each FILE is SQL one per line (a TAB and anything after it ignored, as in Spider's gold files) or a Parquet
file with a `sql` column. The command prints, and with `--out` writes (.csv or .parquet), one row per set:
queries, unparsed queries, D_KL(target‖set), A_KL(target‖set) and OVLP; when one set is named `pred` (the
base model's predictions on the target), also AR = A_KL(target‖set) / A_KL(target‖pred) for the others.

Definitions, with every choice the paper leaves open:

- **Template.** A query is parsed with sqlglot (SQLite dialect) and rendered again by sqlglot's SQLite
  generator with every leaf replaced by a placeholder; the rendering is split into tokens and the placeholders
  dropped. Leaves are identifiers (tables, columns, aliases, CTE names, quoted names), literals (numbers,
  strings, a literal's unary minus, `?` parameters) and CAST target types. The keyword that only introduces a
  leaf goes with it: `AS` before an alias or a CAST type, the `.` of a qualified name. Kept: keywords,
  operators, punctuation, `*`, `NULL`, `TRUE`/`FALSE` and function names (upper-cased), e.g.
  `SELECT CAST(a AS REAL) / b FROM t ORDER BY 1 DESC LIMIT 3` → `SELECT CAST ( ) / FROM ORDER BY DESC LIMIT`.
  Rendering through sqlglot canonicalises spelling: keyword case, whitespace, `!=`/`<>`, `x NOT IN` (as
  `NOT x IN`) and optional `AS` give one template.
- **Unparsed.** A query is unparsed when sqlglot raises, when it holds other than exactly one statement, or
  when that statement is not a query (SELECT, set operation, WITH); empty lines and missing values count too.
  Unparsed queries add no n-grams and are counted in every table (`unparsed`), never dropped silently.
- **n-grams.** Contiguous token runs of length 1..`ngram_max` (default 15) of each template. One is kept
  only if it holds a keyword (a token of letters, digits and `_` starting with a letter or `_`: keywords and
  function names; SQL reserves the aggregate names), neither starts nor ends with `,`, and its parentheses
  are balanced (no `)` before its `(`, as many of each).
- **Distribution.** One corpus-level distribution per set over the n-grams of all lengths together:
  P(g) = count of g in the set / count of all kept n-grams of the set.
- **D_KL.** D_KL(P‖Q) = Σ_{g ∈ supp P} P(g) log(P(g) / Q̃(g)), natural log, where Q̃ is Q with additive
  smoothing over the union vocabulary V = supp P ∪ supp Q: Q̃(g) = (count_Q(g) + α) / (N_Q + α|V|). With
  α > 0 it is finite; against itself it is O(α²) (not exactly 0: smoothing moves mass), so A_KL(P, P) is 1
  to within that (below 1e-4 for α = 0.01 on real sets).
- **A_KL.** A_KL(P, Q) = exp(−D_KL(P‖Q) / c). The paper's rule picks c so that the lowest score among the
  sets compared is 1/e, i.e. c = the largest D_KL in the table (c = 1 when all are 0). c therefore depends on
  the sets in the table; fix it (`--c`, config `alignment.c`) to compare scores across tables.
- **OVLP.** OVLP(P, Q) = Σ_{g ∈ supp P ∩ supp Q} P(g): the share of the target's n-gram mass (counts, not
  distinct n-grams) whose n-grams occur at least once in the other set. 1 = the other set has every target
  structure; it ignores how often.
- **AR.** AR(train) = A_KL(target‖train) / A_KL(target‖pred) = exp((D_KL(target‖pred) − D_KL(target‖train))
  / c), where `pred` are the base model's own predictions on the target. AR > 1: the training data is closer
  to the target's structure than the model already is.
- **Selection.** `greedy_select` picks a training subset of a given size that maximises A_KL(target‖subset)
  by adding, one at a time, the candidate that lowers D_KL most (V fixed to the target's and all candidates'
  n-grams, so the gains are comparable). The target's queries only rank training queries; none of them is
  copied into the subset.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.errors import SqlglotError

from workflow_scripts.core.errors import UserError

NGRAM_MAX = 15
ALPHA = 0.01
PRED_NAME = "pred"
PLACEHOLDER = "__LEAF__"
# Tokens of the generator's output: words, two-character operators, any other single character.
_TOKEN = re.compile(r"\w+|<>|<=|>=|!=|==|\|\||<<|>>|\S")
_KEYWORD = re.compile(r"[A-Za-z_]\w*")

Template = tuple[str, ...]


class _TemplateGenerator(SQLite.Generator):
    """SQLite's generator with every leaf rendered as PLACEHOLDER."""

    def identifier_sql(self, expression: exp.Identifier) -> str:
        return PLACEHOLDER

    def literal_sql(self, expression: exp.Literal) -> str:
        return PLACEHOLDER

    def datatype_sql(self, expression: exp.DataType) -> str:
        return PLACEHOLDER

    def placeholder_sql(self, expression: exp.Placeholder) -> str:
        return PLACEHOLDER

    def neg_sql(self, expression: exp.Neg) -> str:
        return PLACEHOLDER if isinstance(expression.this, exp.Literal) else super().neg_sql(expression)


_DIALECT = SQLite()
_GENERATOR = _TemplateGenerator(dialect=_DIALECT)


# ------------------------------------------------------------------------------------------- templates


def template(sql: str | None) -> Template | None:
    """Return the structural template of one query (tokens without leaves), or None when it is unparsed."""
    if sql is None or not str(sql).strip():
        return None
    try:
        statements = [s for s in _DIALECT.parse(str(sql)) if s is not None]
        if len(statements) != 1 or not isinstance(statements[0], exp.Query):
            return None
        rendered = _GENERATOR.generate(statements[0], copy=False)  # the tree is ours and thrown away
    except (SqlglotError, RecursionError, ValueError, TypeError):
        return None
    return strip_leaves(_TOKEN.findall(rendered))


def strip_leaves(tokens: Sequence[str]) -> Template:
    """Drop placeholders, the `.` of qualified names and an `AS` before a leaf; upper-case the rest."""
    kept = []
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if tok == PLACEHOLDER:
            continue
        after_leaf = i > 0 and tokens[i - 1] == PLACEHOLDER
        before_leaf = i < last and tokens[i + 1] == PLACEHOLDER
        if tok == "." and (after_leaf or before_leaf):
            continue
        if tok.upper() == "AS" and before_leaf:
            continue
        kept.append(tok.upper())
    return tuple(kept)


def _template_chunk(queries: Sequence[str | None]) -> list[Template | None]:
    return [template(q) for q in queries]


def templates(queries: Sequence[str | None], workers: int = 1) -> list[Template | None]:
    """Return the template of every query, in order; identical strings are parsed once.

    A value that is not a string (None, NaN) is unparsed. With `workers` > 1 the distinct queries are parsed
    in that many processes.
    """
    queries = [q if isinstance(q, str) else None for q in queries]
    distinct = list(dict.fromkeys(queries))
    if workers > 1 and len(distinct) >= 2 * workers:
        size = math.ceil(len(distinct) / workers)
        chunks = [distinct[i : i + size] for i in range(0, len(distinct), size)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parsed = [t for chunk in pool.map(_template_chunk, chunks) for t in chunk]
    else:
        parsed = _template_chunk(distinct)
    by_query = dict(zip(distinct, parsed, strict=True))
    return [by_query[q] for q in queries]


# ------------------------------------------------------------------------------------------- n-grams


def keep_ngram(gram: Sequence[str]) -> bool:
    """True when an n-gram holds a keyword, neither starts nor ends with `,`, and its parentheses balance."""
    if gram[0] == "," or gram[-1] == ",":
        return False
    depth = 0
    for tok in gram:
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and any(_KEYWORD.fullmatch(tok) for tok in gram)


def ngrams(tokens: Template, ngram_max: int = NGRAM_MAX) -> Counter[str]:
    """The kept n-grams (lengths 1..ngram_max) of one template as space-joined text, with their counts."""
    counts: Counter[str] = Counter()
    for start in range(len(tokens)):
        for end in range(start + 1, min(start + ngram_max, len(tokens)) + 1):
            gram = tokens[start:end]
            if keep_ngram(gram):
                counts[" ".join(gram)] += 1
    return counts


@dataclass(frozen=True)
class Distribution:
    """The n-gram counts of a SQL set; `queries` of which `parsed` had a template."""

    counts: Mapping[str, int]
    total: int
    queries: int
    parsed: int

    @property
    def unparsed(self) -> int:
        return self.queries - self.parsed

    def prob(self, gram: str) -> float:
        return self.counts.get(gram, 0) / self.total if self.total else 0.0


class NgramCache:
    """The n-grams of each distinct template, computed once (templates repeat across a corpus)."""

    def __init__(self, ngram_max: int = NGRAM_MAX) -> None:
        if ngram_max < 1:
            raise UserError(f"ngram_max={ngram_max} must be >= 1. Fix: set alignment.ngram_max to 1 or more.")
        self.ngram_max = ngram_max
        self._grams: dict[Template, Counter[str]] = {}

    def __call__(self, tokens: Template) -> Counter[str]:
        grams = self._grams.get(tokens)
        if grams is None:
            grams = self._grams[tokens] = ngrams(tokens, self.ngram_max)
        return grams

    def distribution(self, tmpls: Iterable[Template | None]) -> Distribution:
        """Return the corpus-level n-gram distribution of a list of templates (None = unparsed)."""
        tmpls = list(tmpls)
        counts: Counter[str] = Counter()
        for tokens, times in Counter(t for t in tmpls if t is not None).items():
            for gram, n in self(tokens).items():
                counts[gram] += n * times
        parsed = sum(t is not None for t in tmpls)
        return Distribution(dict(counts), sum(counts.values()), len(tmpls), parsed)


def distribution(queries: Sequence[str | None], ngram_max: int = NGRAM_MAX, workers: int = 1) -> Distribution:
    """Return the n-gram distribution of a list of SQL queries."""
    return NgramCache(ngram_max).distribution(templates(queries, workers))


# ------------------------------------------------------------------------------------------- measures


def kl_divergence(p: Distribution, q: Distribution, alpha: float = ALPHA) -> float:
    """D_KL(P‖Q) over P's support, Q additively smoothed with `alpha` over supp P ∪ supp Q (natural log)."""
    if alpha <= 0:
        raise UserError(f"alpha={alpha} must be > 0 (D_KL is infinite otherwise). Fix: set alignment.alpha.")
    if not p.total:
        raise UserError(
            f"the target has no n-gram ({p.queries} queries, {p.unparsed} unparsed). Fix: give it SQL."
        )
    vocab = len(p.counts.keys() | q.counts.keys())
    denom = q.total + alpha * vocab
    return sum(
        (n / p.total) * math.log((n / p.total) * denom / (q.counts.get(g, 0) + alpha))
        for g, n in p.counts.items()
    )


def overlap(p: Distribution, q: Distribution) -> float:
    """OVLP: the share of P's n-gram mass whose n-grams occur in Q."""
    return sum(n for g, n in p.counts.items() if g in q.counts) / p.total if p.total else 0.0


def scale(divergences: Iterable[float], c: float | None = None) -> float:
    """The A_KL scale: `c` when given, else the paper's rule (the largest D_KL: the lowest score is 1/e)."""
    if c is not None:
        if c <= 0:
            raise UserError(f"c={c} must be > 0. Fix: set alignment.c to a positive number or null.")
        return float(c)
    worst = max(divergences, default=0.0)
    return worst if worst > 0 else 1.0


def alignment_score(divergence: float, c: float) -> float:
    """A_KL = exp(−D_KL / c)."""
    return math.exp(-divergence / c)


def alignment_table(
    target: Distribution,
    sets: Mapping[str, Distribution],
    *,
    alpha: float = ALPHA,
    c: float | None = None,
    pred: str | None = None,
) -> tuple[pd.DataFrame, float]:
    """One row per set: queries, unparsed, D_KL, A_KL, OVLP (and AR against set `pred`); returns (table, c).

    c follows `scale` over all the sets in the table.
    """
    if pred is not None and pred not in sets:
        raise UserError(f"no set is named {pred!r}. Fix: name the base model's predictions {pred}=FILE.")
    kl = {name: kl_divergence(target, dist, alpha) for name, dist in sets.items()}
    c_used = scale(kl.values(), c)
    rows = []
    for name, dist in sets.items():
        rows.append(
            {
                "set": name,
                "queries": dist.queries,
                "unparsed": dist.unparsed,
                "D_KL": kl[name],
                "A_KL": alignment_score(kl[name], c_used),
                "OVLP": overlap(target, dist),
                "AR": (
                    math.exp((kl[pred] - kl[name]) / c_used)
                    if pred is not None and name != pred
                    else math.nan
                ),
            }
        )
    table = pd.DataFrame(rows)
    if pred is None:
        table = table.drop(columns="AR")
    return table, c_used


# ------------------------------------------------------------------------------------------- selection


def greedy_select(
    target: Distribution,
    candidates: Sequence[Counter[str] | None],
    size: int,
    alpha: float = ALPHA,
    *,
    misaligned: bool = False,
) -> list[int]:
    """Indices of `size` candidates (n-gram counts, None = unparsed) greedily minimising D_KL(target‖subset)
    (with `misaligned`: maximising it, the least aligned subset of that size).

    Each step adds the candidate whose n-grams lower D_KL most (raise it most); ties go to the lower index.
    Unparsed candidates come last. The vocabulary of the smoothing is the target's and every candidate's
    n-grams.
    """
    if not 0 < size <= len(candidates):
        raise UserError(f"a subset of {size} cannot be chosen from {len(candidates)} candidates.")
    grams = list(target.counts)
    col = {g: j for j, g in enumerate(grams)}
    p = np.array([target.counts[g] / target.total for g in grams])
    vocab = set(target.counts)
    rows, cols, vals, totals = [], [], [], np.zeros(len(candidates))
    for i, cand in enumerate(candidates):
        for g, n in (cand or {}).items():
            vocab.add(g)
            totals[i] += n
            if g in col:
                rows.append(i)
                cols.append(col[g])
                vals.append(float(n))
    rows_a, cols_a, vals_a = np.array(rows, dtype=int), np.array(cols, dtype=int), np.array(vals)
    smooth = alpha * len(vocab)
    counts = np.zeros(len(grams))
    total = 0.0
    parsed = np.array([c is not None for c in candidates])
    taken = np.zeros(len(candidates), dtype=bool)
    chosen: list[int] = []
    for _ in range(size):
        base = counts[cols_a] + alpha
        gain_terms = p[cols_a] * (np.log(base + vals_a) - np.log(base))
        gains = np.bincount(rows_a, weights=gain_terms, minlength=len(candidates))
        gains -= np.log(total + totals + smooth) - math.log(total + smooth)
        if misaligned:
            gains = -gains
        gains[~parsed] = -np.inf
        gains[taken] = -np.inf
        best = int(np.argmax(gains)) if np.isfinite(gains).any() else int(np.argmin(taken))
        chosen.append(best)
        taken[best] = True
        mask = rows_a == best
        np.add.at(counts, cols_a[mask], vals_a[mask])
        total += totals[best]
    return chosen


def random_select(n: int, size: int, seed: int) -> list[int]:
    """`size` indices of range(n) drawn without replacement with `seed`, in increasing order."""
    if not 0 < size <= n:
        raise UserError(f"a subset of {size} cannot be drawn from {n} candidates.")
    return sorted(random.Random(seed).sample(range(n), size))


# ------------------------------------------------------------------------------------------- sample size


def per_group_sample(groups: Sequence[str], k: int | None, rng: random.Random) -> list[int]:
    """Indices of at most `k` items per group, drawn without replacement (None = every item)."""
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    picked = []
    for members in by_group.values():
        picked += members if k is None or k >= len(members) else rng.sample(members, k)
    return sorted(picked)


def sample_size_study(
    target: Sequence[Template | None],
    groups: Sequence[str],
    sets: Mapping[str, Distribution],
    cache: NgramCache,
    *,
    ks: Sequence[int],
    draws: int,
    seed: int,
    alpha: float,
    c: float,
) -> pd.DataFrame:
    """A_KL(target_k‖set) when the target is only k queries per group (database), over `draws` draws.

    One row per (k, draw, set) with D_KL, A_KL (scale `c`) and `rank_agrees`: whether this draw orders the
    sets as the whole target does. k = None ("all") is the whole target, one draw.
    """
    if len(target) != len(groups):
        raise ValueError("target and groups differ in length")
    full = cache.distribution(target)
    full_kl = {name: kl_divergence(full, d, alpha) for name, d in sets.items()}
    full_order = sorted(full_kl, key=full_kl.get)
    rng = random.Random(seed)
    rows = []
    for k in [*ks, None]:
        for draw in range(draws if k is not None else 1):
            picked = per_group_sample(groups, k, rng)
            dist = cache.distribution([target[i] for i in picked])
            if not dist.total:
                continue
            kl = {name: kl_divergence(dist, d, alpha) for name, d in sets.items()}
            agrees = sorted(kl, key=kl.get) == full_order
            for name, value in kl.items():
                rows.append({
                    "k": "all" if k is None else str(k), "draw": draw, "set": name,
                    "target_queries": len(picked), "D_KL": value, "A_KL": alignment_score(value, c),
                    "rank_agrees": agrees,
                })  # fmt: skip
    return pd.DataFrame(rows)


def summarize_sample_size(study: pd.DataFrame) -> pd.DataFrame:
    """Per (k, set): mean, std, median, 5th and 95th percentile of A_KL and the rank agreement rate."""
    grouped = study.groupby(["k", "set"], sort=False)
    return grouped.agg(
        draws=("A_KL", "size"),
        target_queries=("target_queries", "mean"),
        A_KL_mean=("A_KL", "mean"),
        A_KL_std=("A_KL", lambda s: float(s.std(ddof=0))),
        A_KL_median=("A_KL", lambda s: float(s.quantile(0.5))),
        A_KL_p05=("A_KL", lambda s: float(s.quantile(0.05))),
        A_KL_p95=("A_KL", lambda s: float(s.quantile(0.95))),
        rank_agreement=("rank_agrees", "mean"),
    ).reset_index()


# ------------------------------------------------------------------------------------------- files


def read_sql_file(path: str | Path) -> list[str]:
    """The queries of a SQL file (one per line, a TAB and what follows ignored) or a Parquet `sql` column.

    Every line is a query (an empty one counts as unparsed); a final newline ends the last line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"the SQL file {str(path)!r} does not exist. Fix: pass an existing file.")
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise UserError(
                f"{str(path)!r} is not a readable Parquet file ({err}). Fix: pass a Parquet file."
            ) from None
        if "sql" not in frame.columns:
            raise UserError(
                f"the Parquet file {str(path)!r} has no `sql` column (it has "
                f"{', '.join(map(str, frame.columns))}). Fix: name the SQL column `sql`."
            )
        return [None if pd.isna(v) else str(v) for v in frame["sql"]]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{str(path)!r} is not UTF-8 text ({err}). Fix: pass SQL one per line or Parquet."
        ) from None
    return [line.split("\t", 1)[0].strip() for line in text.splitlines()]
