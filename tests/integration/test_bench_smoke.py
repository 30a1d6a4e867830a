"""`make bench` keeps working: bench/run.py with tiny sizes, end to end.

It starts its own PostgreSQL and Redis (never the machine's), runs one raw
Celery round and one taskledger round plus two taskledger-only scenarios, and
must leave no server or worker behind. The figures are printed, not asserted:
speed is measured by the real run, not by this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _celery_processes_under(folder: str) -> list[str]:
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/environ"):
        try:
            if folder.encode() in cmdline.read_bytes():
                out.append(cmdline.parent.name)
        except OSError:
            continue
    return out


def test_bench_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "bench/run.py", "--rounds", "1", "--n", "100", "--delay-n", "20",
        "--seconds", "1", "--scale", "0.01", "--only", "rounds,bulk_cancel,cancel_signal",
        "--no-readme", "--results", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    sides = [r["side"] for r in results["rounds"]]
    assert sides == ["raw", "taskledger"]
    raw, ledger = results["rounds"]
    assert raw["drain_per_s"] > 0 and ledger["drain_per_s"] > 0
    # the durable drain really ran with its full audit trail
    assert ledger["verification"]["ok"], ledger["verification"]
    assert ledger["verification"]["task_completed"] == 100
    assert results["bulk_cancel"]["started_after"] == 0
    assert results["cancel_signal"]["n"] == 5
    figures = {row["figure"] for row in results["summary"]}
    assert {"drain /s", ".delay() loop /s", "enqueue-to-start p99 ms"} <= figures
    assert "| drain /s |" in (tmp_path / "latest.md").read_text()

    # its servers' folder is gone and nothing it started still runs
    folder = next(line for line in proc.stderr.splitlines() if "tl-bench-" in line).split()[-1]
    assert not Path(folder).exists()
    assert _celery_processes_under(folder) == []
