"""Appending, checkpoints, queries and fail-closed behaviour (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import sqlalchemy as sa

from audit.checkpoint import open_checkpoint
from audit.errors import AuditIntegrityError, AuditQueryError, AuditWriteFailed
from audit.events import Actor, AuditAction, AuditEvent, Outcome
from audit.log import AuditLog
from audit.merkle import ZERO_HASH, verify_consistency, verify_inclusion
from audit.models import entry_table
from foundation.db import transaction

from .conftest import FakeClock, append_n, make_event


def test_append_builds_a_gapless_chain(log: AuditLog) -> None:
    assert append_n(log, 5) == [1, 2, 3, 4, 5]
    with log.engine.connect() as conn:
        rows = conn.execute(sa.select(entry_table).order_by(entry_table.c.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == ZERO_HASH
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.entry_hash
    assert log.verify().ok


def test_append_does_not_commit_and_rollback_leaves_nothing(log: AuditLog) -> None:
    with pytest.raises(RuntimeError), transaction(log.engine) as session:
        log.append(session, make_event(1))
        raise RuntimeError("the caller failed after appending")
    assert log.head() == 0
    append_n(log, 1)
    assert log.head() == 1  # the seq was not burnt: still gapless


def _refuse_inserts_at(engine: sa.Engine, seq: int) -> None:
    """Make the database itself refuse the insert of entry ``seq`` (a late write failure)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse_append BEFORE INSERT ON audit_entry WHEN NEW.seq = {seq} "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_append() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'disk full'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_append BEFORE INSERT ON audit_entry FOR EACH ROW "
                f"WHEN (NEW.seq = {seq}) EXECUTE FUNCTION refuse_append()"
            )
            # PostgreSQL admits entries through the queue: refuse event ``seq``'s there too.
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_queued BEFORE INSERT ON audit_queue FOR EACH ROW "
                f"""WHEN (NEW.archives = '["KH-{seq:05d}"]') EXECUTE FUNCTION refuse_append()"""
            )


def test_fail_closed_when_append_raises(log: AuditLog) -> None:
    """The real append fails inside the caller's transaction: an error, and nothing commits.

    The first append of the transaction succeeds; the second is refused by the
    database. The caller never reaches the code after it, and the transaction's
    earlier write (the first entry) is rolled back with it.
    """
    _refuse_inserts_at(log.engine, 2)
    released: list[str] = []
    with pytest.raises(AuditWriteFailed) as info, transaction(log.engine) as session:
        log.append(session, make_event(1))
        log.append(session, make_event(2))
        released.append("plaintext")  # never reached: the caller releases after append
    assert released == []
    assert isinstance(info.value.__cause__, sa.exc.DBAPIError)  # the database's refusal
    assert "could not be written" in str(info.value) and "KH-" not in str(info.value)
    assert log.head() == 0  # the first entry went with the transaction
    assert append_n(log, 1) == [1]  # and the log goes on, gapless


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"detail": {"score": 1.5}}, "float"),
        ({"purpose": "line\x1b[31m"}, "control"),
        ({"archives": "KH-1"}, "list"),
        ({"actor": Actor("", "r")}, "actor"),
        ({"detail": {"a": {"b": {"c": {"d": {"e": 1}}}}}}, "deeper"),
        ({"action": "archive:peek"}, "unknown"),
    ],
)
def test_invalid_events_are_refused(log: AuditLog, kw: dict, message: str) -> None:
    with pytest.raises(AuditWriteFailed, match=message), transaction(log.engine) as session:
        log.append(session, make_event(1, **kw))
    assert log.head() == 0


def test_checkpoints_are_signed_notes_that_extend_each_other(log: AuditLog) -> None:
    assert log.checkpoint() is None  # nothing to sign on an empty log
    append_n(log, 3)
    first = log.checkpoint()
    assert first is not None and first.size == 3
    assert log.checkpoint() is None  # the tree did not grow
    append_n(log, 4, start=3)
    second = log.checkpoint_if_new()
    assert second is not None and second.size == 7
    opened = open_checkpoint(second.note, log.public_key, log.origin)
    assert opened.root == second.root
    body = second.note.split("\n\n")[0]
    assert body.split("\n") == [log.origin, "7", second.root_b64]
    verify_consistency(3, 7, first.root, second.root, log.consistency_proof(3, 7))
    with log.engine.connect() as conn:
        leaf = conn.execute(
            sa.select(entry_table.c.entry_hash).where(entry_table.c.seq == 5)
        ).scalar()
    verify_inclusion(4, 7, leaf, log.inclusion_proof(5), second.root)


