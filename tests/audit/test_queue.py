"""The append queue (PostgreSQL): admission without the chain's lock, sequencing, guards.

What must hold: a request's entry is durable at its own commit without waiting
for anyone's lock; the sequencer chains entries so the log verifies; a queued
row written or edited without the key file is never chained and is reported;
a queued row cannot vanish without its chained entry; a stopped sequencer is
an alarm; every reader of the log sees every committed entry.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from audit import locks
from audit.codec import format_time, parse_time
from audit.events import Actor, AuditAction, AuditEvent
from audit.guards import DEFAULT_APP_ROLE
from audit.locks import APPEND_LOCK, CHECKPOINT_LOCK, lock_and_read_head, take_lock
from audit.log import AuditLog
from audit.models import entry_table, queue_table
from audit.queue import integrate_locked
from foundation.db import transaction
from foundation.rawsql import raw_begin

from .conftest import FakeClock, make_event


def _pg_only(log: AuditLog) -> None:
    if log.engine.dialect.name != "postgresql":
        pytest.skip("the queue admits entries on PostgreSQL; SQLite chains them directly")


def _queued(log: AuditLog) -> int:
    with log.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(queue_table)).scalar_one())


def _chained(log: AuditLog) -> int:
    with log.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(entry_table)).scalar_one())


def test_sqlite_chains_at_once_and_never_queues(log: AuditLog) -> None:
    if log.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's direct path")
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    assert _chained(log) == 1 and _queued(log) == 0


def test_an_append_holds_no_lock_and_is_durable_at_its_own_commit(log: AuditLog) -> None:
    """An open transaction that appended holds no advisory lock, so another request's
    append commits meanwhile; both entries are queued, then chained, and verify."""
    _pg_only(log)
    with raw_begin(log.engine) as first:
        log.append(first, make_event(1))
        cursor = first.dbapi.cursor()
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0
        cursor.close()
        done: list[int] = []

        def other() -> None:
            with raw_begin(log.engine) as second:
                log.append(second, make_event(2))
            done.append(1)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=60)
        assert done == [1]  # committed while the first is still open
        assert _queued(log) == 1  # the second's, durable; the first's is not committed yet
    assert _queued(log) == 2 and _chained(log) == 0
    assert log.integrate().count == 2
    assert _queued(log) == 0 and log.head() == 2
    assert log.verify().ok


def test_readers_of_the_log_see_every_committed_entry(log: AuditLog) -> None:
    with transaction(log.engine) as session:
        log.append(session, make_event(7))
    (record,) = log.query(limit=10)
    assert record.archives == ("KH-00007",) and record.seq == 1


def test_append_sequenced_chains_after_everything_queued(log: AuditLog) -> None:
    for i in range(3):
        with transaction(log.engine) as session:
            log.append(session, make_event(i))
    with transaction(log.engine) as session:
        seq = log.append_sequenced(session, make_event(9))
    assert seq == 4 and _queued(log) == 0
    assert [r.archives[0] for r in log.query(limit=10, newest_first=False)] == [
        "KH-00000",
        "KH-00001",
        "KH-00002",
        "KH-00009",
    ]
    assert log.verify().ok


def test_parallel_writers_are_chained_gapless_and_complete(vault, clock: FakeClock) -> None:
    log = AuditLog(engine=vault.engine, keys=vault.keys, settings=object(), clock=clock)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(40):
                with raw_begin(log.engine) as tx:
                    log.append(tx, make_event(w * 1000 + i))
                if i % 10 == 0:
                    log.integrate()  # sequencers racing the writers and each other
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert log.head() == 240 and _queued(log) == 0
    assert len({r.archives[0] for r in log.query(limit=1000)}) == 240
    log.checkpoint()
    report = log.verify()
    assert report.ok and report.entries == 240, report.summary()


def _insert_queued(log: AuditLog, **values: object) -> None:
    """A row put into the queue by someone with the database role but not the key file."""
    row = {
        "time": "2025-03-01T09:00:00.000000Z",
        "actor": "mallory",
        "actor_role": "salesperson",
        "action": "archive:read",
        "outcome": "allowed",
        "archives": '["KH-00001"]',
        "groups": '["contact"]',
        "detail": "{}",
        "mac": b"\0" * 32,
    }
    row.update(values)
    with log.engine.begin() as conn:
        conn.execute(queue_table.insert(), row)


def test_a_queued_row_without_the_key_is_never_chained_and_is_reported(log: AuditLog) -> None:
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    _insert_queued(log)
    with transaction(log.engine) as session:
        log.append(session, make_event(2))
    log.integrate()
    assert [r.actor for r in log.query(limit=10)] == ["user2", "user1"]  # not mallory
    report = log.verify()
    assert not report.ok
    assert any(p.kind == "forged" and "queued" in p.message for p in report.all_problems())


def test_an_edited_queued_row_is_never_chained(log: AuditLog) -> None:
    _pg_only(log)
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    with log.engine.begin() as conn:  # the guard refuses an UPDATE: the attacker re-inserts
        (row,) = conn.execute(sa.select(queue_table)).mappings().all()
        values = dict(row)
        values.pop("id")
        values["archives"] = '["KH-99999"]'  # an edited copy with the original MAC,
        # a microsecond apart: the queue holds one entry per account and microsecond
        values["time"] = format_time(parse_time(values["time"]) + timedelta(microseconds=1))
    _insert_queued(log, **values)
    log.integrate()
    assert [r.archives for r in log.query(limit=10)] == [("KH-00001",)]
    assert not log.verify().ok


def test_the_queue_refuses_update_truncate_and_deleting_an_unchained_row(log: AuditLog) -> None:
    _pg_only(log)
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    for statement in (
        "UPDATE audit_queue SET actor = 'nobody'",
        "TRUNCATE audit_queue",
        "DELETE FROM audit_queue",
    ):
        with pytest.raises(DBAPIError), log.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert _queued(log) == 1  # the entry is still there, and is chained as usual
    assert log.integrate().count == 1 and _queued(log) == 0 and log.verify().ok


def test_sequencing_finds_chained_entries_without_reading_the_log_by_action(
    log: AuditLog,
) -> None:
    """The delete guard looks each chained entry up by actor and time. Through the
    action index it would read every entry of that action (most of the log) for
    each row leaving the queue: sequencing would slow down as the log grows."""
    _pg_only(log)
    with raw_begin(log.engine) as tx:
        for i in range(900):
            log.append(tx, make_event(i))
    assert log.integrate().count == 900
    with raw_begin(log.engine) as tx:
        for i in range(60):
            log.append(tx, make_event(i))
    with raw_begin(log.engine) as tx:
        done, _last = integrate_locked(tx, lock_and_read_head(tx), log.entry_mac())
        cursor = tx.dbapi.cursor()
        cursor.execute("SELECT pg_stat_get_xact_tuples_returned('ix_audit_entry_action'::regclass)")
        read_by_action = cursor.fetchone()[0]
    assert done.count == 60 and not done.refused
    assert read_by_action < 60, f"the guard read {read_by_action} entries by action"
    assert _queued(log) == 0 and log.verify().ok


def test_a_temporary_table_cannot_stand_in_for_the_chain(log: AuditLog) -> None:
    """The application's role may create temporary tables, which PostgreSQL searches
    first: a temporary ``audit_entry`` with the queued rows' actor, time and action
    must not let the guard pass their deletion."""
    _pg_only(log)
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    role = DEFAULT_APP_ROLE
    with pytest.raises(DBAPIError, match="only once chained"), log.engine.begin() as conn:
        conn.exec_driver_sql(f"SET LOCAL ROLE {role}")
        conn.exec_driver_sql(
            "CREATE TEMP TABLE audit_entry AS SELECT actor, time, action FROM audit_queue"
        )
        conn.exec_driver_sql("DELETE FROM audit_queue")
    assert _queued(log) == 1 and log.integrate().count == 1 and log.verify().ok


def test_an_unchained_row_cannot_be_deleted_on_sqlite_either(log: AuditLog) -> None:
    _insert_queued(log)
    with pytest.raises(DBAPIError), log.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_queue")
    assert _queued(log) == 1


def test_a_stalled_queue_is_an_alarm(vault, clock: FakeClock) -> None:
    class S:
        audit_queue_alarm_seconds = 30.0

    log = AuditLog(
        engine=vault.engine, keys=vault.keys, settings=S(), clock=clock, auto_checkpoint=False
    )
    _pg_only(log)
    with transaction(log.engine) as session:
        log.append(session, AuditEvent(AuditAction.LOGIN, Actor("ann", "salesperson")))
    report = log.verify()
    assert report.ok and any("queued" in n for n in report.notes)
    clock.now += timedelta(seconds=31)
    report = log.verify()
    assert not report.ok and report.problem is not None and report.problem.kind == "stalled"
    log.integrate()
    assert log.verify().ok


def test_the_queued_mac_binds_each_column_and_its_boundaries() -> None:
    from audit.mac import EntryMac, MacKey

    mac = EntryMac(MacKey(b"k" * 32, 1))
    base = mac.queued(["ab", "c", None])
    assert mac.check_queued(["ab", "c", None], base)
    for other in (["a", "bc", None], ["ab", "c", ""], ["ab", "c"], ["ab", "C", None]):
        assert mac.queued(other) != base and not mac.check_queued(other, base)
    assert not mac.check_queued(["ab", "c", None], None)
    assert EntryMac(MacKey(b"j" * 32, 1)).queued(["ab", "c", None]) != base


def _holding(log: AuditLog, key: int) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """Another process's transaction holding one of the log's locks until told to end."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with raw_begin(log.engine) as tx:
            take_lock(tx, key)
            taken.set()
            done.wait(30)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(10)
    return taken, done, holder


