"""Django, configured minimally for django-celery-beat alone (beat, pulse and the CLI).

No Django project: ``settings.configure()`` with one installed app and the
database from ``TASKLEDGER_DATABASE_URL``. Workers never import this module:
with Django configured, Celery would install its Django fixup in them
(CELERY_FACTS.md, "Beat"). django-celery-beat's tables live in the same
database as the ledger; ``taskledger db upgrade`` creates them.
"""

from __future__ import annotations

import threading
from typing import Any

from models.settings import get_settings

_lock = threading.Lock()
MIGRATE_LOCK = 0x7A5C_BEA7  # advisory lock: two beats starting together migrate once


def database_settings(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for a SQLAlchemy/libpq URL (unix sockets included)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    query = dict(parsed.query)
    host = query.pop("host", None) or parsed.host or ""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.database or "postgres",
        "USER": parsed.username or "",
        "PASSWORD": parsed.password or "",
        "HOST": host if isinstance(host, str) else host[0],
        "PORT": str(parsed.port or ""),
        "OPTIONS": {k: v for k, v in query.items() if isinstance(v, str)},
        # One connection kept open: beat asks "did the schedule change?" every tick.
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": True,
    }


def configure() -> None:
    """Configure and set up Django once per process (idempotent, thread-safe)."""
    with _lock:
        import django
        from django.conf import settings

        if settings.configured:
            return
        settings.configure(
            INSTALLED_APPS=["django_celery_beat"],
            DATABASES={"default": database_settings(get_settings().resolved_database_url)},
            USE_TZ=True,
            TIME_ZONE="UTC",
            # Nothing is signed or sessioned here; Django only insists on having one.
            SECRET_KEY="taskledger-beat-has-no-secrets",
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            DJANGO_CELERY_BEAT_TZ_AWARE=True,
            LOGGING_CONFIG=None,
        )
        django.setup()


def migrate() -> None:
    """Create or update django-celery-beat's tables (``taskledger db upgrade``)."""
    configure()
    from django.core.management import call_command
    from django.db import close_old_connections, connection

    # Outside a web request nothing health-checks a kept connection; one left over from
    # before a Postgres restart would fail the migration (CONN_HEALTH_CHECKS does the rest).
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK])
        try:
            call_command("migrate", "django_celery_beat", verbosity=0, interactive=False)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK])


def close() -> None:
    """Drop this thread's Django connection (after a fork, or when done)."""
    from django.db import connections

    connections.close_all()
