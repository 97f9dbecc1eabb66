"""Audit test helpers: a log on the shared ``vault`` fixture, appends, and an attacker's hands.

``tamper`` plays someone with direct database access: it drops the append-only
triggers (as the file owner on SQLite or a superuser on PostgreSQL would),
runs raw SQL, and puts the triggers back, so tests can check that verification
catches what the guards would otherwise have refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from audit.guards import install_guards, remove_guards
from audit.log import AuditLog
from foundation.db import transaction
from vault.vault import Vault


class FakeClock:
    """Deterministic time: each call advances one millisecond."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def make_event(i: int, **kw: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "action": AuditAction.READ,
        "actor": Actor(f"user{i % 3}", "salesperson", "10.0.0.7"),
        "outcome": Outcome.ALLOWED,
        "archives": (f"KH-{i:05d}",),
        "groups": ("contact",),
        "grant_id": None,
        "purpose": "follow-up",
        "detail": {"fields": 2},
    }
    base.update(kw)
    return AuditEvent(**base)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log(vault: Vault, clock: FakeClock) -> AuditLog:
    return AuditLog(
        engine=vault.engine,
        keys=vault.keys,
        settings=vault.settings,
        clock=clock,
        auto_checkpoint=False,
    )


def append_n(log: AuditLog, n: int, start: int = 0) -> list[int]:
    """Append n entries, one transaction each, then sequence them; their seqs."""
    first = log.head() + 1
    for i in range(start, start + n):
        with transaction(log.engine) as session:
            log.append(session, make_event(i))
    log.integrate()
    return list(range(first, first + n))


@pytest.fixture
def filled(log: AuditLog) -> AuditLog:
    """20 entries with checkpoints at 8 and 20."""
    append_n(log, 8)
    assert log.checkpoint() is not None
    append_n(log, 12, start=8)
    assert log.checkpoint() is not None
    return log


@contextmanager
def _unguarded(engine: sa.Engine) -> Iterator[sa.Connection]:
    remove_guards(engine)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        install_guards(engine)


@pytest.fixture
def tamper() -> Callable[..., None]:
    def run(engine: sa.Engine, *statements: str, **params: Any) -> None:
        with _unguarded(engine) as conn:
            for sql in statements:
                conn.execute(sa.text(sql), params)

    return run
