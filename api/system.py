"""Stats, cleanup (admin), liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.auth import AdminUser, CurrentUser
from api.deps import Conn
from api.errors import COMMON, responses
from api.schemas import Cleanup, CleanupOut, Health, StatsOut
from jobs import listing
from models.db import transaction

router = APIRouter(tags=["system"])


@router.get("/api/stats", response_model=StatsOut, responses=COMMON)
def stats(user: CurrentUser, conn: Conn) -> StatsOut:
    """Counts by state, average wait and processing time (your tasks; admins: all)."""
    from jobs import breaker, pull

    st = listing.stats(conn, user_id=user.scope)
    admin = user.scope is None
    return StatsOut(
        open_breakers=breaker.open_breakers(conn) if admin else [],
        agents=pull.agents(conn) if admin else [],
        counts=st.counts,
        avg_wait_ms=st.avg_wait_ms,
        avg_processing_ms=st.avg_processing_ms,
        completed=st.completed,
        pending_approval=st.counts.get("pending_approval", 0),
    )


@router.post("/api/cleanup", response_model=CleanupOut, responses={**COMMON, **responses(403)})
def cleanup(user: AdminUser, body: Cleanup | None = None) -> CleanupOut:
    """Delete finished tasks older than ``days`` (admin). ``dry_run`` (default) only counts."""
    from jobs import retention

    body = body or Cleanup()
    result = retention.cleanup(days=body.days, dry_run=body.dry_run)
    return CleanupOut(dry_run=body.dry_run, days=body.days, result=dict(result))


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz() -> Any:
    """Readiness: database and broker reachable, migrations current."""
    checks = {"database": _check_db(), "broker": _check_broker(), "migrations": _check_schema()}
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return body if ok else JSONResponse(body.model_dump(), status_code=503)


def _check_db() -> str:
    try:
        with transaction() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"


def _check_broker() -> str:
    from models.broker import redis_client

    try:
        redis_client().ping()
        return "ok"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"


def _check_schema() -> str:
    from alembic.script import ScriptDirectory

    from models.migrate import alembic_config

    try:
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        with transaction() as conn:
            current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        if current == heads:
            return "ok"
        return f"behind: at {sorted(current)}, head {sorted(heads)}; run `taskledger db upgrade`"
    except Exception as exc:
        return f"unknown: {type(exc).__name__}"


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
