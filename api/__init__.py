"""The HTTP API and the task monitor: a thin shell over ``jobs/`` (FastAPI, served by uvicorn)."""
