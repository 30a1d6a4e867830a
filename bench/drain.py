"""Drain benchmark: taskledger's durable no-op tasks against raw Celery, in one invocation.

    .venv/bin/python bench/drain.py            # N=10000
    .venv/bin/python bench/drain.py --n 2000   # quick

Runs ``../shared/bench/raw_celery.py`` (Redis db 15) for the reference, then the same
drain with taskledger (Redis db 14, Postgres database ``taskledger_bench``, recreated on
each run), and prints taskledger's figures as ratios to raw Celery's. Results go to
``bench/results/latest.json`` and ``bench/results/latest.md``; see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCH = ROOT.parent / "shared" / "bench"
RAW_SCRIPT = SHARED_BENCH / "raw_celery.py"
RESULTS = ROOT / "bench" / "results"
WORKER_LOG = RESULTS / "worker.log.tmp"

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "taskledger_bench"
BENCH_DB_URL = f"postgresql://postgres@127.0.0.1:5432/{BENCH_DB}"
BROKER_URL = "redis://127.0.0.1:6379/14"
QUEUE = "taskledger"
# The .delay() loop publishes to a queue nobody consumes, so the drain sees exactly N tasks.
DELAY_QUEUE = "taskledger.bench-delay"
STATEMENTS_KEY = "taskledger:bench:statements"
COMMITS_KEY = "taskledger:bench:commits"
TASK_NAME = "bench.noop"
DRAIN_TIMEOUT_S = 600.0
POLL_INTERVAL_S = 0.02
# Backends flush their pg_stat counters when they exit; give them a moment after we close.
STATS_SETTLE_S = 1.0

console = Console(stderr=True)


@dataclass(frozen=True)
class Run:
    n: int
    chunk: int
    delay_n: int
    concurrency: int
    # Celery app module for the worker (-A) and the driver; another module may import
    # workers.app, tweak app.conf and re-export ``app`` to try a configuration change.
    app_module: str
    env: dict[str, str]


# -- environment ----------------------------------------------------------------------------


def configure_env() -> dict[str, str]:
    """Set TASKLEDGER_* for this process and return the worker's environment.

    Settings and the Celery app are read at import time, so this runs before any
    project import. Inherited TASKLEDGER_* variables are dropped: every run is configured
    the same way.
    """
    for key in [k for k in os.environ if k.startswith("TASKLEDGER_")]:
        del os.environ[key]
    os.environ.update(
        {
            "TASKLEDGER_DATABASE_URL": BENCH_DB_URL,
            "TASKLEDGER_BROKER_URL": BROKER_URL,
            "TASKLEDGER_IMPORTS": "bench.tasks",
            "TASKLEDGER_COUNT_STATEMENTS": "true",
        }
    )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)


# -- raw Celery reference -------------------------------------------------------------------


def run_raw(n: int, concurrency: int) -> dict[str, Any]:
    if not RAW_SCRIPT.is_file():
        raise SystemExit(
            f"raw Celery reference not found at {RAW_SCRIPT}; bench/drain.py expects the "
            "shared bench next to the repo (../shared/bench/raw_celery.py). "
            "Use --skip-raw to run taskledger alone."
        )
    cmd = [sys.executable, str(RAW_SCRIPT), "--n", str(n), "--concurrency", str(concurrency)]
    cmd += ["--pool", "prefork"]
    with console.status(f"raw Celery reference: {n:,} tasks, then 10 s of latency probes"):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"raw_celery.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# -- Postgres and Redis helpers -------------------------------------------------------------


def recreate_database() -> None:
    from models.db import recreate_database as recreate

    recreate(PG_ADMIN_URL, BENCH_DB)


def xact_commits(admin: psycopg.Connection[Any]) -> int:
    # admin is autocommit on the postgres database: each read is a fresh stats snapshot and
    # its own transactions are not counted against the bench database.
    row = admin.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (BENCH_DB,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def backend_pids(admin: psycopg.Connection[Any], exclude: int) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
        (BENCH_DB, exclude),
    ).fetchall()
    return [int(r[0]) for r in rows]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each pid still alive, from /proc (no psutil needed)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def process_tree(root: int) -> list[int]:
    """root and its direct children (the prefork pool processes)."""
    pids = [root]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == root:
            pids.append(int(stat.parent.name))
    return pids


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # A pid that appeared during the drain counts in full; one that vanished is lost (rare).
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


# -- the worker -----------------------------------------------------------------------------


def start_worker(run: Run) -> tuple[subprocess.Popen[bytes], Any]:
    cmd = [sys.executable, "-m", "celery", "-A", run.app_module, "worker", "-P", "prefork"]
    cmd += ["-c", str(run.concurrency), "-Q", QUEUE, "-l", "WARNING", "--without-gossip"]
    cmd += ["--without-mingle", "--without-heartbeat", "-n", f"bench{os.getpid()}@%h"]
    log = WORKER_LOG.open("wb")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=run.env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
    )
    return proc, log


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown, then SIGKILL of the group after 30 s.

    SIGTERM goes to the main process only: pool children reset SIGTERM to the default
    action, so signalling the whole group would kill them before they report their
    statement counts (worker_process_shutdown runs on the graceful exit path).
    """
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    # Whatever is left of the group (a stuck main process, orphaned children).
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# -- taskledger scenario --------------------------------------------------------------------


