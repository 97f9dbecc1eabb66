"""Logging in, changing one's own password, completing a reset: the database side.

Each public method is one route's action, blocking (routes run it on a worker
thread). An attempt is first reserved in the login counters and committed
(``api.login_guard``), the Argon2 check runs outside any transaction and only
when the reservation allows it, and the outcome (token, audit entry, counters
given back) is written in a second transaction. Authentication mechanics
(Argon2, JWT) live here in ``api``; who may do what is the policies' business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session

from api import login_guard
from api.metrics import LOGIN_FAILURES
from api.security import TokenService, verify_password
from audit.events import Actor, AuditAction, AuditEvent, Outcome
from audit.log import AuditLog
from foundation.db import transaction
from policies import password_reset
from policies.directory import revoke_tokens
from vault.index import BlindIndexes
from vault.models import User, table_of
from vault.records import USERNAME
from vault.vault import Vault

_U = table_of(User)
# What a successful check hands out, written in the check's own transaction: an API
# token by default, a web session for the pages. (session, username, generation, now)
# → (the secret to give the client, its lifetime in seconds).
Issue = Callable[[Session, str, int, datetime], tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to: a token, a refusal with its count, or a wait (429)."""

    token: str | None = None
    expires_in: int = 0
    count: int = 0
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class ResetCompletion:
    """A reset's new password with both codes, as the route received it."""

    username: str
    admin_code: str
    holder_code: str
    new_password_hash: str


