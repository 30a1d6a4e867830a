"""Medians, ratios and targets of a bench run; latest.json, latest.md and README's table."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Above this, raw Celery's own start latency shows the machine could not keep the rate.
OVERLOADED_MS = 20.0
BEGIN = "<!-- bench:begin (bench/run.py rewrites this table) -->"
END = "<!-- bench:end -->"


def header(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import celery
    import kombu

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "nproc": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0],
            "celery": celery.__version__,
            "kombu": kombu.__version__,
        },
        "git": git_revision(root),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def git_revision(root: Path) -> str:
    def git(*a: str) -> str:
        proc = subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [
        f for f in git("diff", "--name-only", "HEAD").splitlines() if not f.startswith("bench/")
    ]
    return f"{head} + {len(dirty)} uncommitted file(s) outside bench/" if dirty else head


# -- aggregation -----------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if isinstance(v, int | float)]
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def paired(
    rounds: list[dict[str, Any]],
    key_a: str,
    side_a: str,
    side_b: str,
    key_b: str,
    field: str = "side",
) -> list[float]:
    """Per round: (side_b's key_b) / (side_a's key_a)."""
    out = []
    for r in sorted({x["round"] for x in rounds}):
        a = next((x for x in rounds if x["round"] == r and x[field] == side_a), None)
        b = next((x for x in rounds if x["round"] == r and x[field] == side_b), None)
        if a and b and a.get(key_a) and b.get(key_b) is not None:
            out.append(b[key_b] / a[key_a])
    return out


def side(rounds: list[dict[str, Any]], name: str, key: str, field: str = "side") -> list[float]:
    return [x[key] for x in rounds if x[field] == name and x.get(key) is not None]


# (label, raw key, taskledger key, target test on the median ratio / value, target text)
Target = Callable[[float, float | None], bool]
ROUND_ROWS: list[tuple[str, str, str, str, Target | None, str]] = [
    ("drain /s", "drain_per_s", "drain_per_s", "ratio", lambda r, _: r >= 0.8, "≥ 0.8x raw"),
    (
        ".delay() loop /s",
        "delay_per_s",
        "delay_per_s",
        "ratio",
        lambda r, _: r >= 0.5,
        "≥ 0.5x raw",
    ),
    (
        "batch enqueue /s (vs raw .delay loop)",
        "delay_per_s",
        "batch_per_s",
        "ratio",
        lambda r, _: r >= 10,
        "≥ 10x raw .delay",
    ),
    (
        "enqueue-to-start p50 ms",
        "latency_p50_ms",
        "latency_p50_ms",
        "ratio",
        lambda r, _: r <= 2,
        "≤ 2x raw",
    ),
    (
        "enqueue-to-start p99 ms",
        "latency_p99_ms",
        "latency_p99_ms",
        "value",
        lambda _, v: v is not None and v <= 10,
        "≤ 10 ms",
    ),
    ("worker CPU ms/task", "worker_cpu_ms_per_task", "worker_cpu_ms_per_task", "ratio", None, ""),
    (
        "consumer CPU ms/task",
        "consumer_cpu_ms_per_task",
        "consumer_cpu_ms_per_task",
        "ratio",
        None,
        "",
    ),
    (
        "Redis commands/task",
        "redis_commands_per_task",
        "redis_commands_per_task",
        "ratio",
        None,
        "",
    ),
]


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: raw and taskledger medians, the ratio's median and min-max."""
    rows: list[dict[str, Any]] = []
    rounds = results.get("rounds") or []
    for label, raw_key, tl_key, kind, test, target in ROUND_ROWS:
        if not rounds:
            break
        raw, tl = spread(side(rounds, "raw", raw_key)), spread(side(rounds, "taskledger", tl_key))
        ratio = spread(paired(rounds, raw_key, "raw", "taskledger", tl_key))
        value = tl["median"] if tl else None
        met = None
        if test and ratio:
            met = test(ratio["median"], value) if kind == "ratio" else test(0, value)
        if raw_key.startswith("latency") and raw and raw["median"] > OVERLOADED_MS:
            # raw Celery itself fell behind the probe rate: the machine, not a result
            met, target = None, f"{target} (not judged: raw p50 > {OVERLOADED_MS} ms, overloaded)"
        rows.append(
            {
                "figure": label,
                "raw": raw,
                "taskledger": tl,
                "ratio": ratio,
                "target": target,
                "met": met,
            }
        )
    tl_only = [(k, v) for k, v in _single_rows(results)]
    for label, (value, target, met) in tl_only:
        rows.append(
            {
                "figure": label,
                "raw": None,
                "taskledger": value,
                "ratio": None,
                "target": target,
                "met": met,
            }
        )
    return rows


