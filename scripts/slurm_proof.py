"""Proof that the workflow runs through a real SLURM scheduler with `profiles/slurm`.

Usage (as root, with Debian's `slurm-wlm` and `munge` installed): python scripts/slurm_proof.py [--keep]

It starts munge, slurmctld and slurmd for one node on loopback (private ports, state in a temporary
directory, the configuration in /run/slurm/conf, where SLURM's client commands look for it), then:

1. runs the demo's model-free stages (demo data, ingest of both data sets, retrieval recall, synthetic
   negatives) with `snakemake --profile` = the shipped `profiles/slurm` with the placeholders filled in;
2. checks with `sacct --completion` (the job completion log; no slurmdbd) that every submitted job ran on
   the node and completed;
3. runs the same targets with `snakemake --profile profiles/local` in another copy and compares every
   artifact (Parquet and JSON content without timing fields, SQLite dumps, other files byte for byte);
4. submits a GPU rollout shard (config: rollout.gpus 1) through an `sbatch` wrapper that records the
   arguments and asks the real sbatch to validate them with `--test-only` (the node declares one GPU),
   without running the job: `--gpus`, `--cpus-per-gpu`, `--mem`, `-t` and `-p` must be as configured;
5. submits a short LoRA SFT job of the real default model (training.checkpoint_steps 1) through the profile,
   requeues it with `scontrol requeue` once its first checkpoint is complete (what SLURM does to a preempted
   job), and checks that SLURM ran it again, that the rerun resumed from that checkpoint (its log says so),
   and that Snakemake ended with the adapter;

and stops the daemons and removes everything it wrote, also when a step fails or it is interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow_scripts.cli import run_cli  # noqa: E402
from workflow_scripts.core.errors import UserError  # noqa: E402
from workflow_scripts.train.checkpoints import checkpoint_dir, complete_checkpoints  # noqa: E402

COPIED = ["Snakefile", "rules", "schemas", "workflow_scripts", "config.yaml", "config", "profiles", "envs"]
TARGETS = [
    "results/data/demo_train/summary.json",
    "results/data/demo_dev/summary.json",
    "results/retrieval/demo_dev/recall.parquet",
    "results/pairs/synthetic/pairs.parquet",
]
EXPECTED_RULES = {"demo_data", "ingest", "retrieval_recall", "synthetic_negatives"}
GPU_TARGET = "results/rollouts/train_mining/shards/0.parquet"
# The requeued training job: its inputs are made locally first, so that SLURM runs this one job.
REQUEUE_INPUTS = [
    "results/rollouts/train_mining/trajectories.parquet",
    "results/data/demo_train/examples.parquet",
]
REQUEUE_TARGET = "results/adapters/sft"
REQUEUE_LOG = "results/logs/train/sft.log"
DEFAULT_MODEL = REPO / "resources" / "models" / "smollm2-135m-instruct"
GPU_RULE = "rollout_shard"
CONF_DIR = Path("/run/slurm/conf")  # where SLURM's clients find a configuration without SLURM_CONF
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "proof"
PLACEHOLDERS = ("YOUR_ACCOUNT", "YOUR_PARTITION", "YOUR_GPU_PARTITION")
TOOLS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sacct", "sinfo", "scancel"]
TIMING = re.compile(r"(_s|_seconds)$")
SKIPPED_DIRS = {"logs", "benchmarks"}
SNAKEMAKE_TIMEOUT_S = 600


class ProofError(Exception):
    """A check of the proof failed; the message says which and what was seen."""


# ---------------------------------------------------------------- configuration


def slurm_conf(
    host: str, state: Path, ctld_port: int, slurmd_port: int, munge_socket: Path, cpus: int
) -> str:
    """A one-node slurm.conf: cons_tres, job completion log instead of accounting, one (declared) GPU."""
    return "\n".join(
        [
            "ClusterName=proof",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={state / 'ctld'}",
            f"SlurmdSpoolDir={state / 'slurmd'}",
            f"SlurmctldPidFile={state / 'slurmctld.pid'}",
            f"SlurmdPidFile={state / 'slurmd.pid'}",
            f"SlurmctldLogFile={state / 'slurmctld.log'}",
            f"SlurmdLogFile={state / 'slurmd.log'}",
            "MailProg=/bin/true",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={state / 'jobcomp.txt'}",
            "ReturnToService=2",
            # The node is taken as declared (memory and a GPU it may not have): jobs are small, and the GPU
            # job is only validated (sbatch --test-only), never started.
            "SlurmdParameters=config_overrides",
            "GresTypes=gpu",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=65536 Gres=gpu:1 State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def proof_profile(shipped: dict, partition: str) -> dict:
    """The shipped SLURM profile filled in as on a cluster without accounts, plus quick status checks."""
    profile = json.loads(json.dumps(shipped))

    def fill(resources: dict) -> dict:
        filled = {k: v for k, v in resources.items() if not (k == "slurm_account" and v in PLACEHOLDERS)}
        return {k: (partition if v in PLACEHOLDERS else v) for k, v in filled.items()}

    profile["default-resources"] = fill(profile.get("default-resources", {}))
    profile["set-resources"] = {rule: fill(res) for rule, res in profile.get("set-resources", {}).items()}
    # Without slurmdbd, `sacct` cannot answer the plugin's status queries; squeue keeps finished jobs for
    # MinJobAge (300 s by default). Check soon and keep the SLURM logs for the job-to-rule check.
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["slurm-keep-successful-logs"] = True
    return profile


def expected_gpu_request(profile: dict, gpus: int, threads: int, rule: str) -> dict[str, str]:
    """The sbatch options a GPU job of `rule` must get: GPUs and CPUs from config, the rest from profile."""
    resources = {**profile.get("default-resources", {}), **profile.get("set-resources", {}).get(rule, {})}
    return {
        "--gpus": str(gpus),
        "--cpus-per-gpu": str(-(-threads // gpus)),
        "--mem": str(resources["mem_mb"]),
        "-t": str(resources["runtime"]),
        "-p": str(resources["slurm_partition"]),
    }


def sbatch_options(args: list[str]) -> dict[str, str]:
    """sbatch's options as a mapping: `--opt=value` and `-o value` / `--opt value` pairs (last one wins)."""
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and "=" in arg:
            key, value = arg.split("=", 1)
            options[key] = value
        elif arg.startswith("-") and i + 1 < len(args) and not args[i + 1].startswith("-"):
            options[arg] = args[i + 1]
            i += 1
        elif arg.startswith("-"):
            options[arg] = ""
        i += 1
    return options


