"""Shared fixtures. Integration tests use the real Postgres on 127.0.0.1 (a fresh
database per run), the real Redis, and real ``celery worker`` processes."""

from __future__ import annotations

import os

from tests.support.services import TEST_ENV

# Before anything of ours is imported: settings and the Celery app read the environment once.
os.environ.update(TEST_ENV)
