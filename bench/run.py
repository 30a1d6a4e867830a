"""taskledger against raw Celery, side by side: ``make bench`` (``.venv/bin/python bench/run.py``).

Starts its own PostgreSQL and Redis from the project's wheels (unix sockets, plus
127.0.0.1 TCP ports for the "external" comparison), runs raw Celery and taskledger
in interleaved rounds (raw, taskledger, raw, taskledger, ...) on those same servers,
then the taskledger-only scenarios and the load runs, prints the median ratio and
its min-max per figure, and writes bench/results/latest.json, latest.md and the
README's Benchmark table. Every server and process it started is stopped on exit,
Ctrl-C or failure. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.procs import kill_recorded_groups  # noqa: E402
from bench.servers import BENCH_DB, BenchServers  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ROUND_TIMEOUT_S = 900
BROKER_DB, RAW_DB, COUNTER_DB = 14, 15, 13


def environment(servers: BenchServers, *, tcp: bool, logs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(
        {
            "PYTHONPATH": path,
            "TASKLEDGER_DATABASE_URL": servers.database_url(tcp=tcp),
            "TASKLEDGER_BROKER_URL": servers.broker_url(BROKER_DB, tcp=tcp),
            "TASKLEDGER_IMPORTS": "bench.tasks",
            "TASKLEDGER_QUEUES": "taskledger,taskledger.bench-delay",
            "TASKLEDGER_COUNT_STATEMENTS": "true",
            "TASKLEDGER_HOME": str(servers.folder / "home"),
            "RAW_BROKER_URL": servers.broker_url(RAW_DB, tcp=tcp),
            "BENCH_COUNTER_URL": servers.redis_url(COUNTER_DB, tcp=tcp),
            "BENCH_ADMIN_URL": servers.database_url("postgres", tcp=tcp),
            "BENCH_DB_NAME": BENCH_DB,
            "BENCH_LOGS": str(logs),
            "BENCH_PGIDS": str(logs / "worker-groups.txt"),
            "BENCH_RAW_REDIS_URL": servers.redis_url(RAW_DB, tcp=tcp),
            "BENCH_REDIS_URL": servers.redis_url(BROKER_DB, tcp=tcp),
        }
    )
    return env


def run_scenario(name: str, params: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One scenario in a fresh process (settings and apps are read at import time)."""
    if name == "raw":
        env = dict(env, BENCH_REDIS_URL=env["BENCH_RAW_REDIS_URL"])
    cmd = [sys.executable, "-m", "bench.rounds", name, json.dumps(params)]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=ROUND_TIMEOUT_S)
    except BaseException:
        proc.terminate()  # it stops its workers on the way out (bench.procs.stop_all)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    if proc.returncode != 0:
        raise SystemExit(f"scenario {name} failed ({proc.returncode}):\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    return result


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def migrate(env: dict[str, str]) -> None:
    code = "from models.migrate import upgrade; upgrade()"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=300)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each side (default 3)")
    ap.add_argument("--n", type=int, default=3000, help="tasks drained per round (default 3000)")
    ap.add_argument("--delay-n", type=int, default=1000, help="taskledger .delay() loop length")
    ap.add_argument("--chunk", type=int, default=1000, help="tasks per enqueue_many call")
    ap.add_argument("--rate", type=float, default=200.0, help="latency probe rate /s")
    ap.add_argument("--seconds", type=float, default=10.0, help="latency probe duration")
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies the sizes of the other scenarios (0.05 for a smoke run)",
    )
    ap.add_argument(
        "--soak",
        type=int,
        default=20_000,
        help="tasks in the worker RSS soak (the issue's figure is 50000)",
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated scenario groups: "
        "rounds,fairness,bulk_cancel,cancel_signal,retry,rss,external,load,autoscale",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite latest.md and README from results/latest.json",
    )
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite README's table")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where latest.json/.md go")
    return ap.parse_args(argv)


GROUPS = (
    "rounds",
    "fairness",
    "bulk_cancel",
    "cancel_signal",
    "retry",
    "rss",
    "external",
    "load",
    "autoscale",
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.report_only:  # re-summarise a finished run (e.g. after a change to the targets)
        results: dict[str, Any] = json.loads((args.results / "latest.json").read_text())
        report.finish(results, args, ROOT)
        return results
    groups = [g for g in args.only.split(",") if g] or list(GROUPS)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise SystemExit(f"unknown scenario group(s): {', '.join(sorted(unknown))}")
    # Ctrl-C and SIGTERM unwind through the finally below (servers and workers stopped).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results = report.header(args, ROOT)
    servers = BenchServers()
    logs = servers.folder / "logs"
    try:
        say(f"starting the bench's own PostgreSQL and Redis in {servers.folder}")
        servers.start()
        logs.mkdir(parents=True, exist_ok=True)
        env = environment(servers, tcp=False, logs=logs)
        servers.recreate_database()
        migrate(env)
        from bench.plan import run_groups

        run_groups(groups, args, servers, env, results, run_scenario, environment, say)
    finally:
        kill_recorded_groups(logs / "worker-groups.txt")
        keep = RESULTS / "logs"
        if logs.exists():
            import shutil

            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(logs, keep, dirs_exist_ok=True)
        servers.stop()
    report.finish(results, args, ROOT)
    return results


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted: servers and workers stopped") from None