def request_problems(options: dict[str, str], expected: dict[str, str]) -> list[str]:
    """Options whose value differs from what was expected, as readable lines."""
    return [
        f"{key}: expected {value}, got {options.get(key, '(missing)')}"
        for key, value in expected.items()
        if options.get(key) != value
    ]


# ---------------------------------------------------------------- comparison of two runs


def artifacts(root: Path) -> list[Path]:
    """Relative paths of a run's artifacts: results/ (without logs and benchmarks) and resources/demo/."""
    found = []
    for base in (root / "results", root / "resources" / "demo"):
        for path in sorted(base.rglob("*")) if base.exists() else []:
            rel = path.relative_to(root)
            if path.is_file() and not SKIPPED_DIRS & set(rel.parts[1:2]):
                found.append(rel)
    return found


def without_timings(obj):
    """A JSON value with every key that holds a duration (`*_s`, `*_seconds`) removed, recursively."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if not TIMING.search(k)}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def sqlite_dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def file_difference(a: Path, b: Path) -> str | None:
    """Why two artifacts differ in content (durations ignored), or None when they agree."""
    if a.suffix == ".parquet":
        left, right = pd.read_parquet(a), pd.read_parquet(b)
        left = left.drop(columns=[c for c in left.columns if TIMING.search(c)])
        right = right.drop(columns=[c for c in right.columns if TIMING.search(c)])
        if list(left.columns) != list(right.columns) or len(left) != len(right):
            return f"columns or row counts differ ({left.shape} vs {right.shape})"
        for column in left.columns:
            if not left[column].equals(right[column]):
                return f"column {column!r} differs"
        return None
    if a.suffix == ".json":
        same = without_timings(json.loads(a.read_text())) == without_timings(json.loads(b.read_text()))
        return None if same else "JSON content differs"
    if a.suffix == ".sqlite":
        return None if sqlite_dump(a) == sqlite_dump(b) else "database content differs"
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def run_differences(a: Path, b: Path) -> list[str]:
    """Every difference between the artifacts of two runs of the same targets."""
    left, right = set(artifacts(a)), set(artifacts(b))
    problems = [f"{p}: only in {a}" for p in sorted(left - right)]
    problems += [f"{p}: only in {b}" for p in sorted(right - left)]
    for rel in sorted(left & right):
        why = file_difference(a / rel, b / rel)
        if why:
            problems.append(f"{rel}: {why}")
    return problems


# ---------------------------------------------------------------- processes


def command(*args: str, env: dict | None = None, timeout: float = 60, cwd: Path | None = None):
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_host() -> None:
    """Fail with the fix when this machine cannot host the proof cluster."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise UserError(
            f"SLURM or munge is not installed ({', '.join(missing)} not found). "
            "Fix: apt-get install -y --no-install-recommends slurm-wlm munge"
        )
    if os.geteuid() != 0:
        raise UserError("slurmd must run as root to launch jobs. Fix: run the proof as root (CI does).")
    for conf in (SYSTEM_CONF, CONF_DIR / "slurm.conf"):
        if conf.exists():
            raise UserError(
                f"{conf} exists: a SLURM is already configured on this machine and the proof's jobs would "
                "reach it. Fix: run the proof on a machine without a SLURM configuration (e.g. CI)."
            )


