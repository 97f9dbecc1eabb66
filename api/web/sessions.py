"""Web sessions and CSRF tokens: the pages' side of signing in.

A session is a row (``vault.auth_models.WebSession``) keyed by the SHA-256 of a
random cookie secret. It ends at logout, after ``web_idle_minutes`` unused,
``web_absolute_hours`` after sign-in, and, through the user's token generation,
at a password change, a reset or disabling the user: the same revocation as API
tokens, checked on every request by ``policies.directory.load_principal``.

Every state-changing form carries a CSRF token: an HMAC, under a secret from the
key file, of the session's key (signed in) or of a random pre-session cookie
(the sign-in and language forms). Tokens are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from foundation.db import transaction
from policies.revocation import end_web_sessions
from vault.auth_models import WebSession

_S = WebSession.__table__  # type: ignore[attr-defined]
SESSION_COOKIE = "av_session"
PRE_COOKIE = "av_pre"
LANG_COOKIE = "av_lang"
# last_seen_at is written at most this often per session (not on every page).
TOUCH_EVERY = timedelta(seconds=30)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Live:
    """A session that is still open: whose, and under which token generation."""

    key: str
    username: str
    generation: int
    created_at: datetime


class WebSessions:
    """Opens, finds and ends sessions; makes and checks CSRF tokens."""

    def __init__(
        self, *, engine_of: object, csrf_secret: bytes, idle: timedelta, absolute: timedelta
    ) -> None:
        self._engine_of = engine_of  # a callable: the engine the service runs on now
        self._csrf = csrf_secret
        self.idle = idle
        self.absolute = absolute

    @property
    def engine(self) -> sa.Engine:
        return self._engine_of()  # type: ignore[operator]

    def open(self, session: Session, username: str, generation: int, now: datetime) -> str:
        """A new session in the sign-in's own transaction; returns the cookie's secret."""
        secret = secrets.token_urlsafe(32)
        session.connection().execute(
            sa.insert(_S).values(
                key=_digest(secret),
                username=username,
                generation=generation,
                created_at=now,
                last_seen_at=now,
            )
        )
        return secret

    def find(self, secret: str | None, now: datetime) -> Live | None:
        """The open session behind a cookie, or None (unknown, ended, idle or too old)."""
        if not secret or len(secret) > 128:
            return None
        key = _digest(secret)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    _S.c.username,
                    _S.c.generation,
                    _S.c.created_at,
                    _S.c.last_seen_at,
                    _S.c.ended_at,
                ).where(_S.c.key == key)
            ).first()
        if row is None or row.ended_at is not None:
            return None
        if now - row.last_seen_at > self.idle or now - row.created_at > self.absolute:
            return None
        if now - row.last_seen_at > TOUCH_EVERY:
            with transaction(self.engine) as session:
                session.connection().execute(
                    sa.update(_S)
                    .where(_S.c.key == key, _S.c.ended_at.is_(None))
                    .values(last_seen_at=now)
                )
        return Live(key, row.username, row.generation, row.created_at)

    def end(self, secret: str | None, now: datetime) -> str | None:
        """End the session behind a cookie (logout); returns whose it was, if open."""
        if not secret or len(secret) > 128:
            return None
        with transaction(self.engine) as session:
            row = (
                session.connection()
                .execute(
                    sa.update(_S)
                    .where(_S.c.key == _digest(secret), _S.c.ended_at.is_(None))
                    .values(ended_at=now)
                    .returning(_S.c.username)
                )
                .first()
            )
        return row[0] if row else None

    def end_all(self, session: Session, username: str, now: datetime) -> int:
        """End every open session of a user, in the caller's transaction."""
        return end_web_sessions(session, username, now)

    def csrf_for(self, binding: str) -> str:
        """The CSRF token of a session key or a pre-session cookie."""
        return hmac.new(self._csrf, b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token or len(token) != 64:
            return False
        return hmac.compare_digest(self.csrf_for(binding), token)


def pre_secret() -> str:
    return secrets.token_urlsafe(24)


def pre_binding(pre: str) -> str:
    """What a pre-session cookie's token is bound to (never the same as a session key)."""
    return "pre:" + _digest(pre)
