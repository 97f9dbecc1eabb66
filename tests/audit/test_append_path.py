"""What one append writes, and how it fails: each column it computes, checked from the row.

``test_log.py`` proves the chain links and verifies; these read back what the
append stored (its place, its time under the lock, its leaf hash over the
canonical bytes, its MAC) and recompute each from the documented construction,
and make it fail for real (a database error, a key that cannot be had) to see
that nothing is written and the caller gets ``AuditWriteFailed``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from audit.codec import canonical_for_columns, format_time
from audit.errors import AuditWriteFailed
from audit.log import AuditLog
from audit.log_keys import LogKeys
from audit.merkle import ZERO_HASH, leaf_hash
from audit.models import entry_table
from foundation.db import make_engine, transaction

from .conftest import FakeClock, make_event

LABEL = b"archive-vault audit-entry-mac v1\n"


def _rows(log: AuditLog) -> list[dict[str, Any]]:
    log.integrate()  # on PostgreSQL the entries wait in the queue until sequenced
    with log.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(sa.select(entry_table).order_by(entry_table.c.seq))
        ]


def test_each_entry_holds_its_place_time_hash_and_mac(log: AuditLog, clock: FakeClock) -> None:
    stamps = []
    for i in range(3):
        with transaction(log.engine) as session:
            log.append(session, make_event(i))
            stamps.append(format_time(clock.now))  # the append's own reading of the clock
    key = log.keys.audit_mac_key()
    rows = _rows(log)
    assert [r["seq"] for r in rows] == [1, 2, 3]
    prev = ZERO_HASH
    for row, stamp in zip(rows, stamps, strict=True):
        assert row["time"] == stamp
        assert bytes(row["prev_hash"]) == prev
        leaf = leaf_hash(canonical_for_columns(row))
        assert bytes(row["entry_hash"]) == leaf
        expected = hmac.new(
            key.key, LABEL + row["seq"].to_bytes(8, "big") + prev + leaf, hashlib.sha256
        ).digest()
        assert bytes(row["mac"]) == expected
        prev = leaf


def test_the_row_holds_the_event(log: AuditLog) -> None:
    with transaction(log.engine) as session:
        log.append(session, make_event(4, purpose="renewal", reason="asked by the customer"))
    (row,) = _rows(log)
    assert row["actor"] == "user1" and row["actor_role"] == "salesperson"
    assert row["action"] == "archive:read" and row["outcome"] == "allowed"
    assert row["purpose"] == "renewal" and row["reason"] == "asked by the customer"
    assert row["client"] == "10.0.0.7"


def test_on_a_bare_connection_too(log: AuditLog) -> None:
    """The hot read path appends on a Connection: same entry, and the caller commits."""
    with log.engine.begin() as conn:
        log.append(conn, make_event(1))
        log.append(conn, make_event(2))
    rows = _rows(log)
    assert [r["seq"] for r in rows] == [1, 2]
    assert bytes(rows[1]["prev_hash"]) == bytes(rows[0]["entry_hash"])
    assert log.verify().ok


def test_without_a_mac_key_the_entry_has_no_mac(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LogKeys, "entry_mac", lambda _self: None)  # a provider without one
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    (row,) = _rows(log)
    assert row["mac"] is None and bytes(row["entry_hash"]) == leaf_hash(canonical_for_columns(row))


def test_a_key_that_cannot_be_had_writes_nothing(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(_self: LogKeys) -> None:
        raise PermissionError("key file unreadable")

    monkeypatch.setattr(LogKeys, "entry_mac", unreadable)
    with pytest.raises(AuditWriteFailed) as caught, transaction(log.engine) as session:
        log.append(session, make_event(1))
    assert str(caught.value) == (
        "audit entry could not be written: no audit MAC key (PermissionError)"
    )
    assert "key file unreadable" not in str(caught.value)
    monkeypatch.undo()
    assert log.head() == 0


def test_a_database_error_is_an_audit_write_failure(log: AuditLog) -> None:
    # The table the append writes to (the queue on PostgreSQL) gone from under the service.
    table = "audit_queue" if log.engine.dialect.name == "postgresql" else "audit_entry"
    with log.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {table}_elsewhere")
    with pytest.raises(AuditWriteFailed) as caught, transaction(log.engine) as session:
        log.append(session, make_event(1))
    assert caught.value.__cause__ is not None
    reason = type(getattr(caught.value.__cause__, "orig", None) or caught.value.__cause__)
    assert str(caught.value) == f"audit entry could not be written ({reason.__name__})"


def test_writers_that_share_no_lock_in_python_still_make_one_chain(vault, backend: str) -> None:
    """Two processes on one SQLite file share no Python lock: the append's own lock (the
    database's write lock taken before the head is read) is what keeps seqs unique."""
    if backend != "sqlite":
        pytest.skip("the PostgreSQL form of the lock is covered by test_concurrency")
    engines = [make_engine(str(vault.engine.url)) for _ in range(3)]
    errors: list[BaseException] = []

    def write(engine: sa.Engine, writer: int) -> None:
        log = AuditLog(
            engine=engine, keys=vault.keys, settings=vault.settings, auto_checkpoint=False
        )
        try:
            for i in range(40):
                with engine.begin() as conn:
                    log.append(conn, make_event(writer * 100 + i))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(e, n)) for n, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for engine in engines:
        engine.dispose()
    assert errors == []
    log = AuditLog(engine=vault.engine, keys=vault.keys, settings=vault.settings)
    assert [r["seq"] for r in _rows(log)] == list(range(1, 121))
    assert log.verify().ok
