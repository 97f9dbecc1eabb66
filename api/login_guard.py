"""Failed logins counted in the database: one count for every worker, changed atomically.

Three counters, each changed by one statement that returns the new value
(``UPDATE … RETURNING`` / ``INSERT … ON CONFLICT DO UPDATE … RETURNING``, on
SQLite ≥ 3.35 and PostgreSQL alike):

* an account's ``app_user.failed_logins`` and ``locked_until``;
* the same pair for a name that is no user (``login_name_counter``, keyed by a
  keyed hash of the name), so that an unknown name follows exactly the schedule
  of a known one: the same delays, the same lock, the same answers;
* attempts per client address in a fixed window (``login_address_counter``,
  keyed by a keyed hash of the address), shared by every worker.

An attempt is *reserved* before the password is checked: the increment commits
first, and the password is checked only when the count it returned is within the
limit. N concurrent guesses therefore count N, and at most ``limit`` of them are
ever checked before the lock; the rest are refused without an Argon2 check. A
success gives its reservation back (the account's count to zero, the address's
count down by one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from vault.auth_models import LoginAddressCounter, LoginNameCounter
from vault.models import User, UTCDateTime

_U = User.__table__  # type: ignore[attr-defined]
_N = LoginNameCounter.__table__  # type: ignore[attr-defined]
_A = LoginAddressCounter.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Reservation:
    """One reserved attempt on an account or a name: its place in the count."""

    count: int
    locked_until: datetime | None
    limit: int

    @property
    def may_check(self) -> bool:
        """Whether this attempt may be checked at all (it came before the lock)."""
        return self.count <= self.limit

    def locked(self, now: datetime) -> bool:
        return not self.may_check or (self.locked_until is not None and self.locked_until > now)


@dataclass(frozen=True, slots=True)
class AddressReservation:
    count: int
    window_start: datetime
    limit: int
    window: timedelta

    def retry_after(self, now: datetime) -> float:
        """Seconds until the address may try again; 0 when this attempt may go on."""
        if self.count <= self.limit:
            return 0.0
        return max((self.window_start + self.window - now).total_seconds(), 1.0)


def _at(value: datetime) -> Any:
    return sa.literal(value, UTCDateTime())


def _insert(conn: Connection, table: sa.Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _next_count(table: sa.Table, now: datetime, limit: int, lock_end: datetime) -> dict[str, Any]:
    """The SET of one more failure on a counter row (column names refer to the old row).

    A lock that has run out starts the count again at one. While locked, the
    count keeps growing from at least ``limit``, so every attempt made against a
    lock gets a count above the limit and is refused (also for rows locked by
    an older version that reset the count when locking).
    """
    until = table.c.locked_until
    expired = sa.and_(until.is_not(None), until <= _at(now))
    locked = sa.and_(until.is_not(None), until > _at(now))
    count = sa.case(
        (expired, 1),
        (
            locked,
            sa.case((table.c.failed_logins < limit, limit), else_=table.c.failed_logins) + 1,
        ),
        else_=table.c.failed_logins + 1,
    )
    lock = sa.case((locked, until), (count >= limit, _at(lock_end)), else_=sa.null())
    return {"failed_logins": count, "locked_until": lock}


def reserve_account(
    conn: Connection, username: str, *, now: datetime, limit: int, lock: timedelta
) -> Reservation | None:
    """Count one attempt on a user's account; None when there is no such user."""
    row = conn.execute(
        sa.update(_U)
        .where(_U.c.username == username)
        .values(**_next_count(_U, now, limit, now + lock))
        .returning(_U.c.failed_logins, _U.c.locked_until)
    ).first()
    return None if row is None else Reservation(int(row[0]), row[1], limit)


def reserve_name(
    conn: Connection, key: str, *, now: datetime, limit: int, lock: timedelta
) -> Reservation:
    """Count one attempt on a name that is no user (``key``: a keyed hash of the name)."""
    stmt = _insert(conn, _N).values(
        key=key, failed_logins=1, locked_until=now + lock if limit <= 1 else None
    )
    row = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[_N.c.key], set_=_next_count(_N, now, limit, now + lock)
        ).returning(_N.c.failed_logins, _N.c.locked_until)
    ).one()
    return Reservation(int(row[0]), row[1], limit)


def release_account(conn: Connection, username: str) -> None:
    """A successful login: the account's count starts again."""
    conn.execute(
        sa.update(_U).where(_U.c.username == username).values(failed_logins=0, locked_until=None)
    )


def reserve_address(
    conn: Connection, key: str, *, now: datetime, limit: int, window: timedelta
) -> AddressReservation:
    """Count one attempt from an address (``key``: a keyed hash) in the current window."""
    fresh = _A.c.window_start <= _at(now - window)
    stmt = _insert(conn, _A).values(key=key, window_start=now, attempts=1)
    row = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[_A.c.key],
            set_={
                "attempts": sa.case((fresh, 1), else_=_A.c.attempts + 1),
                "window_start": sa.case((fresh, _at(now)), else_=_A.c.window_start),
            },
        ).returning(_A.c.attempts, _A.c.window_start)
    ).one()
    return AddressReservation(int(row[0]), row[1], limit, window)


def release_address(conn: Connection, key: str, reservation: AddressReservation) -> None:
    """A successful attempt gives its place in the address's window back."""
    conn.execute(
        sa.update(_A)
        .where(
            _A.c.key == key,
            _A.c.window_start == _at(reservation.window_start),
            _A.c.attempts > 0,
        )
        .values(attempts=_A.c.attempts - 1)
    )


def prune_addresses(conn: Connection, *, now: datetime, window: timedelta) -> None:
    """Forget addresses whose window is over (their next attempt starts a new one anyway)."""
    conn.execute(sa.delete(_A).where(_A.c.window_start <= _at(now - window)))


def failure_delay(base: float, count: int) -> float:
    """Seconds to wait before answering the ``count``-th failure in a row.

    One schedule for every name, known or not (the count of an unknown name is
    kept just like an account's), so the answer's timing says nothing about
    whether a username exists.
    """
    return base * min(2 ** max(count - 2, 0), 8)
