"""Where a durable no-op's time goes: py-spy on the drain's consumer and pool processes.

    .venv/bin/python bench/profile.py [--n 6000] [--seconds 6]

Starts the bench's own servers, enqueues N no-ops, starts one worker (prefork, 2
processes) on the full queue, and samples the main process and each pool child
with ``py-spy record --format raw`` while it drains. Prints, per process kind,
the share of samples inside each function (inclusive) and at the top of the
stack (self). Needs ``py-spy`` (``pip install py-spy``; root or ptrace rights).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.procs import children, stop_all  # noqa: E402
from bench.run import environment, migrate  # noqa: E402
from bench.servers import BenchServers  # noqa: E402

DRIVER = """
import json, sys, time
from bench.rounds import fresh_ledger, enqueue_phase, ledger_worker, QUEUE
fresh_ledger()
enqueue_phase(int(sys.argv[1]), 1000, 0)
w = ledger_worker("profile-worker", queues=QUEUE)
print(json.dumps({"pid": w.popen.pid}), flush=True)
time.sleep(float(sys.argv[2]) + 20)
w.stop()
"""


def summarise(raw: Path, top: int) -> dict[str, list[tuple[str, float]]]:
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")"
                  for f in stack.split(";")]  # fmt: skip
        for frame in set(frames):
            inclusive[frame] += n
        self_time[frames[-1]] += n
    share = lambda c: [(k, round(v * 100 / total, 1)) for k, v in c.most_common(top)]  # noqa: E731
    return {"samples": [("total", total)], "inclusive_pct": share(inclusive),
            "self_pct": share(self_time)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    servers = BenchServers()
    out = Path(servers.folder) / "logs"
    try:
        servers.start()
        out.mkdir(parents=True, exist_ok=True)
        env = environment(servers, tcp=False, logs=out)
        servers.recreate_database()
        migrate(env)
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(args.n), str(args.seconds)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert driver.stdout is not None
        pid = json.loads(driver.stdout.readline())["pid"]
        while len(children(pid)) < 2:
            time.sleep(0.1)
        time.sleep(1.0)  # the drain is under way
        targets = {"consumer": pid, **{f"child{i}": c for i, c in enumerate(children(pid))}}
        spies = {
            name: subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(p),
                    "-d",
                    str(int(args.seconds)),
                    "-r",
                    "200",
                    "--format",
                    "raw",
                    "-o",
                    str(out / f"{name}.txt"),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, p in targets.items()
        }
        for s in spies.values():
            s.wait(args.seconds + 60)
        driver.wait(120)
        report = {name: summarise(out / f"{name}.txt", args.top) for name in targets}
        keep = ROOT / "bench" / "results" / "profile.json"
        keep.write_text(json.dumps(report, indent=1) + "\n")
        for name, r in report.items():
            print(f"\n== {name}: {r['samples'][0][1]} samples; self % (top) ==")
            for frame, pct in r["self_pct"][:15]:
                print(f"  {pct:5.1f}  {frame}")
            print(f"-- {name}: inclusive % --")
            for frame, pct in r["inclusive_pct"]:
                print(f"  {pct:5.1f}  {frame}")
    finally:
        stop_all()
        servers.stop()


if __name__ == "__main__":
    main()
