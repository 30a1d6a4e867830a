"""Cron task definitions: a durable task plus a schedule, declared next to its code.

    from beat import cron

    @cron("*/5 * * * *", name="reports.digest", overlap="skip", timeout=300, priority=3,
          tags=["reports"], depends_on=["ingest.pull"], config={"limit": 100},
          config_schema=DigestConfig)
    @app.task(base=DurableTask, name="reports.digest_task")
    def digest(config: dict) -> dict: ...

A schedule is a 5-field cron string (``timezone=`` optional), ``every=SECONDS``,
or a function returning bool, asked once per ``check_every`` seconds (seed
003's dynamic schedule). A bad definition raises ``CronDefinitionError``
naming the cron task when its module is imported; ``validate_all`` (run at
every start: beat, pulse, sidecar, CLI) refuses unknown or circular
dependencies. Schedules are aligned slots (every 10 s fires at :00, :10, …),
so any two processes agree on the scheduled time of a fire: it is half of
the run key (``jobs/cron_runs.py``).
"""

from __future__ import annotations

import functools
import inspect
import math
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

OVERLAP_MODES = ("skip", "queue")
MAX_CATCHUP_SLOTS = 10  # missed slots one late fire records (older ones: health says "missed")


class CronDefinitionError(ValueError):
    """A cron task definition is invalid; nothing was registered."""


@dataclass(frozen=True, kw_only=True)
class CronSchedule:
    """When a cron task is due: ``kind`` is ``cron``, ``every`` or ``dynamic``."""

    kind: str
    expr: str | None = None  # cron: 5 fields
    timezone: str = "UTC"
    every_s: int | None = None  # every: the interval; dynamic: how often to ask
    decide: Callable[[], bool] | None = field(default=None, compare=False)

    def describe(self) -> str:
        if self.kind == "cron":
            return f"{self.expr} ({self.timezone})"
        if self.kind == "every":
            return f"every {self.every_s}s"
        name = getattr(self.decide, "__qualname__", "function")
        return f"when {name}() (asked every {self.every_s}s)"

    def latest_slot(self, now: datetime) -> datetime:
        """The latest scheduled time at or before ``now``."""
        if self.kind == "cron":
            from croniter import croniter

            local = now.astimezone(zoneinfo.ZoneInfo(self.timezone))
            # croniter's get_prev from an exact slot returns the slot before; nudge past it.
            base = local + timedelta(microseconds=1)
            prev: datetime = croniter(self.expr, base).get_prev(datetime)
            return prev.astimezone(UTC)
        assert self.every_s is not None
        epoch = math.floor(now.timestamp() / self.every_s) * self.every_s
        return datetime.fromtimestamp(epoch, UTC)

    def next_slot(self, now: datetime) -> datetime:
        """The first scheduled time after ``now``."""
        if self.kind == "cron":
            from croniter import croniter

            local = now.astimezone(zoneinfo.ZoneInfo(self.timezone))
            nxt: datetime = croniter(self.expr, local).get_next(datetime)
            return nxt.astimezone(UTC)
        assert self.every_s is not None
        return self.latest_slot(now) + timedelta(seconds=self.every_s)

    def slots_between(self, after: datetime, until: datetime, *, limit: int) -> list[datetime]:
        """Up to ``limit`` of the latest slots ``s`` with ``after < s < until``, oldest first."""
        out: list[datetime] = []
        slot = self.latest_slot(until - timedelta(microseconds=1))
        while slot > after and len(out) < limit:
            if slot < until:
                out.append(slot)
            slot = self.latest_slot(slot - timedelta(microseconds=1))
        return sorted(out)


def parse_schedule(
    name: str,
    schedule: str | Callable[[], bool] | None,
    *,
    every: int | None,
    timezone: str,
    check_every: int,
) -> CronSchedule:
    given = [x for x in (schedule, every) if x is not None]
    if len(given) != 1:
        raise CronDefinitionError(
            f"cron task {name!r}: give one schedule: a cron string, every=SECONDS, "
            "or a function returning bool"
        )
    if every is not None:
        return CronSchedule(kind="every", every_s=_positive_seconds(name, "every", every))
    if callable(schedule):
        return CronSchedule(
            kind="dynamic",
            every_s=_positive_seconds(name, "check_every", check_every),
            decide=schedule,
        )
    return CronSchedule(kind="cron", expr=check_cron(name, schedule), timezone=_tz(name, timezone))


