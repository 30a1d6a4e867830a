"""Examples: a task list (tasks.md) and the agent handler that works through it (agent.py)."""