@dataclass
class Cluster:
    """A running one-node cluster: its state directory, environment for client commands, processes."""

    state: Path
    env: dict
    processes: list[subprocess.Popen] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def start(self, name: str, *args: str) -> None:
        log = open(self.state / f"{name}.out", "w")  # noqa: SIM115 (closed with the process)
        # A session of its own: a signal to the proof's process group (Ctrl-C, `timeout`) reaches the proof,
        # which cancels the jobs before it stops the daemons, and not the daemons themselves.
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        self.processes.append(proc)

    def logs(self) -> str:
        parts = []
        for path in sorted(self.state.glob("*.log")) + sorted(self.state.glob("*.out")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)


def wait_until(predicate, timeout: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise ProofError(f"{what} within {timeout:.0f} s\n{cluster.logs()}")


def node_state(env: dict) -> str:
    """The node's state as sinfo reports it (idle, allocated, completing, ...; empty when unreachable)."""
    done = command("sinfo", "-h", "-N", "-o", "%T", env=env, timeout=10)
    return done.stdout.strip() if done.returncode == 0 else ""


def cancel_jobs(cluster: Cluster) -> None:
    """Cancel every job of the cluster and wait until the node has cleaned up after them (at most 30 s)."""
    done = command("scancel", "--user", getpass.getuser(), env=cluster.env, timeout=20)
    if done.returncode != 0:
        print(f"warning: scancel: {done.stderr.strip()}", file=sys.stderr)
    try:
        wait_until(
            lambda: node_state(cluster.env) == "idle", 30, "the node was still busy after scancel", cluster
        )
    except ProofError as err:
        print(f"warning: {err}", file=sys.stderr)


@contextmanager
def one_node_cluster(state: Path) -> Iterator[Cluster]:
    """munged, slurmctld and slurmd on loopback; stopped and their files removed on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["SLURM_CONF"] = str(CONF_DIR / "slurm.conf")
    cluster = Cluster(state=state, env=env)
    created_dirs = [d for d in (CONF_DIR.parent, CONF_DIR) if not d.exists()]
    try:
        munge = state / "munge"
        munge.mkdir(mode=0o711)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = munge / "munge.socket"
        cluster.start(
            "munged",
            "munged",
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        wait_until(sock.exists, 20, "munged did not open its socket", cluster)
        for sub in ("ctld", "slurmd"):
            (state / sub).mkdir()
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        conf = CONF_DIR / "slurm.conf"
        cluster.written += [conf, CONF_DIR / "gres.conf"]
        host = socket.gethostname().split(".")[0]
        cpus = max(os.cpu_count() or 1, 2)
        conf.write_text(slurm_conf(host, state, free_port(), free_port(), sock, cpus))
        (CONF_DIR / "gres.conf").write_text("Name=gpu File=/dev/null\n")
        cluster.start("slurmctld", "slurmctld", "-D", "-f", str(conf))
        cluster.start("slurmd", "slurmd", "-D", "-f", str(conf))
        wait_until(lambda: node_state(env) == "idle", 60, "the node did not become idle", cluster)
        yield cluster
    finally:
        if len(cluster.processes) == 3:
            cancel_jobs(cluster)
        for proc in reversed(cluster.processes):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for path in cluster.written:
            path.unlink(missing_ok=True)
        for d in reversed(created_dirs):
            if d.exists() and not any(d.iterdir()):
                d.rmdir()


# ---------------------------------------------------------------- the proof


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def snakemake(workdir: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", *args]
    return command(*cmd, env=env, timeout=SNAKEMAKE_TIMEOUT_S, cwd=workdir)


def submitted_jobs(output: str) -> tuple[str, dict[str, str]]:
    """The plugin's run id (the SLURM job name) and {SLURM job id: Snakemake job id} from its log."""
    run_id = re.search(r"SLURM run ID: (\S+)", output)
    jobs = dict(
        (slurm, smk)
        for smk, slurm in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output)
    )
    return (run_id.group(1) if run_id else ""), jobs