def _returns_soon(call: Any) -> Any:
    """``call()`` in a thread: its result, or a failure if it waits on a lock."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(call()), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "waited behind another holder of the lock"
    return out[0]


@pytest.mark.parametrize("key", [APPEND_LOCK, CHECKPOINT_LOCK])
def test_the_cadence_after_a_commit_never_waits_behind_another_sequencer(
    log: AuditLog, key: int
) -> None:
    """After a commit the request's own thread may sequence and sign; if another process is
    doing that already, the request goes on, and the waiting signer tick covers the entries."""
    _pg_only(log)
    with raw_begin(log.engine) as tx:
        log.append(tx, make_event(1))
    _taken, done, holder = _holding(log, key)
    try:
        assert _returns_soon(lambda: log._cadence.checkpoint_if_due(wait=False)) is None
        if key == APPEND_LOCK:
            assert _returns_soon(lambda: log.integrate(wait=False)).busy
            assert _queued(log) == 1
    finally:
        done.set()
        holder.join(10)
    signed = log.checkpoint_if_due()  # the tick and the sweep wait, and sign
    assert signed is not None and signed.size == 1 and _queued(log) == 0
    assert log.verify().ok


def test_a_lock_held_forever_turns_waiting_into_an_error(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone with the application's role can take the chain's advisory lock and sit on it:
    sequencing and signing then fail after a bounded wait (a 503 for a reader), never hang."""
    _pg_only(log)
    monkeypatch.setattr(locks, "LOCK_TIMEOUT_S", 0.5)
    with raw_begin(log.engine) as tx:
        log.append(tx, make_event(1))
    for key, call in ((APPEND_LOCK, log.integrate), (CHECKPOINT_LOCK, log.checkpoint)):
        _taken, done, holder = _holding(log, key)
        failed: list[BaseException] = []

        def waiter(call: Any = call, failed: list[BaseException] = failed) -> None:
            try:
                call()
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                failed.append(exc)

        try:
            worker = threading.Thread(target=waiter, daemon=True)
            worker.start()
            worker.join(10)
            assert not worker.is_alive(), "waited without bound"
            assert failed and isinstance(failed[0], sa.exc.OperationalError)
        finally:
            done.set()
            holder.join(10)
    signed = log.checkpoint()  # the lock free again: everything goes on
    assert signed is not None and signed.size == 1 and log.verify().ok
