"""Which scenarios run, in what order, with what sizes (``bench/run.py`` calls ``run_groups``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.servers import BenchServers

Runner = Callable[[str, dict[str, Any], dict[str, str]], dict[str, Any]]


def scaled(value: int, scale: float, least: int = 10) -> int:
    return max(least, int(value * scale))


def run_groups(
    groups: list[str],
    args: argparse.Namespace,
    servers: BenchServers,
    env: dict[str, str],
    results: dict[str, Any],
    run: Runner,
    environment: Callable[..., dict[str, str]],
    say: Callable[[str], None],
) -> None:
    s = args.scale
    core = {"n": args.n, "chunk": args.chunk, "delay_n": args.delay_n}
    if "rounds" in groups:
        results["rounds"] = []
        for i in range(args.rounds):
            for side in ("raw", "taskledger"):  # A B A B ...: load drifts hit both alike
                say(f"round {i + 1}/{args.rounds}: {side} (N={args.n:,})")
                res = run(side, {**core, "rate": args.rate, "seconds": args.seconds}, env)
                results["rounds"].append({"round": i + 1, "side": side, **res})
                say(f"  {_short(res)}")
    if "external" in groups:
        tcp_env = environment(servers, tcp=True, logs=Path(env["BENCH_LOGS"]))
        results["external"] = []
        for i in range(args.rounds):
            for transport, e in (("embedded", env), ("external", tcp_env)):
                say(f"embedded vs external {i + 1}/{args.rounds}: {transport}")
                res = run("taskledger", {**core, "delay_n": 0, "seconds": 0}, e)
                results["external"].append({"round": i + 1, "transport": transport, **res})
                say(f"  {_short(res)}")
    extra = {
        "fairness": {
            "a_tasks": scaled(5000, s),
            "a_seconds": 0.05,
            "b_every": 0.1,
            "b_seconds": max(3.0, 15 * s),
        },
        "bulk_cancel": {"n": scaled(5000, s)},
        "cancel_signal": {"n": scaled(50, s, least=5)},
        "retry": {"n": scaled(50, s, least=5)},
        "rss": {"n": scaled(args.soak, s, least=500), "warmup": scaled(2000, s, least=200)},
        "load": {"sessions": 10, "per_session": scaled(100, s, least=3), "task_s": 0.01},
        "autoscale": {
            "sessions": 20,
            "per_session": scaled(500, s, least=5),
            "task_s": 0.02,
            "keepalive": 3.0,
        },
    }
    for name, params in extra.items():
        if name in groups:
            say(f"{name}: {params}")
            results[name] = run(name, params, env)
            say(f"  {_short(results[name])}")


def _short(res: dict[str, Any]) -> str:
    keep = {k: v for k, v in res.items() if not isinstance(v, dict | list)}
    return ", ".join(f"{k}={v}" for k, v in keep.items())
