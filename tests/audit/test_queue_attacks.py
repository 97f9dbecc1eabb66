"""The append queue attacked with the application's own database role (no key file).

That role may SELECT, INSERT and DELETE ``audit_queue`` and SELECT and INSERT the
other audit tables (``audit.guards``). Each test plays what it can do with that
and fails while the hole it names is open:

* a copy of a queued row carries a MAC that holds (the MAC binds the columns,
  not the row), so without a check the sequencer chains it again: the log then
  holds, verified, an entry the vault never wrote (a read nobody made, a second
  copy of an export);
* the archive index is written with each chained entry; a row put there first
  must not stop the sequencer (the index is not part of the log);
* a queued entry may leave the queue only when an entry with its whole content
  stands in the chain, not one that merely shares its actor, time and action.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from audit.events import Actor, AuditAction, AuditEvent
from audit.guards import DEFAULT_APP_ROLE
from audit.log import AuditLog
from audit.models import archive_ref_table, entry_table, queue_table
from foundation.db import transaction
from foundation.rawsql import raw_autocommit

from .conftest import make_event


def _pg_only(log: AuditLog) -> None:
    if log.engine.dialect.name != "postgresql":
        pytest.skip("the queue admits entries on PostgreSQL; SQLite chains them directly")


def _as_app(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL ROLE {DEFAULT_APP_ROLE}")


def _queued_rows(log: AuditLog) -> list[dict[str, Any]]:
    with log.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(queue_table)).mappings()]


def _replay(log: AuditLog, row: dict[str, Any], **values: Any) -> None:
    """The application's role inserts a copy of a queued row it read, MAC and all."""
    copy = {k: v for k, v in row.items() if k != "id"}
    copy.update(values)
    with log.engine.begin() as conn:
        _as_app(conn)
        conn.execute(queue_table.insert(), copy)


def _chained(log: AuditLog) -> list[tuple[str, str]]:
    with log.engine.connect() as conn:
        rows = conn.execute(
            sa.select(entry_table.c.actor, entry_table.c.archives).order_by(entry_table.c.seq)
        )
        return [(r[0], r[1]) for r in rows]


def test_a_copied_queued_row_is_never_chained_twice(log: AuditLog) -> None:
    _pg_only(log)
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    (row,) = _queued_rows(log)
    with pytest.raises(IntegrityError):
        _replay(log, row)  # while the original still waits: one per account and microsecond
    log.integrate()
    _replay(log, row, id=-5)  # after the original was chained and left the queue, lowest id
    with pytest.raises(IntegrityError):
        _replay(log, row)  # a second copy waits beside the first
    log.integrate()
    assert _chained(log) == [("user1", '["KH-00001"]')]
    report = log.verify()
    assert not report.ok
    assert any(p.kind == "replayed" for p in report.all_problems()), report.summary()


def test_a_copy_of_a_waiting_entry_is_refused_whatever_id_it_claims(log: AuditLog) -> None:
    """A copy numbered before its original would be chained in its place; the database
    refuses any copy while the original waits, so each entry is chained once, as itself."""
    _pg_only(log)
    for i in range(3):
        with transaction(log.engine) as session:
            log.append(session, make_event(i))
    rows = _queued_rows(log)
    for row, claimed in ((rows[2], 1_000_000), (rows[1], -(2**62)), (rows[0], rows[0]["id"])):
        with pytest.raises(IntegrityError):
            _replay(log, row, id=claimed)
    done = log.integrate()
    assert done.count == 3 and not done.replayed and not done.refused
    assert sorted(a for _actor, a in _chained(log)) == [
        '["KH-00000"]',
        '["KH-00001"]',
        '["KH-00002"]',
    ]
    assert log.verify().ok


def test_identical_honest_entries_in_one_microsecond_are_all_chained(log: AuditLog) -> None:
    """One account's identical reads stamped in the same microsecond (two workers, a
    double click) are distinct entries, on the session path and on the read path's bare
    autocommit connection: each is chained, none is taken for a replayed copy."""
    _pg_only(log)
    same = _fixed_clock_log(log)
    actor = Actor("zhang.wei", "salesperson", "10.0.0.7")
    event = AuditEvent(AuditAction.READ, actor, archives=("KH-00001",), groups=("contact",))
    for _ in range(3):
        with transaction(same.engine) as session:
            same.append(session, event)
    for _ in range(3):
        with raw_autocommit(same.engine) as tx:
            same.append(tx, event)
    done = same.integrate()
    assert done.count == 6 and not done.replayed and not done.refused
    times = [r.time for r in same.query(limit=10)]
    assert len(set(times)) == 6  # each a microsecond after the one before
    assert max(times) - min(times) == timedelta(microseconds=5)
    assert same.verify().ok