def check_cron(name: str, expr: Any) -> str:
    """A 5-field cron string both croniter and Celery's crontab accept."""
    from celery.schedules import crontab
    from croniter import croniter

    fields = expr.split() if isinstance(expr, str) else []
    if len(fields) != 5 or not croniter.is_valid(" ".join(fields)):
        raise CronDefinitionError(
            f"cron task {name!r}: invalid cron string {expr!r} "
            "(want 5 fields: minute hour day-of-month month day-of-week)"
        )
    minute, hour, dom, month, dow = fields
    try:
        crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow)
    except Exception as exc:
        raise CronDefinitionError(
            f"cron task {name!r}: invalid cron string {expr!r}: {exc}"
        ) from None
    return " ".join(fields)


def _tz(name: str, timezone: str) -> str:
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronDefinitionError(f"cron task {name!r}: unknown timezone {timezone!r}") from None
    return timezone


def _positive_seconds(name: str, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CronDefinitionError(
            f"cron task {name!r}: {what} must be a whole number of seconds >= 1; got {value!r}"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class CronDefinition:
    name: str
    task: Any  # the DurableTask
    schedule: CronSchedule
    overlap: str
    timeout: float | None
    priority: int | None
    queue: str | None
    tags: tuple[str, ...]
    depends_on: tuple[str, ...]
    config: dict[str, Any]
    config_schema: Any
    result_schema: Any
    enabled: bool
    description: str
    takes_config: bool

    @property
    def task_name(self) -> str:
        return str(self.task.name)

    def check_config(self, config: Any) -> dict[str, Any]:
        """The config as it will be stored, or CronDefinitionError naming the cron task."""
        return check_config(self.name, config, self.config_schema, self.takes_config)

    def spec(self, config: dict[str, Any], *, scheduled_at: datetime, now: datetime) -> Any:
        """The durable task a run of this fire creates (validated, nothing written)."""
        metadata = {"cron": self.name, "scheduled_at": scheduled_at.isoformat()}
        return self.task.spec(
            None,
            {"config": config} if self.takes_config else None,
            now=now,
            priority=self.priority,
            timeout=self.timeout,
            queue=self.queue,
            metadata=metadata,
            title=f"cron {self.name} @ {scheduled_at.isoformat()}",
        )


def check_config(name: str, config: Any, schema: Any, takes_config: bool) -> dict[str, Any]:
    from pydantic import BaseModel, ValidationError

    from jobs.enqueue import _json_problem

    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise CronDefinitionError(f"cron task {name!r}: config must be a JSON object")
    if config and not takes_config:
        raise CronDefinitionError(
            f"cron task {name!r}: config given but the task takes no `config` parameter"
        )
    if schema is not None:
        try:
            model: BaseModel = schema.model_validate(config)
        except ValidationError as exc:
            raise CronDefinitionError(
                f"cron task {name!r}: config does not match {schema.__name__}: {_short(exc)}"
            ) from None
        config = model.model_dump(mode="json")
    problem = _json_problem(config, "config")
    if problem:
        raise CronDefinitionError(f"cron task {name!r}: {problem}")
    return dict(config)


def _short(exc: Any) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )


_REGISTRY: dict[str, CronDefinition] = {}


def definitions() -> dict[str, CronDefinition]:
    """Every cron task registered in this process, by name."""
    return dict(_REGISTRY)


def get(name: str) -> CronDefinition:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise CronDefinitionError(
            f"unknown cron task {name!r} (known: {known}; modules load from TASKLEDGER_IMPORTS)"
        ) from None


def cron(
    schedule: str | Callable[[], bool] | None = None,
    *,
    name: str,
    every: int | None = None,
    timezone: str = "UTC",
    check_every: int = 60,
    overlap: str = "skip",
    timeout: float | None = None,
    priority: int | None = None,
    queue: str | None = None,
    tags: Iterable[str] = (),
    depends_on: Iterable[str] = (),
    config: dict[str, Any] | None = None,
    config_schema: Any = None,
    result_schema: Any = None,
    enabled: bool = True,
    description: str = "",
) -> Callable[[Any], Any]:
    """Register a durable task as a cron task (see the module docstring)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise CronDefinitionError(f"cron task name must be a non-empty string; got {name!r}")
    parsed = parse_schedule(name, schedule, every=every, timezone=timezone, check_every=check_every)
    if overlap not in OVERLAP_MODES:
        raise CronDefinitionError(
            f"cron task {name!r}: overlap must be one of {OVERLAP_MODES}; got {overlap!r}"
        )
    _check_options(name, timeout, priority)
    for schema, what in ((config_schema, "config_schema"), (result_schema, "result_schema")):
        if schema is not None and not hasattr(schema, "model_validate"):
            raise CronDefinitionError(f"cron task {name!r}: {what} must be a pydantic model")

    def register(proxy: Any) -> Any:
        from jobs.durable import DurableTask

        # @app.task hands back a lazy proxy before the app is finalised; patch the task itself.
        task = getattr(proxy, "_get_current_object", lambda: proxy)()
        if not isinstance(task, DurableTask):
            raise CronDefinitionError(
                f"cron task {name!r}: @cron goes above @app.task(base=DurableTask)"
            )
        takes = _takes_config(task)
        definition = CronDefinition(
            name=name,
            task=task,
            schedule=parsed,
            overlap=overlap,
            timeout=timeout,
            priority=priority,
            queue=queue,
            tags=tuple(tags),
            depends_on=tuple(depends_on),
            config=check_config(name, config, config_schema, takes),
            config_schema=config_schema,
            result_schema=result_schema,
            enabled=enabled,
            description=description or (task.__doc__ or "").strip().split("\n")[0],
            takes_config=takes,
        )
        previous = _REGISTRY.get(name)
        if previous is not None and previous.task_name != definition.task_name:
            raise CronDefinitionError(
                f"duplicate cron task name {name!r}: already defined for task "
                f"{previous.task_name!r}, now again for {definition.task_name!r}"
            )
        _wrap_run(task, definition)
        _REGISTRY[name] = definition
        return proxy

    return register


def _check_options(name: str, timeout: Any, priority: Any) -> None:
    from jobs.enqueue import check_priority
    from jobs.errors import InvalidPriority

    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise CronDefinitionError(f"cron task {name!r}: timeout must be > 0 seconds")
    if priority is not None:
        try:
            check_priority(priority)
        except InvalidPriority as exc:
            raise CronDefinitionError(f"cron task {name!r}: {exc}") from None


def _takes_config(task: Any) -> bool:
    params = inspect.signature(task.run).parameters.values()
    return any(p.name == "config" or p.kind is p.VAR_KEYWORD for p in params)


def _wrap_run(task: Any, definition: CronDefinition) -> None:
    """Validate config on the way in and the result on the way out, in the worker.

    A mismatch is a ``PermanentError``: the run fails at once, without retries.
    """
    cls = type(task)
    raw = cls.__dict__.get("run")
    if getattr(raw, "__taskledger_cron__", None) or getattr(
        getattr(raw, "__func__", None), "__taskledger_cron__", None
    ):
        return  # registered again (module imported twice)
    bound = not isinstance(raw, staticmethod)
    fn: Callable[..., Any] = raw if bound else raw.__func__  # type: ignore[union-attr,assignment]

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from jobs.errors import PermanentError

        if definition.config_schema is not None and "config" in kwargs:
            try:
                kwargs["config"] = definition.check_config(kwargs["config"])
            except CronDefinitionError as exc:
                raise PermanentError(str(exc)) from None
        result = fn(*args, **kwargs)
        if definition.result_schema is not None:
            from pydantic import ValidationError

            try:
                result = definition.result_schema.model_validate(result).model_dump(mode="json")
            except ValidationError as exc:
                raise PermanentError(
                    f"cron task {definition.name!r}: result does not match "
                    f"{definition.result_schema.__name__}: {_short(exc)}"
                ) from None
        return result

    run.__taskledger_cron__ = definition.name  # type: ignore[attr-defined]
    cls.run = run if bound else staticmethod(run)


def validate_all(extra_names: Sequence[str] = ()) -> dict[str, CronDefinition]:
    """Refuse unknown or circular dependencies and names that collide with built-in
    entries (``extra_names``). Returns the definitions."""
    defs = definitions()
    for name in extra_names:
        if name in defs:
            raise CronDefinitionError(
                f"cron task {name!r}: the name is taken by a built-in beat entry"
            )
    for d in defs.values():
        for dep in d.depends_on:
            if dep not in defs:
                raise CronDefinitionError(
                    f"cron task {d.name!r}: unknown dependency {dep!r} "
                    f"(known: {', '.join(sorted(defs)) or 'none'})"
                )
    _refuse_cycles(defs)
    return defs


def _refuse_cycles(defs: dict[str, CronDefinition]) -> None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise CronDefinitionError(f"cron task {name!r}: circular dependency {cycle}")
        if name in done:
            return
        for dep in defs[name].depends_on:
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(defs):
        visit(name, [])


def forget(name: str) -> None:
    """Unregister (tests of invalid definitions)."""
    _REGISTRY.pop(name, None)
