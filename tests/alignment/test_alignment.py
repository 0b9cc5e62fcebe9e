"""Structural KL alignment: templates, n-grams, D_KL / A_KL / OVLP / AR, selection, the CLI and the stage."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from workflow_scripts.alignment import analysis
from workflow_scripts.alignment import kl as al
from workflow_scripts.cli import alignment as stage
from workflow_scripts.core.errors import UserError

TARGET = [
    "SELECT name FROM singer WHERE age > 30",
    "SELECT count(*) FROM singer",
    "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id WHERE T2.year = 2014",
    "SELECT country, count(*) FROM singer GROUP BY country",
    "SELECT name FROM singer ORDER BY age DESC LIMIT 1",
]
# The same structures over other tables, columns, aliases and literals.
RENAMED = [
    "SELECT title FROM book WHERE pages > 100",
    "SELECT COUNT(*) FROM book",
    "SELECT a.title FROM book AS a JOIN author AS b ON a.aid = b.id WHERE b.born = 'x'",
    "select genre, count(*) from book group by genre",
    "SELECT title   FROM book ORDER BY pages DESC LIMIT 10",
]
# Structures the target lacks.
EXTRA = [
    "SELECT DISTINCT x FROM t WHERE y IN (SELECT z FROM u WHERE w LIKE '%a%') UNION SELECT x FROM v",
    "SELECT x, avg(y) FROM t GROUP BY x HAVING sum(y) BETWEEN 1 AND 5 EXCEPT SELECT x, 1 FROM u",
]


def dist(queries, ngram_max=al.NGRAM_MAX):
    return al.distribution(queries, ngram_max)


# ------------------------------------------------------------------------------------------- templates


def test_template_of_the_issue_example():
    sql = "SELECT a / b FROM t WHERE c = 'x' ORDER BY (CAST(d AS REAL) / e) DESC LIMIT 5"
    assert " ".join(al.template(sql)) == "SELECT / FROM WHERE = ORDER BY ( CAST ( ) / ) DESC LIMIT"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("SELECT name FROM users", "SELECT id FROM products"),
        ("SELECT a FROM t WHERE b = 1", "SELECT c FROM u WHERE d = 'text'"),
        ("SELECT a FROM t WHERE b > -3.5", "SELECT a FROM t WHERE b > 7"),
        ("SELECT T1.a FROM t AS T1", "SELECT a FROM t"),
        ("SELECT x.a FROM t x", "SELECT a FROM t"),
        ("SELECT count(*) AS n FROM t", "SELECT COUNT(*) FROM t"),
        ('SELECT "quoted name" FROM `tbl`', "SELECT a FROM t"),
        ("select a from t where b != 1", "SELECT a FROM t WHERE b <> 1"),
        ("SELECT a FROM t WHERE b = ?", "SELECT a FROM t WHERE b = 'v'"),
    ],
)
def test_identifiers_literals_and_spelling_do_not_matter(one, other):
    assert al.template(one) is not None
    assert al.template(one) == al.template(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("SELECT a FROM t", "SELECT DISTINCT a FROM t"),
        ("SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b > 1"),
        ("SELECT max(a) FROM t", "SELECT min(a) FROM t"),
        ("SELECT a FROM t", "SELECT a, b FROM t"),
        ("SELECT a FROM t WHERE b IS NULL", "SELECT a FROM t WHERE b = 1"),
    ],
)
def test_structure_does_matter(one, other):
    assert al.template(one) != al.template(other)


@pytest.mark.parametrize(
    "sql", ["", "   ", None, "SELEC a FROM t", "hello world", "SELECT 1; SELECT 2", "(("]
)
def test_unparseable_queries_have_no_template(sql):
    assert al.template(sql) is None


def test_unparsed_queries_are_counted_not_dropped():
    d = dist([*TARGET, "not sql at all", "", None, float("nan")])
    assert (d.queries, d.parsed, d.unparsed) == (9, 5, 4)
    assert d.counts == dist(TARGET).counts


def test_templates_in_two_processes_equal_one():
    queries = [*TARGET, *RENAMED, *EXTRA, "oops", *TARGET] * 3
    assert al.templates(queries, workers=2) == al.templates(queries, workers=1)


# ------------------------------------------------------------------------------------------- n-grams


@pytest.mark.parametrize(
    ("gram", "kept"),
    [
        (("SELECT",), True),
        (("=",), False),  # no keyword
        (("(", ")"), False),
        ((",", "COUNT"), False),  # starts with a comma
        (("COUNT", ","), False),  # ends with a comma
        (("COUNT", "("), False),  # unbalanced
        (("*", ")", "FROM"), False),  # ')' before '('
        (("COUNT", "(", "*", ")"), True),
        (("SELECT", ",", "FROM"), True),
    ],
)
def test_ngram_filter(gram, kept):
    assert al.keep_ngram(gram) is kept


def test_ngrams_of_a_template():
    tokens = ("SELECT", "COUNT", "(", "*", ")", "FROM")
    assert al.ngrams(tokens, ngram_max=3) == Counter(["SELECT", "COUNT", "FROM", "SELECT COUNT"])
    assert al.ngrams(tokens, ngram_max=4) == Counter(
        ["SELECT", "COUNT", "FROM", "SELECT COUNT", "COUNT ( * )", "( * ) FROM"]
    )
    assert al.ngrams(("SELECT", "FROM", "SELECT", "FROM"), ngram_max=1) == Counter({"SELECT": 2, "FROM": 2})


def test_ngram_max_limits_the_length():
    short = dist(TARGET, ngram_max=2)
    assert max(len(g.split()) for g in short.counts) == 2
    assert max(len(g.split()) for g in dist(TARGET).counts) > 2


def test_distribution_is_corpus_level_relative_frequency():
    d = dist(["SELECT a FROM t", "SELECT a FROM t", "SELECT count(*) FROM t"])
    # templates SELECT FROM (twice) and SELECT COUNT ( * ) FROM
    assert d.counts["SELECT"] == 3 and d.counts["SELECT FROM"] == 2 and d.counts["COUNT ( * )"] == 1
    assert d.total == sum(d.counts.values())
    assert math.isclose(sum(d.prob(g) for g in d.counts), 1.0)


# ------------------------------------------------------------------------------------------- measures


def test_kl_matches_a_hand_computation():
    p = al.Distribution({"A": 3, "B": 1}, 4, 1, 1)
    q = al.Distribution({"A": 1, "C": 1}, 2, 1, 1)
    alpha = 0.5
    denom = 2 + alpha * 3  # vocabulary {A, B, C}
    expected = 0.75 * math.log(0.75 / (1.5 / denom)) + 0.25 * math.log(0.25 / (0.5 / denom))
    assert math.isclose(al.kl_divergence(p, q, alpha), expected)
    assert math.isclose(al.overlap(p, q), 0.75)


def test_a_set_against_itself_scores_one():
    target = dist(TARGET)
    table, _ = al.alignment_table(target, {"self": target, "extra": dist(EXTRA)})
    assert table.set_index("set").loc["self", "A_KL"] == pytest.approx(1.0, abs=1e-4)
    assert table.set_index("set").loc["self", "OVLP"] == 1.0


def test_renamed_identifiers_and_literals_give_the_same_scores():
    target = dist(TARGET)
    sets = {"renamed": dist(RENAMED), "self": target, "extra": dist(EXTRA)}
    table = al.alignment_table(target, sets)[0].set_index("set")
    assert table.loc["renamed", "D_KL"] == table.loc["self", "D_KL"]
    assert table.loc["renamed", "A_KL"] == table.loc["self", "A_KL"]


def test_added_structures_the_target_lacks_score_lower():
    target = dist(TARGET)
    sets = {"same": dist(RENAMED), "plus_extra": dist([*RENAMED, *EXTRA]), "only_extra": dist(EXTRA)}
    table = al.alignment_table(target, sets)[0].set_index("set")
    assert table.loc["same", "A_KL"] > table.loc["plus_extra", "A_KL"] > table.loc["only_extra", "A_KL"]
    assert table.loc["plus_extra", "OVLP"] == 1.0  # it covers the target, yet dilutes it
    assert table.loc["only_extra", "OVLP"] < 1.0


def test_paper_rule_puts_the_lowest_score_at_one_over_e_and_fixed_c_is_used():
    target = dist(TARGET)
    sets = {"near": dist(RENAMED[:3]), "far": dist(EXTRA)}
    table, c = al.alignment_table(target, sets)
    assert table["A_KL"].min() == pytest.approx(math.exp(-1))
    assert c == pytest.approx(table["D_KL"].max())
    fixed, c_fixed = al.alignment_table(target, sets, c=2.0)
    assert c_fixed == 2.0
    assert fixed["A_KL"].to_list() == pytest.approx([math.exp(-d / 2.0) for d in fixed["D_KL"]])


def test_alignment_ratio_against_the_predictions():
    target = dist(TARGET)
    sets = {"pred": dist([TARGET[1], EXTRA[0]]), "train": dist(RENAMED), "bad": dist(EXTRA)}
    table = al.alignment_table(target, sets, pred="pred")[0].set_index("set")
    assert table.loc["train", "AR"] == pytest.approx(table.loc["train", "A_KL"] / table.loc["pred", "A_KL"])
    assert table.loc["train", "AR"] > 1 > table.loc["bad", "AR"]
    assert math.isnan(table.loc["pred", "AR"])
    with pytest.raises(UserError, match="no set is named 'pred'"):
        al.alignment_table(target, {"train": dist(RENAMED)}, pred="pred")


def test_bad_measure_settings_are_user_errors():
    target = dist(TARGET)
    with pytest.raises(UserError, match="alpha"):
        al.kl_divergence(target, target, alpha=0)
    with pytest.raises(UserError, match="c="):
        al.scale([1.0], c=0)
    with pytest.raises(UserError, match="no n-gram"):
        al.kl_divergence(dist(["nonsense"]), target)
    with pytest.raises(UserError, match="ngram_max"):
        al.NgramCache(0)


# ------------------------------------------------------------------------------------------- selection


def test_greedy_selection_prefers_aligned_queries():
    target = dist(TARGET)
    pool = [*EXTRA, "SELECT x FROM y LIMIT 3 OFFSET 2", *RENAMED, None]
    cache = al.NgramCache()
    candidates = [None if t is None else cache(t) for t in al.templates(pool)]
    picked = al.greedy_select(target, candidates, len(RENAMED))
    assert sorted(picked) == list(range(3, 3 + len(RENAMED)))
    subset = cache.distribution(al.templates([pool[i] for i in picked]))
    for seed in range(5):
        rand = cache.distribution(al.templates([pool[i] for i in al.random_select(len(pool), 5, seed)]))
        assert al.kl_divergence(target, subset) <= al.kl_divergence(target, rand)
    # unparsed candidates come last
    assert al.greedy_select(target, candidates, len(pool))[-1] == len(pool) - 1
    with pytest.raises(UserError):
        al.greedy_select(target, candidates, len(pool) + 1)
    with pytest.raises(UserError):
        al.random_select(3, 0, seed=0)


def test_misaligned_selection_is_further_from_the_target_than_aligned_and_random():
    target = dist(TARGET)
    pool = [*EXTRA, "SELECT x FROM y LIMIT 3 OFFSET 2", *RENAMED, None]
    cache = al.NgramCache()
    candidates = [None if t is None else cache(t) for t in al.templates(pool)]
    size = 3
    picks = {
        "aligned": al.greedy_select(target, candidates, size),
        "misaligned": al.greedy_select(target, candidates, size, misaligned=True),
    }
    kl = {
        n: al.kl_divergence(target, cache.distribution(al.templates([pool[i] for i in p])))
        for n, p in picks.items()
    }
    assert kl["misaligned"] > kl["aligned"]
    for seed in range(5):
        rand = cache.distribution(
            al.templates([pool[i] for i in al.random_select(len(pool) - 1, size, seed)])
        )
        assert kl["misaligned"] >= al.kl_divergence(target, rand)
    assert len(pool) - 1 not in picks["misaligned"], "unparsed candidates still come last"


def test_random_selection_is_seeded():
    assert al.random_select(50, 10, seed=1) == al.random_select(50, 10, seed=1)
    assert al.random_select(50, 10, seed=1) != al.random_select(50, 10, seed=2)


# ------------------------------------------------------------------------------------------- sample size


def test_sample_size_study():
    target = [*TARGET, *RENAMED]
    groups = ["a"] * 5 + ["b"] * 5
    cache = al.NgramCache()
    sets = {"near": dist(RENAMED), "far": dist(EXTRA)}
    study = al.sample_size_study(
        al.templates(target), groups, sets, cache, ks=[1, 2], draws=7, seed=0, alpha=0.01, c=1.0
    )
    assert sorted(study["k"].unique()) == ["1", "2", "all"]
    assert (study[study["k"] == "1"]["target_queries"] == 2).all()
    assert len(study[study["k"] == "all"]) == 2 and (study[study["k"] == "all"]["target_queries"] == 10).all()
    assert len(study[study["k"] == "2"]) == 7 * 2
    assert study[study["k"] == "all"]["rank_agrees"].all()
    summary = al.summarize_sample_size(study).set_index(["k", "set"])
    assert summary.loc[("1", "near"), "draws"] == 7
    assert summary.loc[("all", "near"), "A_KL_std"] == 0
    again = al.sample_size_study(
        al.templates(target), groups, sets, cache, ks=[1, 2], draws=7, seed=0, alpha=0.01, c=1.0
    )
    pd.testing.assert_frame_equal(study, again)


# ------------------------------------------------------------------------------------------- files and CLI


def test_sql_file_one_per_line_with_tab_suffix(tmp_path: Path):
    path = tmp_path / "gold.sql"
    path.write_text("SELECT a FROM t\tdb_one\nSELECT count(*) FROM u\tdb_two\n\nSELECT b FROM v\n")
    assert al.read_sql_file(path) == ["SELECT a FROM t", "SELECT count(*) FROM u", "", "SELECT b FROM v"]


def test_parquet_file_with_sql_column(tmp_path: Path):
    path = tmp_path / "pred.parquet"
    pd.DataFrame({"id": [1, 2], "sql": ["SELECT a FROM t", None]}).to_parquet(path)
    assert al.read_sql_file(path) == ["SELECT a FROM t", None]
    bad = tmp_path / "nosql.parquet"
    pd.DataFrame({"query": ["SELECT 1"]}).to_parquet(bad)
    with pytest.raises(UserError, match="no `sql` column.*query"):
        al.read_sql_file(bad)
    with pytest.raises(UserError, match="does not exist"):
        al.read_sql_file(tmp_path / "missing.sql")
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(UserError, match="not a readable Parquet"):
        al.read_sql_file(broken)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\tdb\n" for line in lines))
    return path


def test_cli_writes_the_table(tmp_path: Path, capsys):
    target = write_lines(tmp_path / "target.sql", TARGET)
    train = write_lines(tmp_path / "train.sql", RENAMED)
    pred = tmp_path / "pred.parquet"
    pd.DataFrame({"sql": [TARGET[1], EXTRA[0], "garbage"]}).to_parquet(pred)
    out = tmp_path / "table.csv"
    stage.main(
        ["table", "--target", str(target), "--against", f"train={train}", f"pred={pred}", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    table = pd.read_csv(out).set_index("set")
    assert list(table.columns) == ["queries", "unparsed", "D_KL", "A_KL", "OVLP", "AR"]
    assert table.loc["pred", "unparsed"] == 1 and table.loc["train", "queries"] == 5
    assert table.loc["train", "AR"] > 1 and table.loc["pred", "A_KL"] == pytest.approx(math.exp(-1))
    assert "paper rule" in printed and "train" in printed
    # without a set named pred there is no AR column
    stage.main(
        [
            "table",
            "--target",
            str(target),
            "--against",
            f"train={train}",
            "--out",
            str(tmp_path / "t.parquet"),
        ]
    )
    assert "AR" not in pd.read_parquet(tmp_path / "t.parquet").columns


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--against", "train"], "is not NAME=FILE"),
        (["--against", "a=TRAIN", "a=TRAIN"], "more than once"),
        (["--against", "a=MISSING"], "does not exist"),
        (["--against", "a=TRAIN", "--out", "table.txt"], "must end in .csv or .parquet"),
        (["--against", "a=TRAIN", "--alpha", "0"], "alpha"),
    ],
)
def test_cli_bad_input_gives_one_clear_error(tmp_path: Path, args: list[str], message: str):
    target = write_lines(tmp_path / "target.sql", TARGET)
    train = write_lines(tmp_path / "train.sql", RENAMED)
    args = [a.replace("TRAIN", str(train)).replace("MISSING", str(tmp_path / "nope.sql")) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "workflow_scripts.cli.alignment", "table", "--target", str(target), *args],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------- the stage


def messages(question: str) -> str:
    return json.dumps([{"role": "system", "content": "Write SQL."}, {"role": "user", "content": question}])


def trajectories(rows: list[tuple[str, int, str, bool]]) -> pd.DataFrame:
    """Trajectories with the columns the stage reads: (example_id, turn, sql, correct) per candidate."""
    return pd.DataFrame([
        {"example_id": e, "sample": 0, "turn": t, "candidate": 0, "prompt": messages(e), "sql": s,
         "correct": c, "verdict": "correct" if c else "wrong_result", "executable": True}
        for e, t, s, c in rows
    ])  # fmt: skip


@pytest.fixture
def stage_inputs(tmp_path: Path) -> dict[str, Path]:
    """Small real inputs of the alignment stage: eval and train examples, trajectories, pairs."""
    eval_dir, train_dir = tmp_path / "data" / "dev", tmp_path / "data" / "train"
    eval_dir.mkdir(parents=True)
    train_dir.mkdir(parents=True)
    dev_ids = [f"dev-{i}" for i in range(len(TARGET))]
    pd.DataFrame({"id": dev_ids, "db_id": ["a", "a", "b", "b", "b"], "gold_sql": TARGET}).to_parquet(
        eval_dir / "examples.parquet"
    )
    train_sql = [*RENAMED, *EXTRA, "SELECT x FROM y LIMIT 3 OFFSET 2"]
    train_ids = [f"train-{i}" for i in range(len(train_sql))]
    pd.DataFrame({"id": train_ids, "db_id": "c", "gold_sql": train_sql}).to_parquet(
        train_dir / "examples.parquet"
    )
    mining = trajectories([(e, 1, "SELECT nothing", False) for e in train_ids])
    mining.to_parquet(tmp_path / "mining.parquet")
    pd.DataFrame({"chosen": RENAMED[:3], "rejected": EXTRA + ["SELECT a FROM t"]}).to_parquet(
        tmp_path / "pairs.parquet"
    )
    runs = {}
    for variant, right in (("base", 1), ("sft", 3), ("dpo", 2), ("sft_aligned", 4), ("sft_random", 2)):
        run = tmp_path / "rollouts" / variant
        run.mkdir(parents=True)
        limit = 3 if variant.startswith("sft_") else len(TARGET)
        rows = [
            (e, 1, TARGET[i] if i < right else EXTRA[0], i < right) for i, e in enumerate(dev_ids[:limit])
        ]
        trajectories(rows).to_parquet(run / "trajectories.parquet")
        runs[variant] = run
    return {"eval": eval_dir, "train": train_dir, "mining": tmp_path / "mining.parquet",
            "pairs": tmp_path / "pairs.parquet", "out": tmp_path / "alignment", **runs}  # fmt: skip


SETTINGS = {
    "ngram_max": 15, "alpha": 0.01, "c": None, "sample_size": {"k": [1, 2], "draws": 5, "seed": 0},
    "selection": {"enabled": True, "size": 5, "eval_limit": 3, "seed": 0},
}  # fmt: skip


def stage_args(p: dict[str, Path], command: str) -> list[str]:
    return [command, "--target-examples", str(p["eval"] / "examples.parquet"), "--data-dir", str(p["train"]),
            "--trajectories", str(p["mining"]), "--settings", json.dumps(SETTINGS)]  # fmt: skip


def test_stage_selects_trains_nothing_and_analyzes(stage_inputs: dict[str, Path]):
    p = stage_inputs
    selection = p["out"] / "selection"
    stage.main([*stage_args(p, "select"), "--out-dir", str(selection)])
    aligned = pd.read_parquet(selection / "aligned.parquet")
    random = pd.read_parquet(selection / "random.parquet")
    assert len(aligned) == len(random) == 5
    assert set(aligned.columns) >= {"prompt", "completion", "example_id", "source"}
    from workflow_scripts.train.data import sft_dataset  # what train --sft-data feeds to the trainer

    assert sft_dataset(aligned)[0]["completion"][0]["role"] == "assistant"
    # the greedy subset is the renamed target structures; no target query is in it
    assert sorted(analysis.completion_sql(aligned)) == sorted(RENAMED)
    assert not set(analysis.completion_sql(aligned)) & set(TARGET)
    report = json.loads((selection / "selection.json").read_text())
    assert report["D_KL"]["aligned"] < report["D_KL"]["pool"] and report["pool"] == 8

    variants = [f"--variant {n}={p[n]}" for n in ("base", "sft", "dpo", "sft_aligned", "sft_random")]
    stage.main([*stage_args(p, "analyze"), "--pairs", str(p["pairs"]), *" ".join(variants).split(),
                "--selection-dir", str(selection), "--out-dir", str(p["out"])])  # fmt: skip
    table = pd.read_parquet(p["out"] / "alignment.parquet").set_index("set")
    assert {"sft_data", "dpo_chosen", "dpo_rejected", "synth20", "sft_aligned", "sft_random",
            "pred_base", "pred_sft"} <= set(table.index)  # fmt: skip
    assert table.loc["synth20", "queries"] == 6 and table.loc["sft_data", "queries"] == 8
    assert table["A_KL"].min() == pytest.approx(math.exp(-1))
    assert table.loc["sft_aligned", "AR"] > table.loc["sft_random", "AR"]
    assert table[table["role"] == "predictions"]["AR"].isna().all()
    v = pd.read_parquet(p["out"] / "variants.parquet").set_index("variant")
    assert v.loc["sft", "ΔEX one-shot"] == pytest.approx(2 / 5)
    assert v.loc["sft_aligned", "examples"] == 3 and v.loc["sft_aligned", "ΔEX one-shot"] == pytest.approx(
        2 / 3
    )
    assert v.loc["sft", "training set"] == "sft_data" and v.loc["dpo", "training set"] == "dpo_chosen"
    summary = json.loads((p["out"] / "summary.json").read_text())
    assert summary["correlation_one_shot"]["points"] == 4 and -1 <= summary["correlation_one_shot"]["r"] <= 1
    assert summary["target"] == {
        "queries": 5,
        "unparsed": 0,
        "ngrams": summary["target"]["ngrams"],
        "databases": 2,
    }
    ss = pd.read_parquet(p["out"] / "sample_size_summary.parquet")
    assert set(ss["k"]) == {"1", "2", "all"}

    from workflow_scripts.report.alignment import alignment_section

    html = alignment_section(p["out"])
    assert "AR against ΔEX" in html and "Alignment-aware selection" in html and html.count("<img") == 2


def test_stage_rejects_a_subset_as_large_as_the_pool(stage_inputs: dict[str, Path]):
    p = stage_inputs
    args = stage_args(p, "select")
    args[args.index("--settings") + 1] = json.dumps(
        {**SETTINGS, "selection": {**SETTINGS["selection"], "size": 8}}
    )
    with pytest.raises(UserError, match="alignment.selection.size=8 is not smaller than the 8 SFT examples"):
        stage.main([*args, "--out-dir", str(p["out"])])
    assert not p["out"].exists()


def test_train_stage_takes_either_sft_data_or_trajectories(tmp_path: Path):
    from workflow_scripts.cli import train

    data = tmp_path / "subset.parquet"
    data.write_text("")
    with pytest.raises(UserError, match="--sft-data replaces"):
        train.main(["sft", "--model", str(tmp_path), "--sft-data", str(data), "--data-dir", str(tmp_path),
                    "--out", str(tmp_path / "out")])  # fmt: skip
    with pytest.raises(UserError, match="needs --data-dir and --trajectories"):
        train.main(["sft", "--model", str(tmp_path), "--out", str(tmp_path / "out")])


def test_training_sets_are_named_by_what_each_variant_learnt_from():
    from workflow_scripts.alignment.analysis import training_sets

    sft, chosen, rejected = ["SELECT 1"], ["SELECT 2"], ["SELECT 3"]
    sets = training_sets(
        sft,
        chosen,
        rejected,
        with_sft_dpo=True,
        rewarded={"grpo": ["SELECT 4"], "sft_grpo": ["SELECT 5"]},
        subsets={"aligned": ["SELECT 6"]},
    )
    assert sets == {
        "sft_data": sft,
        "dpo_chosen": chosen,
        "dpo_rejected": rejected,
        "synth20": chosen + rejected,
        "sft+dpo_chosen": sft + chosen,
        "grpo_rewarded": ["SELECT 4"],
        "sft+sft_grpo_rewarded": sft + ["SELECT 5"],  # SFT->GRPO learnt the SFT data, then its rewards
        "sft_aligned": ["SELECT 6"],
    }
    assert "sft+dpo_chosen" not in training_sets(
        sft, chosen, rejected, with_sft_dpo=False, rewarded={}, subsets={}
    )