def chunks(n: int, size: int) -> Iterator[int]:
    while n > 0:
        yield min(n, size)
        n -= size


def enqueue_phase(run: Run) -> dict[str, Any]:
    """Batch enqueue N tasks, then time a .delay() loop; no worker is running."""
    from bench.tasks import noop
    from jobs import enqueue_many
    from models.db import dispose_engines

    app = importlib.import_module(run.app_module).app
    n, delay_n = run.n, run.delay_n
    call: tuple[str, tuple[()], dict[str, Any], dict[str, Any]] = (TASK_NAME, (), {}, {})
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    )
    with progress:
        bar = progress.add_task("enqueue (batch)", total=n)
        t0 = time.perf_counter()
        for size in chunks(n, run.chunk):
            enqueue_many(app, [call] * size)
            progress.advance(bar, size)
        batch_s = time.perf_counter() - t0

        bar = progress.add_task("enqueue (.delay loop)", total=delay_n)
        t0 = time.perf_counter()
        for i in range(delay_n):
            noop.apply_async(queue=DELAY_QUEUE)  # .delay() is apply_async(args, kwargs)
            if i % 100 == 99:
                progress.advance(bar, 100)
        delay_s = time.perf_counter() - t0
        progress.update(bar, completed=delay_n)

    # Close our pooled connections so their backends flush pg_stat before the baseline read.
    dispose_engines()
    return {
        "enqueue_per_s": round(n / batch_s),
        "enqueue_chunk": run.chunk,
        "delay_n": delay_n,
        "delay_per_s": round(delay_n / delay_s) if delay_n else None,
    }


def drain_phase(run: Run) -> dict[str, Any]:
    """Start the worker on the full queue; time first to last completion."""
    n = run.n
    r = redis.Redis.from_url(BROKER_URL)
    r.delete(STATEMENTS_KEY, COMMITS_KEY)
    out: dict[str, Any] = {}
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        time.sleep(STATS_SETTLE_S)
        commits_before = xact_commits(admin)
        worker, log = start_worker(run)
        try:
            # Plain psycopg, autocommit: one cheap transaction per poll, which we count.
            with psycopg.connect(BENCH_DB_URL, autocommit=True) as poller:
                poller_pid = poller.info.backend_pid
                first, last, cpu, polls = poll_until_drained(n, poller, admin, poller_pid, worker)
            polls += 1  # the poller backend's start-up transaction counts too
        finally:
            stop_worker(worker)
            log.close()
        time.sleep(STATS_SETTLE_S)
        pg_commits = xact_commits(admin) - commits_before - polls

    out["drain_per_s"] = round(n / (last - first)) if last > first else None
    out["drain_seconds"] = round(last - first, 3)
    out["worker_exit_code"] = worker.returncode
    statements, commits = r.get(STATEMENTS_KEY), r.get(COMMITS_KEY)
    if statements is None or commits is None:
        console.print("[yellow]worker children did not report statement counts[/]")
    out["statements_per_task"] = round(int(statements) / n, 2) if statements else None
    out["commits_per_task"] = round(int(commits) / n, 2) if commits else None
    out["pg_commits_per_task"] = round(pg_commits / n, 2)
    out["poller_transactions"] = polls
    out["worker_cpu_ms_per_task"] = round(cpu["worker_s"] * 1000 / n, 3)
    out["consumer_cpu_ms_per_task"] = round(cpu["consumer_s"] * 1000 / n, 3)
    out["postgres_cpu_ms_per_task"] = round(cpu["postgres_s"] * 1000 / n, 3)
    return out


