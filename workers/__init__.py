"""The Celery app, its configuration, and the per-process hooks of worker processes."""
