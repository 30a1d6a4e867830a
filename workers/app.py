"""The Celery app. ``celery -A workers.app worker`` and ``celery -A workers.app beat`` use it.

Configuration comes from ``models.settings`` (``TASKLEDGER_*`` variables).
Postgres holds every task's state, so Celery is set up to carry messages
(late acks, one message prefetched) and to read results from the ledger
(``jobs.results.LedgerBackend``). Celery's own doors are routed through the
ledger here: ``send_task`` of a durable task enqueues it (row first),
``control.revoke`` cancels the row, and a group's ``GroupResult`` writes its
durable members in one transaction.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.control import Control
from kombu.utils.objects import cached_property

from beat import schedule
from jobs import canvas
from jobs import revoke as ledger_revoke
from jobs.enqueue import find_durable
from models.settings import Settings, get_settings
from workers.broker import PRIORITY_SEP, PRIORITY_STEPS


def broker_options(settings: Settings) -> dict[str, Any]:
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


class LedgerControl(Control):
    """``app.control.revoke`` cancels the ledger row first (even with no worker online),
    then broadcasts Celery's revoke (which stops running code when ``terminate=True``)."""

    def revoke(
        self,
        task_id: Any,
        destination: Any = None,
        terminate: bool = False,
        signal: Any = None,
        **kwargs: Any,
    ) -> Any:
        ledger_revoke.revoke(self.app, task_id, source="app.control.revoke", terminate=terminate)
        options = {"signal": signal} if signal is not None else {}
        return super().revoke(
            task_id, destination=destination, terminate=terminate, **options, **kwargs
        )


class TaskledgerCelery(Celery):
    """Celery, with its doors routed through the ledger."""

    control_cls = "workers.app:LedgerControl"

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """A durable task by name goes through the ledger (row first), like ``.delay()``;
        anything else is Celery's own send. The ledger's own publish is marked internal."""
        if options.pop("taskledger_internal", False):
            return super().send_task(name, args, kwargs, **options)
        task = find_durable(self, name)
        if task is None:
            return super().send_task(name, args, kwargs, **options)
        return task.apply_async(args, kwargs, **options)

    @cached_property
    def GroupResult(self) -> Any:
        return self.subclass_with_self(canvas.LedgerGroupResult)


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = TaskledgerCelery("taskledger", set_as_current=True)
    # Lazily: importing the app (a producer's task module) must work before `taskledger up`
    # has started; with nothing running, the first use says so (models.settings.NotConfigured).
    app.add_defaults(lambda: {"broker_url": settings.resolved_broker_url})
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.default_queue,
        task_routes=schedule.routes(settings),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # the ledger has every outcome; the backend only reads it
        result_backend="jobs.results:LedgerBackend",
        worker_prefetch_multiplier=1,  # long agent tasks: a worker must not hoard messages
        # A Redis blip must not kill running work: Postgres, not the message, owns the
        # attempt, and the worker records its outcome after reconnecting.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_send_task_events=settings.task_events,  # Flower enables them when it watches
        task_send_sent_event=settings.task_events,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_autoscaler="workers.autoscale:LedgerAutoscaler",  # --autoscale sees Postgres
        imports=["beat.sweeps", "beat.safety", "workers.demo", *settings.import_modules],
        beat_schedule=schedule.build(settings),
        # Schedules in Postgres (django-celery-beat), cron tasks fired under a run key:
        # beat/django_scheduler.py. Imported by beat only, so workers never load Django.
        beat_scheduler="beat.django_scheduler:TaskledgerScheduler",
        timezone="UTC",
    )
    return app


app = make_app()

# Per-process hooks (fresh DB engine after fork, cancellation listener).
import workers.signals  # noqa: E402, F401
from workers import log_filters  # noqa: E402

log_filters.install()  # Celery's per-sweep INFO lines only at DEBUG