def poll_until_drained(
    n: int,
    poller: psycopg.Connection[Any],
    admin: psycopg.Connection[Any],
    poller_pid: int,
    worker: subprocess.Popen[bytes],
) -> tuple[float, float, dict[str, float], int]:
    count = "SELECT count(*) FROM tasks WHERE state = 'completed'"
    polls = 0
    first: float | None = None
    worker_cpu: dict[int, float] = {}
    pg_cpu: dict[int, float] = {}
    progress = Progress(
        TextColumn("drain"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        bar = progress.add_task("drain", total=n, rate="")
        t0 = time.perf_counter()
        while True:
            row = poller.execute(count).fetchone()
            polls += 1
            now = time.perf_counter()
            done = int(row[0]) if row else 0
            if done and first is None:
                first = now
                # CPU baseline at the first completion: start-up cost stays out of per-task CPU.
                worker_cpu = cpu_seconds(process_tree(worker.pid))
                pg_cpu = cpu_seconds(backend_pids(admin, poller_pid))
            rate = f"{done / (now - first):,.0f}/s" if first and now > first else ""
            progress.update(bar, completed=done, rate=rate)
            if done >= n:
                assert first is not None
                worker_end = cpu_seconds(process_tree(worker.pid))
                main_pid = worker.pid
                cpu = {
                    "worker_s": cpu_delta(worker_cpu, worker_end),
                    # The consumer (main process) alone: Celery's own per-message work.
                    "consumer_s": worker_end.get(main_pid, 0.0) - worker_cpu.get(main_pid, 0.0),
                    "postgres_s": cpu_delta(pg_cpu, cpu_seconds(backend_pids(admin, poller_pid))),
                }
                return first, now, cpu, polls
            if worker.poll() is not None:
                raise SystemExit(f"worker exited ({worker.returncode}); see {WORKER_LOG}")
            if now - t0 > DRAIN_TIMEOUT_S:
                raise SystemExit(f"drain timed out after {DRAIN_TIMEOUT_S:.0f} s: {done} of {n}")
            time.sleep(POLL_INTERVAL_S)


def verify(n: int) -> dict[str, Any]:
    """Every task completed exactly once, with its audit events."""
    with psycopg.connect(BENCH_DB_URL, autocommit=True) as conn:

        def scalar(sql: str) -> Any:
            row = conn.execute(sql, (QUEUE,)).fetchone()
            return row[0] if row else None

        completed = scalar("SELECT count(*) FROM tasks WHERE queue = %s AND state = 'completed'")
        total = scalar("SELECT count(*) FROM tasks WHERE queue = %s")
        attempts = scalar("SELECT coalesce(sum(attempts), 0) FROM tasks WHERE queue = %s")
        events = {
            kind: scalar(
                "SELECT count(*) FROM task_events e JOIN tasks t ON t.id = e.task_id "
                f"WHERE t.queue = %s AND e.event_type = '{kind}'"
            )
            for kind in ("task_started", "task_completed")
        }
        span = scalar(
            "SELECT extract(epoch FROM max(finished_at) - min(finished_at)) "
            "FROM tasks WHERE queue = %s"
        )
    checks = {
        "rows": total == n,
        "all_completed": completed == n,
        "one_attempt_each": attempts == n,
        "task_started_events": events["task_started"] == n,
        "task_completed_events": events["task_completed"] == n,
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "counts": {"rows": total, "completed": completed, "attempts": int(attempts), **events},
        # Cross-check of the polled drain rate, from the rows' own finished_at timestamps.
        "drain_per_s_from_finished_at": round(n / float(span)) if span else None,
    }


def run_taskledger(run: Run) -> dict[str, Any]:
    r = redis.Redis.from_url(BROKER_URL)
    r.flushdb()
    with console.status("recreating Postgres database and applying migrations"):
        recreate_database()
        from models.migrate import upgrade

        upgrade()
    out: dict[str, Any] = {"app_module": run.app_module}
    out.update(enqueue_phase(run))
    out.update(drain_phase(run))
    out["verification"] = verify(run.n)
    return out


# -- reporting ------------------------------------------------------------------------------


def git_revision() -> str:
    """HEAD, plus the modified tracked files outside bench/ (the worker runs the work tree)."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("diff", "--name-only", "HEAD").splitlines()
    dirty = [f for f in changed if not f.startswith("bench/")]
    return f"{head} + uncommitted {', '.join(dirty)}" if dirty else head


def ratio(ours: Any, theirs: Any) -> float | None:
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float) or not theirs:
        return None
    return round(ours / theirs, 2)


def rows(results: dict[str, Any]) -> list[tuple[str, Any, Any, float | None]]:
    """(label, raw, taskledger, ratio); ratios only for rates, where raw does the same work."""
    raw, tl = results["raw"] or {}, results["taskledger"]
    raw_enqueue = raw.get("enqueue_delay_per_s")
    no_sql = 0 if raw else None  # raw Celery issues no SQL at all
    table: list[tuple[str, Any, Any]] = [
        ("enqueue (batch) /s", raw_enqueue, tl["enqueue_per_s"]),
        ("enqueue (.delay loop) /s", raw_enqueue, tl["delay_per_s"]),
        ("drain /s", raw.get("drain_per_s"), tl["drain_per_s"]),
        ("SQL statements/task (worker)", no_sql, tl["statements_per_task"]),
        ("Postgres transactions/task", no_sql, tl["pg_commits_per_task"]),
        ("worker CPU ms/task", None, tl["worker_cpu_ms_per_task"]),
        ("consumer CPU ms/task (part of worker)", None, tl["consumer_cpu_ms_per_task"]),
        ("Postgres CPU ms/task", None, tl["postgres_cpu_ms_per_task"]),
    ]
    return [
        (label, r, ours, ratio(ours, r) if label.endswith("/s") else None)
        for label, r, ours in table
    ]


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def print_table(results: dict[str, Any]) -> None:
    title = f"drain of {results['n']:,} no-op tasks ({results['machine']}, {results['git']})"
    table = Table(title=title)
    table.add_column("")
    for col in ("raw Celery", "taskledger", "ratio (taskledger / raw)"):
        table.add_column(col, justify="right")
    for label, raw, ours, r in rows(results):
        table.add_row(label, fmt(raw), fmt(ours), fmt(r))
    out = Console()
    if not out.is_terminal:
        out = Console(width=110)  # rich's 80-column default for pipes wraps the table
    out.print(table)
    for line in notes(results):
        out.print(f"  {line}", highlight=False)


def notes(results: dict[str, Any]) -> list[str]:
    raw, tl = results["raw"] or {}, results["taskledger"]
    v = tl["verification"]
    out = [
        "Both enqueue rows compare to raw's plain `.delay()` loop (raw has no batch API).",
        f"taskledger `.delay()` loop timed over {tl['delay_n']:,} tasks; batch enqueue in "
        f"chunks of {tl['enqueue_chunk']:,} (one transaction each, then publish).",
        f"Drain from rows' finished_at: {fmt(v['drain_per_s_from_finished_at'])}/s. "
        f"Verification: {'ok' if v['ok'] else 'FAILED ' + json.dumps(v['checks'])} "
        f"({v['counts']['completed']:,} completed, {v['counts']['task_completed']:,} "
        "task_completed events).",
        "Postgres transactions/task: pg_stat_database xact_commit delta of the bench database, "
        "minus the poller's own.",
    ]
    if raw:
        out.append(
            f"Raw start latency at {raw.get('latency_rate_per_s')}/s: "
            f"p50 {raw.get('latency_p50_ms')} ms, p99 {raw.get('latency_p99_ms')} ms "
            "(not measured for taskledger)."
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Drain benchmark, {results['date']}",
        "",
        f"N = {results['n']:,} no-op tasks; {results['machine']}; load average at start "
        f"{results['load_average_at_start']}; one prefork worker with "
        f"{results['concurrency']} processes; Redis and Postgres on 127.0.0.1; "
        f"taskledger at {results['git']}, Celery app `{results['taskledger']['app_module']}`.",
        "",
        "| | raw Celery | taskledger | ratio (taskledger / raw) |",
        "|---|---:|---:|---:|",
    ]
    for label, raw, ours, r in rows(results):
        lines.append(f"| {label} | {fmt(raw)} | {fmt(ours)} | {fmt(r)} |")
    lines += ["", *(f"- {line}" for line in notes(results)), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="tasks to drain (default 10000)")
    ap.add_argument(
        "--concurrency", type=int, default=2, help="prefork processes, raw and taskledger alike"
    )
    ap.add_argument("--chunk", type=int, default=1000, help="tasks per enqueue_many call")
    ap.add_argument(
        "--delay-n", type=int, default=None, help="tasks in the .delay() loop (min(N, 2000))"
    )
    ap.add_argument(
        "--app",
        default="workers.app",
        help="Celery app module for the worker and the driver (to try a config change)",
    )
    ap.add_argument("--skip-raw", action="store_true", help="do not run the raw reference")
    args = ap.parse_args()
    if args.n < 1 or args.chunk < 1:
        ap.error("--n and --chunk must be positive")
    delay_n = min(args.n, 2000) if args.delay_n is None else args.delay_n

    env = configure_env()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "n": args.n,
        "concurrency": args.concurrency,
        "machine": f"{os.cpu_count()} cores",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "git": git_revision(),
    }
    results["raw"] = None if args.skip_raw else run_raw(args.n, args.concurrency)
    r = redis.Redis.from_url(BROKER_URL)
    try:
        run = Run(args.n, args.chunk, delay_n, args.concurrency, args.app, env)
        results["taskledger"] = run_taskledger(run)
    finally:
        r.flushdb()
    results["ratios"] = {label: value for label, _, _, value in rows(results) if value is not None}

    print_table(results)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(markdown(results))
    print(json.dumps(results))
    if not results["taskledger"]["verification"]["ok"]:
        raise SystemExit("verification FAILED: see the checks above")


if __name__ == "__main__":
    main()
