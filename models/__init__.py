"""Tables, states and the database engine. The lowest layer: it imports nothing of ours."""

from models.agent_session import AgentSession
from models.base import Base, utcnow
from models.event import TaskEvent
from models.goal import Goal
from models.states import GoalStatus, Outcome, TaskState, Verification
from models.task import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, Task

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "AgentSession",
    "Base",
    "Goal",
    "GoalStatus",
    "Outcome",
    "Task",
    "TaskEvent",
    "TaskState",
    "Verification",
    "utcnow",
]
