"""Tables of authentication: login counters shared by every worker, one-time password resets.

Counters live in the database rather than in a worker's memory so that N
workers (or N concurrent requests) share one count, changed atomically by a
single statement. Keys are keyed hashes (never a typed name or an address in
the clear), and a reset's codes are stored only as keyed hashes; the code for
the second person is kept sealed until they fetch it, and erased then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from vault.models import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class LoginNameCounter(SQLModel, table=True):
    """Failed logins for a name that is not a user, keyed by a keyed hash of the name.

    It runs the same schedule as ``app_user.failed_logins``/``locked_until``, so
    an unknown name is delayed and "locked" exactly like a known one.
    """

    __tablename__ = "login_name_counter"

    key: str = Field(primary_key=True, max_length=64)
    failed_logins: int = 0
    locked_until: datetime | None = _ts(nullable=True)


class LoginAddressCounter(SQLModel, table=True):
    """Login attempts from one client address (a keyed hash) in a fixed window."""

    __tablename__ = "login_address_counter"

    key: str = Field(primary_key=True, max_length=64)
    window_start: datetime = _ts(nullable=False, index=True)
    attempts: int = 0


class PasswordReset(SQLModel, table=True):
    """A one-time password reset an administrator issued and the user completes.

    Two codes, each stored only as a keyed hash: one was shown to the issuing
    administrator, the other goes to ``holder`` (the user's department head or
    the information supervisor), who hands it over in person. ``holder_code_sealed``
    keeps that second code sealed under a key from the key file until the holder
    fetches it once; it is erased then, and when the reset ends.
    """

    __tablename__ = "password_reset"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(index=True, unique=True, max_length=32)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    issued_by: str = Field(max_length=64)
    holder: str = Field(index=True, max_length=64)
    admin_code_hmac: str = Field(max_length=64)
    holder_code_hmac: str = Field(max_length=64)
    holder_code_sealed: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))
    # pending → used | cancelled (a newer reset) | exhausted (too many wrong codes)
    state: str = Field(default="pending", index=True, max_length=16)
    attempts: int = 0
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
    holder_fetched_at: datetime | None = _ts(nullable=True)
    closed_at: datetime | None = _ts(nullable=True)


class WebSession(SQLModel, table=True):
    """A signed-in browser: the pages' session, ended by logout or its timeouts.

    The cookie holds a random secret; only its SHA-256 is stored, so a copy of
    the table opens no session. The user's token generation at sign-in is kept
    with it: a password change, a reset or disabling the user bumps the
    generation, which ends every session of theirs at the next request, exactly
    as it revokes their API tokens.
    """

    __tablename__ = "web_session"

    key: str = Field(primary_key=True, max_length=64)
    username: str = Field(index=True, max_length=64)
    generation: int = 0
    created_at: datetime = _ts(nullable=False)
    last_seen_at: datetime = _ts(nullable=False)
    ended_at: datetime | None = _ts(nullable=True)