class Accounts:
    """Logins, own password changes and reset completions, counted and audited."""

    def __init__(
        self,
        *,
        vault: Vault,
        index: BlindIndexes,
        audit: AuditLog,
        tokens: TokenService,
        clock: Callable[[], datetime],
    ) -> None:
        self.vault = vault
        self.index = index
        self.audit = audit
        self.tokens = tokens
        self.clock = clock

    @property
    def engine(self) -> sa.Engine:
        # Read at each use: the vault's engine is the one the service runs on now.
        return self.vault.engine

    def address_key(self, client: str | None) -> str:
        """The client address as a keyed hash: the throttle table never holds an address."""
        return self.index.query_hmac("login-address", client or "unknown")

    def _reserve_address(
        self, conn: Connection, addr_key: str, now: datetime
    ) -> login_guard.AddressReservation:
        settings = self.vault.settings
        return login_guard.reserve_address(
            conn,
            addr_key,
            now=now,
            limit=settings.login_address_max_failures,
            window=timedelta(seconds=settings.login_address_window_seconds),
        )

    def _token(
        self, _session: Session, username: str, generation: int, now: datetime
    ) -> tuple[str, int]:
        return self.tokens.issue(username, generation=generation, now=now)

    def login(
        self,
        username: str,
        password: str,
        client: str | None,
        now: datetime,
        issue: Issue | None = None,
    ) -> Attempt:
        """Reserve the attempt (committed), check the password only if allowed, record it.

        ``issue`` is what a success hands out (an API token unless the pages
        pass their session maker): the same counters and checks either way.
        """
        settings = self.vault.settings
        addr_key = self.address_key(client)
        lock = timedelta(minutes=settings.login_lock_minutes)
        # A name that cannot be a username (NUL bytes, controls, wrong shape) is not
        # looked up at all: PostgreSQL refuses NUL in text, and nobody has that name.
        known = USERNAME.fullmatch(username) is not None
        with transaction(self.engine) as session:
            conn = session.connection()
            address = self._reserve_address(conn, addr_key, now)
            if address.retry_after(now):
                return Attempt(retry_after=address.retry_after(now))
            user = (
                conn.execute(
                    sa.select(_U.c.username, _U.c.password_hash, _U.c.disabled).where(
                        _U.c.username == username
                    )
                ).first()
                if known
                else None
            )
            reservation = (
                login_guard.reserve_account(
                    conn, username, now=now, limit=settings.login_max_failures, lock=lock
                )
                if user is not None
                else None
            )
            if reservation is None:  # no such user: the same schedule, kept under a keyed hash
                user = None
                reservation = login_guard.reserve_name(
                    conn,
                    self.index.query_hmac("login-username", username),
                    now=now,
                    limit=settings.login_max_failures,
                    lock=lock,
                )
        # Committed: concurrent attempts see this one's count before any password check.
        ok = reservation.may_check and verify_password(
            user.password_hash if user is not None else None, password
        )
        # An unknown name is never logged as typed (people type passwords into the
        # username box); it is kept as a keyed hash, like a searched value.
        actor = Actor(user.username if user else "unknown", "login", client)
        with transaction(self.engine) as session:
            conn = session.connection()
            if ok and user is not None and not user.disabled:
                login_guard.release_account(conn, user.username)
                login_guard.release_address(conn, addr_key, address)
                generation = conn.execute(
                    sa.select(_U.c.token_generation).where(_U.c.username == user.username)
                ).scalar_one()
                self.audit.append(session, AuditEvent(action=AuditAction.LOGIN, actor=actor))
                token, ttl = (issue or self._token)(session, user.username, generation, now)
                return Attempt(token=token, expires_in=ttl)
            self.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.LOGIN_FAILED,
                    actor=actor,
                    outcome=Outcome.DENIED,
                    detail={
                        "known_user": user is not None,
                        "username_hmac": None
                        if user
                        else self.index.query_hmac("login-username", username),
                        "locked": reservation.locked(now),
                        # False: refused on the count alone, the password was never checked.
                        "checked": reservation.may_check,
                        "disabled": bool(user and user.disabled),
                    },
                ),
            )
        LOGIN_FAILURES.inc()  # counted once its audit entry committed
        if address.count == 1:  # a new window: forget addresses whose window is over
            try:
                with transaction(self.engine) as session:
                    login_guard.prune_addresses(
                        session.connection(),
                        now=now,
                        window=timedelta(seconds=settings.login_address_window_seconds),
                    )
            except sa.exc.DBAPIError:  # housekeeping only; the next new window tries again
                pass
        return Attempt(count=reservation.count)

    def change_own_password(
        self,
        username: str,
        current: str,
        hashed: str,
        client: str | None,
        issue: Issue | None = None,
    ) -> Attempt:
        """Checked like a login (the same counters); a success revokes every earlier token.

        ``hashed`` is the new password's Argon2 hash, made by the caller before
        any counter moves (a refused new password counts nothing).
        """
        settings = self.vault.settings
        now = self.clock()
        addr_key = self.address_key(client)
        with transaction(self.engine) as session:
            conn = session.connection()
            address = self._reserve_address(conn, addr_key, now)
            if address.retry_after(now):
                return Attempt(retry_after=address.retry_after(now))
            stored = conn.execute(
                sa.select(_U.c.password_hash).where(_U.c.username == username)
            ).scalar()
            reservation = login_guard.reserve_account(
                conn,
                username,
                now=now,
                limit=settings.login_max_failures,
                lock=timedelta(minutes=settings.login_lock_minutes),
            )
        if reservation is None:  # the caller's row is gone: nothing to change
            return Attempt()
        ok = reservation.may_check and verify_password(stored, current)
        actor = Actor(username, "self", client)
        with transaction(self.engine) as session:
            conn = session.connection()
            if not ok:
                self.audit.append(
                    session,
                    AuditEvent(
                        action=AuditAction.USER_CHANGE,
                        actor=actor,
                        outcome=Outcome.DENIED,
                        detail={
                            "op": "change_own_password",
                            "user": username,
                            "locked": reservation.locked(now),
                        },
                    ),
                )
                return Attempt(count=reservation.count)
            conn.execute(
                sa.update(_U)
                .where(_U.c.username == username)
                .values(password_hash=hashed, failed_logins=0, locked_until=None)
            )
            login_guard.release_address(conn, addr_key, address)
            generation = revoke_tokens(session, username)
            self.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.USER_CHANGE,
                    actor=actor,
                    detail={"op": "change_own_password", "user": username},
                ),
            )
            token, ttl = (issue or self._token)(session, username, generation, now)
        return Attempt(token=token, expires_in=ttl)

    def complete_reset(self, reset: ResetCompletion, client: str | None) -> float | None:
        """None when the password was set, else seconds to wait (429) or 0 (refused).

        Needs no token, so its attempts are counted per client address like
        logins (and per reset, in ``policies.password_reset``).
        """
        now = self.clock()
        addr_key = self.address_key(client)
        actor = Actor(reset.username, "password-reset", client)
        with transaction(self.engine) as session:
            address = self._reserve_address(session.connection(), addr_key, now)
            if address.retry_after(now):
                return address.retry_after(now)
        with transaction(self.engine) as session:
            done = password_reset.complete(
                session,
                username=reset.username,
                admin_code=reset.admin_code,
                holder_code=reset.holder_code,
                new_password_hash=reset.new_password_hash,
                keys=password_reset.ResetKeys(self.vault.keys),
                audit=self.audit,
                actor=actor,
                now=now,
                username_hmac=self.index.query_hmac("login-username", reset.username),
            )
            if done:
                login_guard.release_address(session.connection(), addr_key, address)
        return None if done else 0.0