def test_checkpoint_if_due_counts_entries_and_time(vault, clock: FakeClock) -> None:
    class S:
        audit_checkpoint_every_entries = 5
        audit_checkpoint_every_seconds = 60.0

    log = AuditLog(
        engine=vault.engine, keys=vault.keys, settings=S(), clock=clock, auto_checkpoint=False
    )
    append_n(log, 1)
    assert log.checkpoint_if_due() is not None  # the first checkpoint is always due
    append_n(log, 2, start=1)
    assert log.checkpoint_if_due() is None  # 2 < 5 entries and no time passed
    assert log.checkpoint_if_due(now=clock.now + timedelta(seconds=61)) is not None
    append_n(log, 5, start=3)
    assert log.checkpoint_if_due().size == 8


def test_auto_checkpoint_after_commit(vault, clock: FakeClock) -> None:
    class S:
        audit_checkpoint_every_entries = 4
        audit_checkpoint_every_seconds = 3600.0

    log = AuditLog(engine=vault.engine, keys=vault.keys, settings=S(), clock=clock)
    append_n(log, 9)
    cp = log.latest_checkpoint()
    assert cp is not None and cp.size >= 8


def test_refuses_to_sign_after_the_last_signed_entry_was_edited(filled: AuditLog, tamper) -> None:
    tamper(filled.engine, "UPDATE audit_entry SET actor = 'mallory' WHERE seq = 20")
    append_n(filled, 1, start=50)
    with pytest.raises(AuditIntegrityError, match="21 does not link"):
        filled.checkpoint()


def test_refuses_to_sign_when_the_frontier_is_damaged_and_entries_edited(
    filled: AuditLog, tamper
) -> None:
    tamper(
        filled.engine,
        "UPDATE audit_entry SET actor = 'mallory' WHERE seq = 3",
        "UPDATE audit_checkpoint SET frontier = '[]'",
    )
    append_n(filled, 1, start=50)
    with pytest.raises(AuditIntegrityError, match="entry 3") as info:
        filled.checkpoint()
    assert info.value.seq == 3


def test_a_damaged_frontier_alone_is_rebuilt(filled: AuditLog, tamper) -> None:
    tamper(filled.engine, "UPDATE audit_checkpoint SET frontier = '[\"00\"]'")
    append_n(filled, 2, start=50)
    cp = filled.checkpoint()
    assert cp is not None and cp.size == 22
    assert filled.verify().ok


def test_refuses_to_sign_over_a_truncated_log(filled: AuditLog, tamper) -> None:
    tamper(filled.engine, "DELETE FROM audit_entry WHERE seq > 17")
    with pytest.raises(AuditIntegrityError, match="missing"):
        filled.checkpoint()


def test_query_filters(log: AuditLog, clock: FakeClock) -> None:
    start = clock.now
    append_n(log, 6)
    with transaction(log.engine) as session:
        log.append(
            session,
            AuditEvent(
                action=AuditAction.EXPORT,
                actor=Actor("carol", "officer"),
                outcome=Outcome.DENIED,
                archives=("KH-00002", "KH_0000%"),
                reason="no grant",
            ),
        )
    assert [r.seq for r in log.query(actor="user1")] == [5, 2]
    assert [r.seq for r in log.query(archive="KH-00002")] == [7, 3]
    assert [r.seq for r in log.query(archive="KH_0000%")] == [7]  # wildcards are literal
    assert [r.seq for r in log.query(archive="KH-0000")] == []  # whole identifiers only
    assert [r.seq for r in log.query(action=AuditAction.EXPORT)] == [7]
    assert [r.seq for r in log.query(outcome="denied")] == [7]
    mid = start + timedelta(milliseconds=3.5)
    assert [r.seq for r in log.query(since=mid, newest_first=False)] == [4, 5, 6, 7]
    assert [r.seq for r in log.query(until=mid, newest_first=False)] == [1, 2, 3]
    assert [r.seq for r in log.query(limit=2, offset=1)] == [6, 5]
    rec = log.query(limit=1)[0]
    assert rec.archives == ("KH-00002", "KH_0000%") and rec.reason == "no grant"
    with pytest.raises(AuditQueryError):
        log.query(limit=0)
    with pytest.raises(AuditQueryError):
        log.query(action="nope")


def test_public_key_exports(log: AuditLog) -> None:
    assert log.public_key_pem().startswith("-----BEGIN PUBLIC KEY-----")
    name, key_hash, key = log.verifier_key().split("+", 2)
    assert name == log.origin and len(key_hash) == 8 and key.startswith("A")  # 0x01 ‖ key