def test_an_honest_log_with_nothing_replayed_still_verifies(log: AuditLog) -> None:
    _pg_only(log)
    for i in range(5):
        with transaction(log.engine) as session:
            log.append(session, make_event(i))
    assert log.integrate().count == 5
    assert log.verify().ok


def test_a_row_put_in_the_archive_index_first_does_not_stop_the_chain(log: AuditLog) -> None:
    """The archive index is beside the log: the app role may insert into it, so the row
    the sequencer (or, on SQLite, the append) would write may already be there."""
    with log.engine.begin() as conn:
        _as_app(conn)
        conn.execute(
            archive_ref_table.insert(),
            [{"archive_no": "KH-00001", "seq": s} for s in range(1, 4)],
        )
    for i in (1, 1, 1):
        with transaction(log.engine) as session:
            log.append(session, make_event(i))
    log.integrate()
    assert log.head() == 3
    assert log.verify().ok


def _fixed_clock_log(log: AuditLog) -> AuditLog:
    moment = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    return AuditLog(
        engine=log.engine,
        keys=log.keys,
        settings=log.settings,
        clock=lambda: moment,
        auto_checkpoint=False,
    )


def test_a_queued_entry_cannot_leave_behind_another_of_its_actor_time_and_action(
    log: AuditLog,
) -> None:
    """Two reads by one account in the same microsecond (two workers, one user): once
    the first is chained, the second must not be deletable on the strength of it."""
    _pg_only(log)
    same = _fixed_clock_log(log)
    actor = Actor("mallory", "salesperson", "10.0.0.9")
    with transaction(same.engine) as session:
        same.append(session, AuditEvent(AuditAction.READ, actor, archives=("KH-00001",)))
    same.integrate()
    with transaction(same.engine) as session:
        same.append(session, AuditEvent(AuditAction.READ, actor, archives=("KH-00666",)))
    with pytest.raises(DBAPIError, match="only once chained"), same.engine.begin() as conn:
        _as_app(conn)
        conn.exec_driver_sql("DELETE FROM audit_queue")
    same.integrate()
    assert [a for _actor, a in _chained(same)] == ['["KH-00001"]', '["KH-00666"]']


def test_the_sqlite_guard_also_compares_the_whole_entry(log: AuditLog) -> None:
    if log.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's row trigger")
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    (chained,) = _chained(log)
    with log.engine.connect() as conn:
        time, action = conn.execute(sa.select(entry_table.c.time, entry_table.c.action)).one()
    with log.engine.begin() as conn:
        conn.execute(
            queue_table.insert(),
            {
                "time": time,
                "actor": chained[0],
                "actor_role": "salesperson",
                "action": action,
                "outcome": "allowed",
                "archives": '["KH-00666"]',
                "groups": '["contact"]',
                "detail": "{}",
                "mac": b"\0" * 32,
            },
        )
    with pytest.raises(DBAPIError), log.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_queue")


def test_an_entry_the_database_silently_drops_is_a_failed_append(log: AuditLog) -> None:
    """Whoever may add a trigger (the SQLite file's writer; PostgreSQL's table owner) can
    make an INSERT succeed having written nothing. Verification cannot see an entry that
    never existed, so the append itself must: the read is then refused, never served."""
    from audit.errors import AuditWriteFailed

    if log.engine.dialect.name == "sqlite":
        drop = (
            "CREATE TRIGGER drop_entries BEFORE INSERT ON audit_entry "
            "BEGIN SELECT RAISE(IGNORE); END",
        )
    else:
        drop = (
            "CREATE RULE drop_queued AS ON INSERT TO audit_queue DO INSTEAD NOTHING",
            "CREATE RULE drop_entries AS ON INSERT TO audit_entry DO INSTEAD NOTHING",
        )
    with transaction(log.engine) as session:
        log.append(session, make_event(1))
    with log.engine.begin() as conn:
        for sql in drop:
            conn.exec_driver_sql(sql)
    with pytest.raises(AuditWriteFailed), transaction(log.engine) as session:
        log.append(session, make_event(2))
    with pytest.raises(AuditWriteFailed), transaction(log.engine) as session:
        log.append_sequenced(session, make_event(3))