def job_rules(workdir: Path) -> dict[str, str]:
    """{SLURM job id: rule} from the plugin's log directory (.snakemake/slurm_logs/rule_NAME/.../ID.log)."""
    found = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        rule_dir = next(
            p for p in log.relative_to(workdir / ".snakemake" / "slurm_logs").parts if p.startswith("rule_")
        )
        found[log.stem] = rule_dir.removeprefix("rule_")
    return found


def completed_in_sacct(env: dict) -> dict[str, dict[str, str]]:
    """Jobs in the cluster's job completion log, read through `sacct --completion`."""
    fields = ["JobID", "JobName", "State", "Partition", "NodeList"]
    done = command(
        "sacct", "--completion", "-X", "--parsable2", "--noheader", f"--format={','.join(fields)}", env=env
    )
    if done.returncode != 0:
        raise ProofError(f"sacct --completion failed: {done.stderr.strip()}")
    rows = [
        dict(zip(fields, line.split("|"), strict=False)) for line in done.stdout.splitlines() if line.strip()
    ]
    return {row["JobID"]: row for row in rows}


def check_slurm_run(workdir: Path, cluster: Cluster, output: str) -> dict[str, str]:
    """Every job went through the scheduler: submitted, completed on the node, one per expected rule."""
    run_id, jobs = submitted_jobs(output)
    if not run_id or not jobs:
        raise ProofError(f"Snakemake submitted no SLURM job:\n{output[-3000:]}")
    records = completed_in_sacct(cluster.env)
    rules = job_rules(workdir)
    problems = []
    for job_id in jobs:
        row = records.get(job_id)
        if row is None:
            problems.append(f"SLURM job {job_id} is not in sacct's completion log")
        elif (row["JobName"], row["State"], row["Partition"]) != (run_id, "COMPLETED", PARTITION):
            problems.append(f"SLURM job {job_id}: {row}")
    ran = {rules.get(job_id) for job_id in jobs}
    if ran != EXPECTED_RULES:
        problems.append(
            f"rules run through SLURM: {sorted(map(str, ran))}, expected {sorted(EXPECTED_RULES)}"
        )
    if problems:
        raise ProofError("\n".join(problems))
    return {job_id: rules[job_id] for job_id in jobs}


SHIM = """#!{python}
import json, subprocess, sys
done = subprocess.run([{sbatch!r}, "--test-only", *sys.argv[1:]], capture_output=True, text=True)
record = {{"args": sys.argv[1:], "rc": done.returncode, "output": done.stdout + done.stderr}}
open({record!r}, "w").write(json.dumps(record))
sys.exit("slurm proof: GPU job validated with sbatch --test-only, not submitted")
"""


def write_shim(directory: Path, real_sbatch: str, record: Path) -> None:
    """An `sbatch` that records its arguments and validates them with the real `sbatch --test-only`."""
    directory.mkdir()
    shim = directory / "sbatch"
    shim.write_text(SHIM.format(python=sys.executable, sbatch=real_sbatch, record=str(record)))
    shim.chmod(0o755)