def _single_rows(results: dict[str, Any]) -> list[tuple[str, tuple[Any, str, bool | None]]]:
    out: list[tuple[str, tuple[Any, str, bool | None]]] = []
    ext = results.get("external")
    if ext:
        r = spread(paired(ext, "drain_per_s", "external", "embedded", "drain_per_s", "transport"))
        if r:
            out.append(("embedded / external drain (ratio)", (r, "≥ 0.8", r["median"] >= 0.8)))
    f = results.get("fairness")
    if f:
        limit = f["a_task_ms"] + 25
        out.append(
            (
                f"fairness: B's start p99 ms behind A's {f['a_tasks']:,}",
                (f["b_p99_ms"], f"≤ {limit:.0f} ms", f["b_p99_ms"] <= limit),
            )
        )
    b = results.get("bulk_cancel")
    if b:
        out.append(
            (
                f"bulk cancel of {b['n']:,} queued, s",
                (b["cancel_s"], "< 0.2 s", b["cancel_s"] < 0.2),
            )
        )
        out.append(
            ("started after the bulk cancel", (b["started_after"], "0", b["started_after"] == 0))
        )
    c = results.get("cancel_signal")
    if c:
        out.append((f"cancel-to-signal p50 ms (n={c['n']})", (c["p50_ms"], "", None)))
        out.append(("cancel-to-signal p99 ms", (c["p99_ms"], "< 15 ms", c["p99_ms"] < 15)))
    rt = results.get("retry")
    if rt:
        out.append((f"retry punctuality p50 s (n={rt['n']})", (rt["p50_s"], "", None)))
        out.append(("retry punctuality p99 s", (rt["p99_s"], "< 1 s", rt["p99_s"] < 1)))
    rss = results.get("rss")
    if rss:
        out.append(
            (
                f"worker RSS growth % over {rss['n']:,} tasks",
                (rss["growth_pct"], "< 10 %", rss["growth_pct"] < 10),
            )
        )
    ld = results.get("load")
    if ld:
        out.append(
            (
                f"load: makespan s, {ld['tasks']:,} tasks from {ld['sessions']} sessions",
                (ld["makespan_s"], "", None),
            )
        )
        out.append(
            (
                "load: per-session progress at half time, max/min",
                (ld["progress_max_over_min"], "", None),
            )
        )
        out.append(("load: Postgres CPU ms/task", (ld["postgres_cpu_ms_per_task"], "", None)))
        out.append(("load: Postgres transactions/task", (ld["pg_commits_per_task"], "", None)))
    au = results.get("autoscale")
    if au:
        out.append(
            (
                f"autoscale 8,2: pool size over time ({au['tasks']:,} tasks)",
                (au["pool_sizes_compact"], "grows and shrinks", au["grew_and_shrank"]),
            )
        )
    return out


# -- output ----------------------------------------------------------------------------------


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, dict) and "median" in v:
        if v["min"] == v["max"]:
            return fmt(v["median"])
        return f"{fmt(v['median'])} ({fmt(v['min'])}-{fmt(v['max'])})"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}" if abs(v) >= 1 else f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    a = results["args"]
    lines = [
        f"Run {results['date']} at {results['git']}: {m['nproc']} cores, load average at start "
        f"{m['load_average_at_start']}, Python {m['python']}, Celery {m['celery']}, kombu "
        f"{m['kombu']}. {a['rounds']} interleaved rounds per side (raw, taskledger, raw, …), "
        f"N = {a['n']:,} per drain, one prefork worker with 2 processes, acks_late, "
        f"prefetch 1, on the bench's own PostgreSQL and Redis (unix sockets).",
        "",
        "| figure | raw Celery | taskledger | ratio: median (min-max) | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in results["summary"]:
        met = {True: "met", False: "**not met**", None: ""}[row["met"]]
        lines.append(
            f"| {row['figure']} | {fmt(row['raw'])} | {fmt(row['taskledger'])} | "
            f"{fmt(row['ratio'])} | {row['target']} | {met} |"
        )
    lines.append("")
    return "\n".join(lines)


def finish(results: dict[str, Any], args: argparse.Namespace, root: Path) -> None:
    results["summary"] = summarise(results)
    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(results)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "latest.md").write_text(md)
    print(md)
    if not args.no_readme:
        rewrite_readme(root / "README.md", md)


def rewrite_readme(readme: Path, md: str) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"README has no {BEGIN} … {END} markers; table not written", file=sys.stderr)
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{md}{END}{tail}")
