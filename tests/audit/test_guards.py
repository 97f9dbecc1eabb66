"""The database refuses UPDATE, DELETE (and TRUNCATE on PostgreSQL) on the audit tables."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session

from audit.events import Actor, AuditAction, AuditEvent
from audit.guards import DEFAULT_APP_ROLE, guards_installed, install_guards
from audit.locks import lock_and_read_head
from audit.log import AuditLog
from audit.models import AUDIT_TABLES
from audit.queue import integrate_all_locked

from .conftest import append_n

STATEMENTS = [
    "UPDATE audit_entry SET actor = 'mallory' WHERE seq = 1",
    "DELETE FROM audit_entry WHERE seq = 2",
    "DELETE FROM audit_entry",
    "UPDATE audit_checkpoint SET note = 'x'",
    "DELETE FROM audit_checkpoint",
]


@pytest.fixture
def populated(log: AuditLog) -> AuditLog:
    append_n(log, 3)
    log.checkpoint()
    return log


def _count(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.exec_driver_sql("SELECT count(*) FROM audit_entry").scalar_one(),
            conn.exec_driver_sql("SELECT count(*) FROM audit_checkpoint").scalar_one(),
        )


@pytest.mark.parametrize("sql", STATEMENTS)
def test_update_and_delete_are_refused(populated: AuditLog, sql: str) -> None:
    engine = populated.engine
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql(sql)
    assert _count(engine) == (3, 1)
    assert populated.verify().ok


def test_install_guards_is_idempotent(populated: AuditLog) -> None:
    install_guards(populated.engine)
    install_guards(populated.engine)
    assert guards_installed(populated.engine)


def _pg_only(populated: AuditLog) -> None:
    if populated.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL-specific guard")


@pytest.mark.parametrize("table", ["audit_entry", "audit_checkpoint"])
def test_truncate_is_refused_on_postgres(populated: AuditLog, table: str) -> None:
    _pg_only(populated)
    with pytest.raises(DatabaseError, match="append-only"), populated.engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {table} CASCADE")
    assert _count(populated.engine) == (3, 1)


@pytest.mark.parametrize("sql", [*STATEMENTS, "TRUNCATE audit_entry"])
def test_replica_mode_does_not_silence_the_triggers(populated: AuditLog, sql: str) -> None:
    _pg_only(populated)
    with pytest.raises(DatabaseError, match="append-only"), populated.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(sql)
    assert _count(populated.engine) == (3, 1)


def test_app_role_may_only_select_and_insert(populated: AuditLog) -> None:
    _pg_only(populated)
    engine = populated.engine
    # Privileges first, triggers second: the role is refused before any trigger runs.
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SET LOCAL ROLE {DEFAULT_APP_ROLE}")
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_entry").scalar_one() == 3
    for sql in [
        "UPDATE audit_entry SET actor = 'x'",
        "DELETE FROM audit_entry",
        "TRUNCATE audit_entry",
        "UPDATE audit_checkpoint SET note = 'x'",
    ]:
        with pytest.raises(DatabaseError, match="permission denied"), engine.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL ROLE {DEFAULT_APP_ROLE}")
            conn.exec_driver_sql(sql)


def test_app_role_can_append_and_sequence(populated: AuditLog) -> None:
    """The service's role queues an entry and, as the sequencer, chains it and removes it."""
    _pg_only(populated)
    with Session(populated.engine) as session:
        session.connection().exec_driver_sql(f"SET LOCAL ROLE {DEFAULT_APP_ROLE}")
        populated.append(session, AuditEvent(AuditAction.LOGIN, Actor("dora", "officer")))
        session.commit()
    with Session(populated.engine) as session:
        session.connection().exec_driver_sql(f"SET LOCAL ROLE {DEFAULT_APP_ROLE}")
        head = lock_and_read_head(session)
        done = integrate_all_locked(session, head, populated.entry_mac())
        session.commit()
    assert done.count == 1 and done.head is not None and done.head[0] == 4
    assert populated.verify().ok and populated.head() == 4


def test_custom_role_names_are_validated(populated: AuditLog) -> None:
    _pg_only(populated)
    with pytest.raises(ValueError, match="invalid role"):
        install_guards(populated.engine, app_role="x; DROP TABLE audit_entry")
    name = "av_test_" + secrets.token_hex(3)
    install_guards(populated.engine, app_role=name)
    with populated.engine.connect() as conn:
        assert (
            conn.exec_driver_sql(
                f"SELECT has_table_privilege('{name}', 'audit_entry', 'UPDATE')"
            ).scalar_one()
            is False
        )
        conn.exec_driver_sql(f"REVOKE ALL ON {', '.join(AUDIT_TABLES)}, audit_queue FROM {name}")
        conn.exec_driver_sql(
            f"REVOKE ALL ON SCHEMA {conn.exec_driver_sql('SELECT current_schema()').scalar_one()} FROM {name}"
        )
        conn.exec_driver_sql(f"DROP ROLE {name}")
        conn.commit()
