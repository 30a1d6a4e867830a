"""Tables, states and the database engine. The lowest layer: it imports nothing of ours."""

from models.agent_session import AgentSession
from models.api_token import ApiToken
from models.base import Base, utcnow
from models.control import AgentPull, CircuitBreaker, QueuePause
from models.cron_run import CronRun, PulseRun
from models.event import TaskEvent
from models.flow import RateLimit, SessionBudget
from models.goal import Goal
from models.side_task import SideTaskState
from models.states import GoalStatus, Outcome, TaskState, Verification
from models.task import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, Task
from models.task_list import ListStatus, TaskList, TaskListItem

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
