"""Tables, states and the database engine. The lowest layer: it imports nothing of ours.

The names below load on first use, so that ``models.settings`` or ``models.states`` can be
imported without SQLAlchemy's ORM and every table (the CLI's read commands start faster).
``Base`` loads every table first: Alembic and ``create_all`` need the whole metadata.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.agent_session import AgentSession
    from models.api_token import ApiToken
    from models.base import Base, utcnow
    from models.control import AgentPull, CircuitBreaker, QueuePause
    from models.cron_run import CronRun, PulseRun
    from models.event import TaskEvent
    from models.flow import RateLimit, SessionBudget
    from models.goal import Goal
    from models.side_task import SideTaskState
    from models.states import GoalStatus, ListStatus, Outcome, TaskState, Verification
    from models.task import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, Task
    from models.task_list import TaskList, TaskListItem

_HOMES = {
    "AgentSession": "models.agent_session",
    "ApiToken": "models.api_token",
    "Base": "models.base",
    "utcnow": "models.base",
    "AgentPull": "models.control",
    "CircuitBreaker": "models.control",
    "QueuePause": "models.control",
    "CronRun": "models.cron_run",
    "PulseRun": "models.cron_run",
    "TaskEvent": "models.event",
    "RateLimit": "models.flow",
    "SessionBudget": "models.flow",
    "Goal": "models.goal",
    "SideTaskState": "models.side_task",
    "GoalStatus": "models.states",
    "Outcome": "models.states",
    "TaskState": "models.states",
    "Verification": "models.states",
    "DEFAULT_PRIORITY": "models.task",
    "MAX_PRIORITY": "models.task",
    "MIN_PRIORITY": "models.task",
    "Task": "models.task",
    "ListStatus": "models.states",
    "TaskList": "models.task_list",
    "TaskListItem": "models.task_list",
}
_TABLES = sorted({home for home in _HOMES.values() if home != "models.states"})

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "AgentPull",
    "AgentSession",
    "ApiToken",
    "Base",
    "CircuitBreaker",
    "CronRun",
    "Goal",
    "GoalStatus",
    "ListStatus",
    "Outcome",
    "PulseRun",
    "QueuePause",
    "RateLimit",
    "SessionBudget",
    "SideTaskState",
    "Task",
    "TaskEvent",
    "TaskList",
    "TaskListItem",
    "TaskState",
    "Verification",
    "utcnow",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    if name == "Base":
        for table_module in _TABLES:
            import_module(table_module)
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
