"""GET /metrics (prometheus-client).

Gauges are read at scrape time (tasks by state and session, queue depth per
queue, open circuit breakers, sweep durations). Counters and histograms count
what this API process saw on the event log since it started (api/feed.py), so
they are true Prometheus counters: they only go up, and reset on restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from api.feed import FeedEvent
from jobs import sweep_timing
from models import Task
from models.broker import redis_client
from models.db import transaction
from models.settings import get_settings

log = logging.getLogger("taskledger.api.metrics")
FINAL = ("completed", "failed", "cancelled", "skipped")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class LedgerCollector(Collector):
    """What the ledger and the broker say right now."""

    def collect(self) -> Iterator[Metric]:
        yield from self._tasks()
        yield from self._queues()
        yield from self._breakers()
        yield from self._sweeps()

    def _tasks(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "taskledger_tasks", "Tasks by state and session", labels=["state", "session"]
        )
        try:
            with transaction() as conn:
                rows = conn.execute(
                    select(Task.state, Task.session_id, func.count()).group_by(
                        Task.state, Task.session_id
                    )
                ).all()
            for state, session, n in rows:
                gauge.add_metric([str(state), session or ""], float(n))
        except Exception:
            log.warning("tasks gauge unavailable", exc_info=True)
        yield gauge

    def _queues(self) -> Iterator[Metric]:
        from workers.broker import waiting_messages

        gauge = GaugeMetricFamily(
            "taskledger_queue_depth", "Messages waiting in the broker, per queue", labels=["queue"]
        )
        try:
            settings = get_settings()
            with transaction() as conn:
                queues = set(conn.execute(select(Task.queue).distinct()).scalars())
            queues |= {settings.default_queue, settings.sweeps_queue}
            for queue, n in sorted(waiting_messages(settings, sorted(queues)).items()):
                gauge.add_metric([queue], float(n))
        except Exception:
            log.warning("queue depth unavailable", exc_info=True)
        yield gauge

    def _breakers(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("taskledger_circuit_breakers_open", "Open circuit breakers")
        try:
            from models.control import CircuitBreaker

            with transaction() as conn:
                n = conn.execute(
                    select(func.count()).where(CircuitBreaker.state == "open")
                ).scalar_one()
            gauge.add_metric([], float(n))
        except Exception:
            log.warning("circuit breaker gauge unavailable", exc_info=True)
        yield gauge

    def _sweeps(self) -> Iterator[Metric]:
        last = GaugeMetricFamily(
            "taskledger_sweep_last_duration_seconds",
            "Duration of each sweep's last run",
            labels=["sweep"],
        )
        total = GaugeMetricFamily(
            "taskledger_sweep_duration_seconds_sum",
            "Seconds spent in each sweep",
            labels=["sweep"],
        )
        runs = GaugeMetricFamily("taskledger_sweep_runs", "Runs of each sweep", labels=["sweep"])
        try:
            client = redis_client()
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(sweep_timing.LAST_KEY)
            pipe.hgetall(sweep_timing.SUM_KEY)
            pipe.hgetall(sweep_timing.COUNT_KEY)
            for family, values in zip((last, total, runs), pipe.execute(), strict=True):
                for name, value in sorted(values.items()):
                    family.add_metric([name.decode()], float(value))
        except Exception:
            log.warning("sweep durations unavailable", exc_info=True)
        yield last
        yield total
        yield runs


class EventMetrics:
    """Counters and histograms fed by the event tail."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.enqueued = Counter(
            "taskledger_tasks_enqueued", "Tasks created", ["name"], registry=registry
        )
        self.started = Counter(
            "taskledger_tasks_started", "Attempts started", ["name"], registry=registry
        )
        self.finished = Counter(
            "taskledger_tasks_finished",
            "Tasks that reached a final state",
            ["name", "state"],
            registry=registry,
        )
        self.retries = Counter(
            "taskledger_task_retries", "Retries scheduled", ["name"], registry=registry
        )
        self.cancels = Counter(
            "taskledger_task_cancels", "Tasks cancelled", ["name"], registry=registry
        )
        self.wait = Histogram(
            "taskledger_task_wait_seconds",
            "Due to started",
            ["name"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.run = Histogram(
            "taskledger_task_run_seconds",
            "Started to finished",
            ["name"],
            buckets=BUCKETS,
            registry=registry,
        )

    def observe(self, event: FeedEvent) -> None:
        kind, name = event.event_type, event.name
        if kind == "task_created":
            self.enqueued.labels(name).inc()
        elif kind == "task_started":
            self.started.labels(name).inc()
            if event.scheduled_for is not None:
                self.wait.labels(name).observe(
                    max(0.0, (event.at - event.scheduled_for).total_seconds())
                )
        elif kind == "task_scheduled_for_retry":
            self.retries.labels(name).inc()
        if event.state in FINAL and kind != "task_created":
            self.finished.labels(name, event.state).inc()
            if event.state == "cancelled":
                self.cancels.labels(name).inc()
            if event.started_at is not None and event.state != "cancelled":
                self.run.labels(name).observe(
                    max(0.0, (event.at - event.started_at).total_seconds())
                )


def make_registry() -> tuple[CollectorRegistry, EventMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector())
    return registry, EventMetrics(registry)
