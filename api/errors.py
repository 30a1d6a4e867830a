"""Every error answer is ``{"error": code, "detail": ...}``; bad input is a 4xx, never a 500.

Domain errors from ``jobs/`` map to status codes here, once, so routes just call
``jobs`` and let errors rise.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobs import errors

log = logging.getLogger("taskledger.api")


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: Any = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


def _body(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def domain_status(exc: errors.TaskledgerError) -> tuple[int, str]:
    if isinstance(exc, errors.PolicyBlocked):
        return 403, "policy_blocked"
    if isinstance(exc, errors.QueueFull):
        return 429, "queue_full"
    if isinstance(exc, errors.InvalidPolicy):
        return 503, "policy_unavailable"
    if isinstance(exc, errors.NotFound):
        return 404, "not_found"
    if isinstance(exc, errors.InvalidTransition):
        return 409, "illegal_transition"
    if isinstance(exc, errors.TaskAlreadyExists):
        return 409, "already_exists"
    if isinstance(exc, errors.PayloadTooLarge):
        return 413, "payload_too_large"
    if isinstance(exc, errors.UnknownTask):
        return 422, "unknown_task"
    if isinstance(exc, errors.InvalidTaskInput):
        return 422, "invalid_input"
    return 409, type(exc).__name__


def _validation(exc: RequestValidationError) -> Any:
    problems = exc.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return _body(400, "malformed_json", "the request body is not valid JSON")
    detail = [
        {"loc": list(p.get("loc", ())), "msg": p.get("msg", ""), "type": p.get("type", "")}
        for p in problems
    ]
    return _body(422, "invalid_request", detail)


STATUS_CODES = {
    400: "malformed_json",  # FastAPI raises 400 only when it cannot parse the body
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _body(exc.status, exc.code, exc.detail, headers)

    async def domain_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, errors.TaskledgerError)
        status, code = domain_status(exc)
        return _body(status, code, str(exc))

    async def validation_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, RequestValidationError)
        return _validation(exc)

    async def http_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, StarletteHTTPException)
        code = STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return _body(exc.status_code, code, exc.detail, dict(exc.headers or {}) or None)

    async def data_error(request: Request, exc: Exception) -> Any:
        # The database refused a value the validation let through (a NUL byte, an
        # out-of-range number): the transaction rolled back, nothing was written.
        return _body(422, "invalid_input", f"the database rejected a value: {type(exc).__name__}")

    async def too_deep(request: Request, exc: Exception) -> Any:
        return _body(400, "malformed_json", "the request body is nested too deeply")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(errors.TaskledgerError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DataError, data_error)
    app.add_exception_handler(UnicodeError, data_error)
    app.add_exception_handler(RecursionError, too_deep)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers a route can give."""
    text = {
        400: "malformed JSON",
        401: "no or unknown bearer token",
        403: "an admin token is needed, or a policy rule blocked the task",
        404: "no such id (or not yours)",
        409: "illegal state transition",
        413: "request body or payload too large",
        422: "invalid input",
        429: "the session or queue is full",
    }
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


COMMON = responses(400, 401, 404, 413, 422)
