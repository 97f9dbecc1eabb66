"""The archive index beside the log: written with each entry, backfilled by the migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from audit import evidence
from audit.errors import AuditWriteFailed
from audit.events import Actor, AuditAction, AuditEvent
from audit.log import AuditLog
from audit.models import archive_ref_table, entry_table
from foundation.db import transaction
from vault import migrate


def _refs(log: AuditLog) -> list[tuple[str, int]]:
    log.integrate()  # references are written when an entry is chained
    with log.engine.connect() as conn:
        rows = conn.execute(
            sa.select(archive_ref_table.c.archive_no, archive_ref_table.c.seq).order_by(
                archive_ref_table.c.seq, archive_ref_table.c.archive_no
            )
        ).all()
    return [(str(a), int(s)) for a, s in rows]


def _append(log: AuditLog, *archives: str, actor: str = "ann") -> int:
    """One entry, chained at once (``append_sequenced``); its seq."""
    with transaction(log.engine) as session:
        return log.append_sequenced(
            session, AuditEvent(AuditAction.READ, Actor(actor, "salesperson"), archives=archives)
        )


def test_queued_entries_get_their_references_when_chained(log: AuditLog) -> None:
    """The ordinary append (queued on PostgreSQL): its references arrive with its seq."""
    with transaction(log.engine) as session:
        log.append(session, AuditEvent(AuditAction.READ, Actor("ann", "salesperson")))
        log.append(
            session,
            AuditEvent(AuditAction.READ, Actor("ann", "salesperson"), archives=("KH-2026-000009",)),
        )
    assert _refs(log) == [("KH-2026-000009", 2)]


def test_each_distinct_archive_of_an_entry_is_indexed_in_its_transaction(log: AuditLog) -> None:
    one = _append(log, "KH-2026-000001")
    none = _append(log)
    many = _append(log, "KH-2026-000002", "KH-2026-000003", "KH-2026-000002")
    assert _refs(log) == [
        ("KH-2026-000001", one),
        ("KH-2026-000002", many),
        ("KH-2026-000003", many),
    ]
    assert none not in {s for _a, s in _refs(log)}
    # an append that fails writes neither the entry nor its references
    with pytest.raises(AuditWriteFailed), transaction(log.engine) as session:
        log.append(
            session,
            AuditEvent(AuditAction.READ, Actor("ann", "salesperson"), archives=("x\x00",)),
        )
    assert len(_refs(log)) == 3


def test_the_references_are_append_only(log: AuditLog) -> None:
    _append(log, "KH-2026-000001")
    with pytest.raises(sa.exc.DBAPIError), log.engine.begin() as conn:
        conn.execute(sa.delete(archive_ref_table))
    assert len(_refs(log)) == 1


def test_evidence_lookups_use_the_indexes_and_stop_at_the_head(log: AuditLog) -> None:
    a = _append(log, "KH-2026-000001", actor="ann")
    _append(log, "KH-2026-000002", actor="bob")
    c = _append(log, "KH-2026-000001", actor="bob")
    since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=3650)
    by_archive = log.entries_by_archives(["KH-2026-000001"], since, until, upto=c, limit=10)
    assert [r[0] for r in by_archive] == [a, c]
    assert [
        r[0] for r in log.entries_by_archives(["KH-2026-000001"], since, until, upto=a, limit=10)
    ] == [a]
    assert [r[0] for r in log.entries_by_account("bob", since, until, upto=c, limit=10)] == [
        a + 1,
        c,
    ]
    frozen = evidence.freeze(by_archive)
    assert [e["seq"] for e in frozen] == [a, c]
    assert all(evidence.frozen_leaf(e).hex() == e["entry_hash"] for e in frozen)


def test_the_migration_backfills_entries_written_before_it(vault) -> None:
    log = vault.audit_log()
    first = _append(log, "KH-2026-000001", "KH-2026-000002")
    before = _refs(log)
    # The revision before the one that adds the index, whatever number it was given.
    script = ScriptDirectory.from_config(migrate.config())
    adds = next(r for r in script.walk_revisions() if "audit archive index" in (r.doc or ""))
    command.downgrade(migrate.config(vault.engine), str(adds.down_revision))
    with vault.engine.connect() as conn:
        assert not sa.inspect(conn).has_table(archive_ref_table.name)
    migrate.upgrade(vault.engine)
    assert _refs(log) == before and ("KH-2026-000001", first) in before
    with vault.engine.connect() as conn:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes(entry_table.name)}
    assert "ix_audit_entry_actor_time" in indexes
