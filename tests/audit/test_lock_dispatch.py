"""Which lock and which head read each database gets, and what a failed append names,
without the database.

The PostgreSQL forms run for real in ``test_concurrency.py`` and ``test_log.py`` when
``VAULT_TEST_DATABASE_URL`` is set; here the statements are replaced by recorders so
that a plain SQLite run still checks the dispatch: PostgreSQL takes the append lock and
reads the head in one statement keyed by ``APPEND_LOCK``, takes other locks by their
own key, and never issues SQLite's ``BEGIN IMMEDIATE``; SQLite takes its write lock
only when the connection has not begun a transaction yet.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from audit import appender, locks, queue
from audit.errors import AuditWriteFailed

from .conftest import FakeClock, make_event


class Recorder:
    def __init__(self, row: Any = None) -> None:
        self.row = row
        self.calls: list[tuple[Any, ...]] = []

    def first(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.row


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    recorders = SimpleNamespace(
        xact=Recorder(row=("",)),
        lock_head=Recorder(row=(7, memoryview(b"h" * 32))),
        head=Recorder(row=(3, memoryview(b"s" * 32))),
        timeout=Recorder(row=("30000ms",)),
        raw=[],
    )
    monkeypatch.setattr(locks, "_PG_LOCK_TIMEOUT", recorders.timeout)
    monkeypatch.setattr(locks, "dbapi_of", lambda handle: (handle.dbapi, handle.dialect))
    monkeypatch.setattr(locks, "dialect_of", lambda handle: handle.dialect)
    monkeypatch.setattr(locks, "_PG_XACT_LOCK", recorders.xact)
    monkeypatch.setattr(locks, "_PG_LOCK_HEAD", recorders.lock_head)
    monkeypatch.setattr(locks, "_HEAD_RAW", recorders.head)
    monkeypatch.setattr(locks, "raw_sql", lambda handle, sql: recorders.raw.append((handle, sql)))
    return recorders


def _handle(dialect: str, *, in_transaction: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        dbapi=SimpleNamespace(in_transaction=in_transaction),
        dialect=SimpleNamespace(name=dialect),
    )


@pytest.mark.parametrize("in_transaction", [False, True])
def test_postgresql_locks_and_reads_the_head_in_one_statement(fake, in_transaction) -> None:
    handle = _handle("postgresql", in_transaction=in_transaction)
    assert locks.lock_and_read_head(handle) == (7, b"h" * 32)  # type: ignore[arg-type]
    assert fake.lock_head.calls == [(handle, {"k": locks.APPEND_LOCK})]
    assert fake.xact.calls == [] and fake.head.calls == [] and fake.raw == []
    assert fake.timeout.calls == [(handle, {"t": "30000ms"})]  # a bounded wait, set first


def test_postgresql_reports_an_empty_log_as_no_head(fake) -> None:
    fake.lock_head.row = None
    assert locks.lock_and_read_head(_handle("postgresql")) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [locks.APPEND_LOCK, locks.CHECKPOINT_LOCK])
def test_postgresql_takes_a_transaction_advisory_lock_by_its_key(fake, key) -> None:
    handle = _handle("postgresql")
    locks.take_lock(handle, key)  # type: ignore[arg-type]
    assert fake.xact.calls == [(handle, {"k": key})]
    assert fake.timeout.calls == [(handle, {"t": "30000ms"})]
    assert fake.raw == []


def test_sqlite_takes_the_write_lock_before_reading_the_head(fake) -> None:
    handle = _handle("sqlite")
    assert locks.lock_and_read_head(handle) == (3, b"s" * 32)  # type: ignore[arg-type]
    assert [sql.upper() for _, sql in fake.raw] == ["BEGIN IMMEDIATE"]
    assert fake.raw[0][0] is handle
    assert fake.head.calls == [(handle,)]
    assert fake.xact.calls == [] and fake.lock_head.calls == []


def test_sqlite_inside_a_begun_transaction_begins_nothing(fake) -> None:
    handle = _handle("sqlite", in_transaction=True)
    locks.take_lock(handle, locks.CHECKPOINT_LOCK)  # type: ignore[arg-type]
    assert fake.raw == [] and fake.xact.calls == []


def test_another_database_takes_no_lock_of_either_kind(fake) -> None:
    locks.take_lock(_handle("mysql"), locks.APPEND_LOCK)  # type: ignore[arg-type]
    assert fake.raw == [] and fake.xact.calls == []


# -- what a failed append names -------------------------------------------------------


class DriverError(Exception):
    """A driver's own error class, named unlike any SQLAlchemy wrapper."""


class Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def execute(self, handle: Any, columns: Any) -> None:
        raise self.exc


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("exc", "named"),
    [
        (sa.exc.OperationalError("INSERT", {}, DriverError("x")), "DriverError"),
        (sa.exc.StatementError("no driver error", "INSERT", {}, None), "StatementError"),
        (sa.exc.InvalidRequestError("not a statement"), "InvalidRequestError"),
    ],
)
def test_a_failed_append_names_the_drivers_error_class_and_no_content(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, named: str, dialect: str
) -> None:
    """Whichever table the append writes (the chain on SQLite, the queue on PostgreSQL)."""
    monkeypatch.setattr(appender, "dialect_of", lambda handle: SimpleNamespace(name=dialect))
    monkeypatch.setattr(appender, "lock_and_read_head", lambda handle: None)
    monkeypatch.setattr(queue, "_CHAIN", Failing(exc))
    monkeypatch.setattr(queue, "_ENQUEUE", Failing(exc))
    keys = SimpleNamespace(entry_mac=lambda: None)
    writer = appender.Appender(keys, FakeClock(), None)  # type: ignore[arg-type]
    with pytest.raises(AuditWriteFailed) as caught:
        writer.append(SimpleNamespace(), make_event(1))  # type: ignore[arg-type]
    assert str(caught.value) == f"audit entry could not be written ({named})"
    assert caught.value.__cause__ is exc