def check_gpu_request(workdir: Path, cluster: Cluster, profile: dict, profile_dir: Path) -> dict[str, str]:
    """A GPU rollout shard's sbatch call carries the GPU request, and SLURM accepts it (--test-only)."""
    gpus, threads = 1, 2
    # The sbatch shim refuses the job, so the model is never loaded; the workflow only checks, before any job,
    # that model.path is a Hugging Face directory (it holds config.json).
    (workdir / "gpu_check_model").mkdir()
    (workdir / "gpu_check_model" / "config.json").write_text('{"model_type": "llama"}')
    overlay = workdir / "gpu_check.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "model": {"path": "gpu_check_model"},
                "rollout": {"backend": "vllm", "gpus": gpus, "threads": threads},
            }
        )
    )
    record = cluster.state / "gpu_sbatch.json"
    write_shim(cluster.state / "shim", shutil.which("sbatch") or "sbatch", record)
    env = {**cluster.env, "PATH": f"{cluster.state / 'shim'}{os.pathsep}{cluster.env['PATH']}"}
    args = ["--profile", str(profile_dir), "--configfile", str(overlay), "--retries", "0", GPU_TARGET]
    done = snakemake(workdir, env, *args)
    if not record.exists():
        raise ProofError(
            f"Snakemake did not call sbatch for {GPU_RULE}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    call = json.loads(record.read_text())
    options = sbatch_options(call["args"])
    problems = request_problems(options, expected_gpu_request(profile, gpus, threads, GPU_RULE))
    if call["rc"] != 0 or "to start at" not in call["output"]:
        problems.append(f"sbatch --test-only refused the GPU job: {call['output'].strip()}")
    if problems:
        raise ProofError(f"GPU request of {GPU_RULE}: " + "; ".join(problems) + f"\nsbatch {call['args']}")
    return {k: options[k] for k in ("--gpus", "--cpus-per-gpu", "--mem", "-t", "-p")}


def proof_model(root: Path) -> Path:
    """The real default model: the repository's converted copy, else converted now from its pinned wheel."""
    from workflow_scripts.core.packaged import build_packaged_model, read_source

    if DEFAULT_MODEL.is_dir() and read_source(DEFAULT_MODEL):
        return DEFAULT_MODEL
    return build_packaged_model("smollm2-135m-instruct", root / "model" / "smollm2-135m-instruct")


def slurm_job_ids(env: dict) -> list[str]:
    """Ids of the jobs in the queue (pending, running or requeued)."""
    done = command("squeue", "-h", "-o", "%i", env=env, timeout=10)
    return done.stdout.split() if done.returncode == 0 else []


def job_restarts(job_id: str, env: dict) -> int:
    """How many times SLURM has started job `job_id` again (scontrol's Restarts)."""
    done = command("scontrol", "show", "job", job_id, env=env, timeout=10)
    match = re.search(r"Restarts=(\d+)", done.stdout)
    return int(match.group(1)) if match else -1


def check_requeued_training(workdir: Path, cluster: Cluster, profile_dir: Path, model: Path) -> dict:
    """A training job SLURM requeues after its first checkpoint resumes there and ends with the adapter."""
    overlay = workdir / "requeue.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "model": {"path": str(model)},
                "runs": {"train_mining": {"limit": 8}},
                "training": {"checkpoint_steps": 1, "sft": {"max_steps": 12, "per_device_batch_size": 2}},
            }
        )
    )
    # Targets go before --configfile, which takes every word after it as a config file.
    config = ["--configfile", str(overlay)]
    done = snakemake(workdir, cluster.env, *REQUEUE_INPUTS, "--cores", "2", *config)
    if done.returncode != 0:
        raise ProofError(f"the training job's inputs could not be made locally:\n{done.stderr[-3000:]}")
    output = workdir / "requeue_snakemake.out"
    checkpoints = checkpoint_dir(workdir / REQUEUE_TARGET)
    with open(output, "w") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "snakemake", REQUEUE_TARGET, "--profile", str(profile_dir), *config],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=cluster.env,
            cwd=workdir,
        )
        try:
            wait_until(
                lambda: (
                    run.poll() is not None or (checkpoints.is_dir() and complete_checkpoints(checkpoints))
                ),
                SNAKEMAKE_TIMEOUT_S,
                "the training job wrote no checkpoint",
                cluster,
            )
            jobs = slurm_job_ids(cluster.env)
            if run.poll() is not None or len(jobs) != 1:
                raise ProofError(
                    f"no single training job to requeue (queue: {jobs}):\n{output.read_text()[-3000:]}"
                )
            job_id = jobs[0]
            first = complete_checkpoints(checkpoints)[0].name
            done = command("scontrol", "requeue", job_id, env=cluster.env, timeout=20)
            if done.returncode != 0:
                raise ProofError(f"scontrol requeue {job_id} failed: {done.stderr.strip()}")
            run.wait(timeout=SNAKEMAKE_TIMEOUT_S)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    text = output.read_text()
    if run.returncode != 0:
        raise ProofError(
            f"snakemake --profile (SLURM) failed after the requeue:\n{text[-4000:]}\n{cluster.logs()}"
        )
    log = (workdir / REQUEUE_LOG).read_text()
    resumed = re.search(r"resuming from \S+checkpoint-(\d+) \(step (\d+)\)", log)
    problems = []
    if job_restarts(job_id, cluster.env) < 1:
        problems.append(f"SLURM did not start job {job_id} again (scontrol show job: no restart)")
    if not resumed:
        problems.append(f"the requeued job did not resume from a checkpoint; its log:\n{log[-2000:]}")
    if not (workdir / REQUEUE_TARGET / "adapter_config.json").is_file():
        problems.append(f"no adapter at {REQUEUE_TARGET} after the requeued job")
    if problems:
        raise ProofError("\n".join(problems))
    return {"job": job_id, "requeued_after": first, "resumed_at_step": int(resumed.group(2))}


