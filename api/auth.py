"""Who is calling: a bearer token in ``Authorization``, or the monitor's HttpOnly cookie.

No token is a 401. A user sees and steers only their own work; a request for
someone else's id answers 404 exactly as an unknown id does, so ids don't leak.
Cookie-authenticated writes must come from this origin (the cookie is also
SameSite=Strict): a page elsewhere cannot steer tasks with a visitor's cookie.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.tokens import User, lookup

COOKIE = "taskledger_token"
bearer = HTTPBearer(auto_error=False, description="a token from `taskledger token create`")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    token = credentials.credentials if credentials is not None else None
    from_cookie = False
    if not token:
        token = request.cookies.get(COOKIE)
        from_cookie = bool(token)
    if not token:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    user = lookup(token)
    if user is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token")
    if from_cookie and request.method not in SAFE_METHODS and not _same_origin(request):
        raise ApiError(403, "forbidden", "cross-origin write with a cookie")
    return user


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True  # not a browser cross-site request (those always send Origin on POST)
    return urlparse(origin).netloc == request.headers.get("host", "")


def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.admin:
        raise ApiError(403, "forbidden", "this needs an admin token")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
