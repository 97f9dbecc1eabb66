"""Login counters in the database: exact under concurrency, one schedule for every name.

The unit tests drive ``api.login_guard`` directly on both databases; the served
test sends real parallel requests to ``archive-vault serve --workers 2`` on
PostgreSQL, where a count kept in a worker's memory or read and written back
would lose updates.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from api import login_guard
from api.security import _hasher
from audit.models import AuditEntry
from foundation.db import transaction
from policies.directory import add_user
from tests.served import served_cli, vault_env
from vault.models import User

LIMIT, LOCK = 5, timedelta(minutes=15)
PASSWORD = "correct horse battery staple"


def _user(vault, name: str = "li.na") -> None:
    with transaction(vault.engine) as session:
        user = add_user(session, username=name, roles=["salesperson"], department="销售一部")
        user.password_hash = _hasher.hash(PASSWORD)
        session.add(user)


def _account(vault, now: datetime, name: str = "li.na") -> login_guard.Reservation:
    with transaction(vault.engine) as session:
        r = login_guard.reserve_account(session.connection(), name, now=now, limit=LIMIT, lock=LOCK)
    assert r is not None
    return r


def _name(vault, now: datetime, key: str = "k" * 64) -> login_guard.Reservation:
    with transaction(vault.engine) as session:
        return login_guard.reserve_name(session.connection(), key, now=now, limit=LIMIT, lock=LOCK)


def _row(vault, name: str = "li.na") -> tuple[int, datetime | None]:
    t = User.__table__
    with vault.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(
                sa.select(t.c.failed_logins, t.c.locked_until).where(t.c.username == name)
            ).one()
        )


def test_the_account_counter_locks_at_the_limit_and_refuses_past_it(vault) -> None:
    _user(vault)
    now = datetime.now(UTC)
    seen = [_account(vault, now) for _ in range(8)]
    assert [r.count for r in seen] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r.may_check for r in seen] == [True] * LIMIT + [False] * 3
    assert [r.locked_until is not None for r in seen] == [False] * 4 + [True] * 4
    assert _row(vault)[0] == 8 and _row(vault)[1] == now + LOCK
    # the lock runs out: counting starts again, and the next attempt may be checked
    later = now + LOCK + timedelta(seconds=1)
    again = _account(vault, later)
    assert (again.count, again.locked_until, again.may_check) == (1, None, True)
    # a success gives the count back
    with transaction(vault.engine) as session:
        login_guard.release_account(session.connection(), "li.na")
    assert _row(vault) == (0, None)


def test_a_lock_from_before_the_reserving_count_still_refuses(vault) -> None:
    """A row locked with its count reset (as the vault used to lock) refuses every attempt."""
    _user(vault)
    now = datetime.now(UTC)
    with vault.engine.begin() as conn:
        t = User.__table__
        conn.execute(sa.update(t).values(failed_logins=0, locked_until=now + timedelta(minutes=3)))
    r = _account(vault, now)
    assert not r.may_check and r.count == LIMIT + 1


def test_an_unknown_name_follows_the_same_schedule_as_an_account(vault) -> None:
    _user(vault)
    now = datetime.now(UTC)
    moments = [now] * 7 + [now + LOCK + timedelta(seconds=1)] * 2
    known = [_account(vault, t) for t in moments]
    unknown = [_name(vault, t) for t in moments]
    assert [(r.count, r.locked_until, r.may_check) for r in known] == [
        (r.count, r.locked_until, r.may_check) for r in unknown
    ]


def test_concurrent_reservations_all_count_and_at_most_the_limit_may_be_checked(vault) -> None:
    _user(vault)
    now = datetime.now(UTC)
    n = 12
    barrier = threading.Barrier(n)
    results: list[login_guard.Reservation] = []
    errors: list[BaseException] = []

    def guess() -> None:
        try:
            barrier.wait()
            results.append(_account(vault, now))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guess) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(r.count for r in results) == list(range(1, n + 1))
    assert sum(r.may_check for r in results) == LIMIT
    failed, locked_until = _row(vault)
    assert failed == n and locked_until == now + LOCK


def test_the_address_window_counts_every_attempt_and_starts_again(vault) -> None:
    now, window = datetime.now(UTC), timedelta(seconds=300)

    def reserve(at: datetime) -> login_guard.AddressReservation:
        with transaction(vault.engine) as session:
            return login_guard.reserve_address(
                session.connection(), "a" * 64, now=at, limit=3, window=window
            )

    seen = [reserve(now) for _ in range(4)]
    assert [r.count for r in seen] == [1, 2, 3, 4]
    assert [r.retry_after(now) for r in seen[:3]] == [0.0] * 3
    assert seen[3].retry_after(now) == 300.0
    with transaction(vault.engine) as session:  # a success gives its place back
        login_guard.release_address(session.connection(), "a" * 64, seen[3])
    assert reserve(now).count == 4
    fresh = reserve(now + window)
    assert (fresh.count, fresh.window_start) == (1, now + window)


# -- real parallel clients against a served vault with two workers (PostgreSQL) --------


@pytest.fixture
def served(vault) -> Iterator[str]:
    """``archive-vault serve --workers 2`` over the test's PostgreSQL schema."""
    if vault.engine.dialect.name != "postgresql":
        pytest.skip("several workers need PostgreSQL")
    _user(vault)
    env = vault_env(vault, VAULT_LOGIN_DELAY_SECONDS="0", VAULT_LOGIN_ADDRESS_MAX_FAILURES="20")
    with served_cli(vault.settings.data_dir, "--workers", "2", env=env) as served:
        yield served.base


def _parallel(base: str, forms: list[dict[str, str]]) -> list[int]:
    barrier = threading.Barrier(len(forms))
    codes: list[int] = []

    def one(form: dict[str, str]) -> None:
        with httpx.Client(base_url=base, timeout=120) as c:
            barrier.wait()
            codes.append(c.post("/auth/token", data=form).status_code)

    threads = [threading.Thread(target=one, args=(f,)) for f in forms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def test_parallel_guessing_on_two_workers_locks_the_account(vault, served) -> None:
    codes = _parallel(served, [{"username": "li.na", "password": f"guess-{i}"} for i in range(12)])
    assert sorted(codes) == [401] * 12
    failed, locked_until = _row(vault)
    assert failed == 12 and locked_until is not None and locked_until > datetime.now(UTC)
    right = httpx.post(served + "/auth/token", data={"username": "li.na", "password": PASSWORD})
    assert right.status_code == 401
    # every guess is audited, and only the first LIMIT were checked at all
    entries = AuditEntry.__table__
    vault.audit_log().integrate()  # chained, as every reader of the log would see them
    with vault.engine.connect() as conn:
        details = [
            json.loads(detail)
            for detail in conn.execute(
                sa.select(entries.c.detail).where(
                    entries.c.action == "auth:login-failed", entries.c.actor == "li.na"
                )
            ).scalars()
        ]
    assert len(details) == 13
    assert sum(1 for d in details if d["checked"]) == LIMIT

    # The per-address limit (20) is shared by both workers: 13 attempts so far, so of
    # 16 more from this address exactly 7 are answered and 9 refused with 429.
    codes = _parallel(served, [{"username": f"nobody.{i}", "password": "x"} for i in range(16)])
    assert sorted(codes) == [401] * 7 + [429] * 9