def prove(keep: bool) -> None:
    check_host()
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="slurm-proof-"))
    try:
        state = root / "cluster"
        state.mkdir()
        slurm_dir = copy_workflow(root / "slurm_run")
        local_dir = copy_workflow(root / "local_run")
        shipped = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
        profile = proof_profile(shipped, PARTITION)
        profile_dir = slurm_dir / "profiles" / "proof"
        profile_dir.mkdir()
        (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
        with one_node_cluster(state) as cluster:
            print(f"cluster up after {time.monotonic() - started:.1f} s", flush=True)
            t0 = time.monotonic()
            done = snakemake(slurm_dir, cluster.env, "--profile", str(profile_dir), *TARGETS)
            if done.returncode != 0:
                raise ProofError(
                    f"snakemake --profile (SLURM) failed:\n{done.stderr[-4000:]}\n{cluster.logs()}"
                )
            jobs = check_slurm_run(slurm_dir, cluster, done.stdout + done.stderr)
            print(
                f"SLURM run: {len(jobs)} jobs in {time.monotonic() - t0:.1f} s, all COMPLETED in sacct: "
                + ", ".join(f"{j}={r}" for j, r in sorted(jobs.items(), key=lambda x: int(x[0]))),
                flush=True,
            )
            t0 = time.monotonic()
            local_env = {**cluster.env}
            done = snakemake(local_dir, local_env, "--profile", "profiles/local", "--cores", "2", *TARGETS)
            if done.returncode != 0:
                raise ProofError(f"snakemake --profile profiles/local failed:\n{done.stderr[-4000:]}")
            problems = run_differences(slurm_dir, local_dir)
            if problems:
                raise ProofError("SLURM and local runs differ:\n" + "\n".join(problems))
            print(
                f"local run in {time.monotonic() - t0:.1f} s; {len(artifacts(slurm_dir))} artifacts equal",
                flush=True,
            )
            request = check_gpu_request(slurm_dir, cluster, profile, profile_dir)
            print(
                f"GPU job {GPU_RULE}: sbatch "
                + " ".join(f"{k} {v}" for k, v in request.items())
                + " (accepted by sbatch --test-only)",
                flush=True,
            )
            t0 = time.monotonic()
            requeue = check_requeued_training(slurm_dir, cluster, profile_dir, proof_model(root))
            print(
                f"training job {requeue['job']} requeued after {requeue['requeued_after']}, resumed at step "
                f"{requeue['resumed_at_step']} and ended with the adapter, in {time.monotonic() - t0:.1f} s",
                flush=True,
            )
        print(f"SLURM proof passed in {time.monotonic() - started:.1f} s", flush=True)
    except ProofError as err:
        print(f"SLURM proof FAILED: {err}", file=sys.stderr)
        sys.exit(1)
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (runs, logs)")
    args = parser.parse_args()
    # SIGTERM (a CI timeout, pytest's) stops the cluster too: turn it into an exception that unwinds.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("SLURM proof: terminated"))
    prove(args.keep)


if __name__ == "__main__":
    run_cli(main)
