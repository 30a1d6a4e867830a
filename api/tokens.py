"""Bearer tokens: made here, stored as SHA-256 only, looked up per request.

A token is 32 random bytes (``tl_`` + URL-safe base64), so a fast hash is enough:
there is nothing to brute-force that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select

from jobs import errors
from models import ApiToken, utcnow
from models.db import transaction

PREFIX = "tl_"
CACHE_SECONDS = 10.0  # a revoked token keeps working this long at most, per API process


@dataclass(frozen=True)
class User:
    id: str
    admin: bool

    @property
    def scope(self) -> str | None:
        """The owner filter for reads and writes: None (everything) for admins."""
        return None if self.admin else self.id


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_token(user_id: str, *, admin: bool = False, label: str | None = None) -> str:
    """A new token for ``user_id``; the only time the token itself exists in clear."""
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 200:
        raise errors.InvalidOption("user must be a non-empty name of at most 200 characters")
    if "\x00" in user_id:
        raise errors.InvalidOption("user must not contain NUL characters")
    token = PREFIX + secrets.token_urlsafe(32)
    with transaction() as conn:
        conn.execute(
            insert(ApiToken).values(
                id=uuid.uuid4(),
                user_id=user_id,
                token_hash=token_hash(token),
                is_admin=admin,
                label=label,
                created_at=utcnow(),
            )
        )
    return token


_cache: dict[str, tuple[float, User | None]] = {}
_lock = threading.Lock()


def lookup(token: str) -> User | None:
    """The user a token belongs to, or None (unknown or revoked)."""
    if not token or len(token) > 200:
        return None
    digest = token_hash(token)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    with transaction() as conn:
        row = conn.execute(
            select(ApiToken.user_id, ApiToken.is_admin).where(
                ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)
            )
        ).one_or_none()
    user = None if row is None else User(id=row.user_id, admin=bool(row.is_admin))
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (now + CACHE_SECONDS, user)
    return user


def has_admin_token(user_id: str) -> bool:
    with transaction() as conn:
        return (
            conn.execute(
                select(ApiToken.id).where(
                    ApiToken.user_id == user_id,
                    ApiToken.is_admin.is_(True),
                    ApiToken.revoked_at.is_(None),
                )
            ).first()
            is not None
        )
