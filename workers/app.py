"""The Celery app. ``celery -A workers.app worker`` and ``celery -A workers.app beat`` use it.

Configuration comes from ``models.settings`` (``TASKLEDGER_*`` variables).
Postgres holds every task's state, so Celery is set up to carry messages
and nothing more: no result backend, late acks, one message prefetched.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from beat import schedule
from models.settings import Settings, get_settings
from workers.broker import PRIORITY_SEP, PRIORITY_STEPS


def broker_options(settings: Settings) -> dict[str, Any]:
    if settings.is_embedded_broker:
        folder = settings.broker_folder
        for sub in ("queue", "control", "processed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    return {
        # Redis takes 0 as the most urgent; jobs.dispatch maps priority 5 -> 0, 1 -> 8.
        "priority_steps": PRIORITY_STEPS,
        "sep": PRIORITY_SEP,
        "queue_order_strategy": "priority",
        # Redelivery of an unacked message is only a fallback (the lease reaper is the
        # real recovery), so the visibility timeout can stay long; scan for it often.
        "visibility_timeout": settings.visibility_timeout_seconds,
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
    }


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("taskledger", set_as_current=True)
    app.conf.update(
        broker_url=settings.resolved_broker_url,
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.default_queue,
        task_routes={"taskledger.sweep.*": {"queue": settings.sweeps_queue}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,  # long agent tasks: a worker must not hoard messages
        # A Redis blip must not kill running work: Postgres, not the message, owns the
        # attempt, and the worker records its outcome after reconnecting.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_send_task_events=settings.task_events,  # Flower enables them when it watches
        task_send_sent_event=settings.task_events,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        imports=["beat.sweeps", "workers.demo", *settings.import_modules],
        beat_schedule=schedule.build(settings),
        timezone="UTC",
    )
    return app


app = make_app()

# Per-process hooks (fresh DB engine after fork, cancellation listener).
import workers.signals  # noqa: E402, F401
