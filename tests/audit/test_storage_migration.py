"""Migration 0021: the log's storage shrinks, and every entry, proof and guard stays as it was."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from audit.events import Actor, AuditAction, AuditEvent
from audit.guards import guards_installed
from audit.log import AuditLog
from audit.models import entry_table
from foundation.db import transaction
from vault import migrate

STORAGE = "0021"


def _append(log: AuditLog, n: int) -> None:
    for i in range(n):
        with transaction(log.engine) as session:
            log.append(
                session,
                AuditEvent(
                    AuditAction.READ,
                    Actor(f"user{i % 3}", "salesperson"),
                    archives=(f"KH-2026-{i:06d}", f"KH-2026-{i + 1:06d}"),
                    groups=("contact",),
                ),
            )


def _snapshot(engine: sa.Engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with engine.connect() as conn:
        # Through the table's types: the same values whichever way a revision stores them.
        entries = conn.execute(sa.select(entry_table).order_by(entry_table.c.seq)).all()
        refs = conn.execute(
            sa.text("SELECT archive_no, seq FROM audit_archive_ref ORDER BY archive_no, seq")
        ).all()
    return [tuple(r) for r in entries], [tuple(r) for r in refs]


def _indexes(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return {str(ix["name"]) for ix in sa.inspect(conn).get_indexes("audit_entry")}


def _sqlite_sql(engine: sa.Engine, name: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).scalar_one()
        )


def test_upgrade_keeps_every_entry_and_the_verdict(vault) -> None:
    log = vault.audit_log()
    _append(log, 30)
    log.checkpoint()
    before = _snapshot(vault.engine)
    report = log.verify()
    assert report.ok

    command.downgrade(migrate.config(vault.engine), str(int(STORAGE) - 1).zfill(4))
    assert "ix_audit_entry_actor" in _indexes(vault.engine)
    assert _snapshot(vault.engine) == before
    migrate.upgrade(vault.engine)

    assert migrate.current(vault.engine) == migrate.head()
    assert _snapshot(vault.engine) == before
    assert "ix_audit_entry_actor" not in _indexes(vault.engine)
    assert {"ix_audit_entry_actor_time", "ix_audit_entry_time", "ix_audit_entry_action"} <= (
        _indexes(vault.engine)
    )
    assert guards_installed(vault.engine)
    again = log.verify()
    assert again.ok and again.root == report.root and again.entries == report.entries
    if vault.engine.dialect.name == "sqlite":
        # seq is the rowid: the table is read in seq order with no index of its own.
        with vault.engine.connect() as conn:
            assert conn.exec_driver_sql(
                "SELECT type, pk FROM pragma_table_info('audit_entry') WHERE name = 'seq'"
            ).one() == ("INTEGER", 1)
            assert not conn.exec_driver_sql(
                "SELECT count(*) FROM audit_entry WHERE rowid != seq"
            ).scalar()
        assert _sqlite_sql(vault.engine, "audit_archive_ref").rstrip().endswith("WITHOUT ROWID")
    # The guards came back with the rebuilt tables.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), vault.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_archive_ref"))


def test_a_sqlite_log_with_a_seq_that_is_not_an_integer_is_refused(vault) -> None:
    if vault.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite lets a seq column hold text")
    log = vault.audit_log()
    _append(log, 3)
    command.downgrade(migrate.config(vault.engine), str(int(STORAGE) - 1).zfill(4))
    with vault.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_entry_no_update")
        conn.exec_driver_sql("UPDATE audit_entry SET seq = 'two' WHERE seq = 2")
    with pytest.raises(RuntimeError, match="seq that is not an integer"):
        migrate.upgrade(vault.engine)
    with vault.engine.connect() as conn:
        kept = conn.exec_driver_sql("SELECT seq FROM audit_entry ORDER BY rowid").scalars().all()
    assert kept == [1, "two", 3]  # nothing renumbered
