"""Database-level refusals that make the audit tables append-only.

The hash chain and signed checkpoints *detect* tampering; these guards make
the ordinary ways of tampering fail in the first place, so a bug or a careless
``UPDATE`` in a maintenance shell cannot rewrite history by accident.

SQLite: ``BEFORE UPDATE`` / ``BEFORE DELETE`` triggers that ``RAISE(ABORT)``.
(SQLite has no TRUNCATE; a ``DELETE`` without ``WHERE`` fires the trigger too.)
Someone with write access to the file can still drop the triggers: that is
what verification against the signed checkpoints is for.

PostgreSQL, three layers:

1. a row-level ``BEFORE UPDATE OR DELETE`` trigger and a statement-level
   ``BEFORE UPDATE OR DELETE OR TRUNCATE`` trigger on each audit table, both
   raising an exception;
2. both set ``ENABLE ALWAYS``, so ``SET session_replication_role = replica``
   (which silences ordinary triggers) does not switch them off;
3. an application role (default ``archive_vault_app``, ``NOLOGIN``) granted only
   ``SELECT`` and ``INSERT`` on the audit tables. Deploy by creating the login
   role the API and workers connect as, making it a member
   (``GRANT archive_vault_app TO vault_api``) and never letting it own the
   tables: only the owner (the migration role) can drop or disable triggers.
   The store's own tables need their grants from the store's installer.

``install_guards`` is idempotent: it creates the audit tables when missing and
(re)creates the triggers in one transaction, so the guard is never absent.
Objects are created unqualified, in the connection's current schema.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from audit.models import AUDIT_TABLES, archive_ref_table, checkpoint_table, entry_table

DEFAULT_APP_ROLE = "archive_vault_app"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PG_FUNCTION = "audit_refuse_change"
PG_HEAD_FUNCTION = "audit_lock_head"


def install_guards(engine: Engine, *, app_role: str = DEFAULT_APP_ROLE) -> None:
    """Create the audit tables if missing and install the append-only guards (idempotent)."""
    SQLModel.metadata.create_all(engine, tables=[entry_table, checkpoint_table, archive_ref_table])
    with engine.begin() as conn:
        install_guards_on(conn, app_role=app_role)


def install_guards_on(conn: Connection, *, app_role: str = DEFAULT_APP_ROLE) -> None:
    """The guards on existing audit tables, inside the caller's transaction.

    A migration that rebuilds an audit table calls this in its own transaction,
    so the rebuilt table is never left without its guards. Only the audit tables
    that exist are guarded: an early migration calls this before later ones add
    tables (``audit_archive_ref``), and those call it again once they have.
    """
    present = set(sa.inspect(conn).get_table_names())
    tables = tuple(t for t in AUDIT_TABLES if t in present)
    if conn.dialect.name == "sqlite":
        _install_sqlite(conn, tables)
    elif conn.dialect.name == "postgresql":
        _install_postgres(conn, app_role, tables)
    else:  # pragma: no cover - only the two supported databases reach here
        raise NotImplementedError(f"no audit guards for {conn.dialect.name}")


def remove_guards(engine: Engine) -> None:
    """Drop the triggers. Only for tests that play an attacker with direct database access."""
    with engine.begin() as conn:
        for table in AUDIT_TABLES:
            if conn.dialect.name == "sqlite":
                for op in ("update", "delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
            else:
                for suffix in ("row", "stmt"):
                    conn.exec_driver_sql(
                        f"DROP TRIGGER IF EXISTS {table}_guard_{suffix} ON {table}"
                    )


def _install_sqlite(conn: Connection, tables: tuple[str, ...]) -> None:
    for table in tables:
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END"
            )


def _install_postgres(conn: Connection, app_role: str, tables: tuple[str, ...]) -> None:
    if not _ROLE_NAME.match(app_role):
        raise ValueError(f"invalid role name {app_role!r}")
    conn.exec_driver_sql(
        f"""
        CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit table %% is append-only: %% refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    # Lock and read the head in one round trip. The function is VOLATILE, so its
    # SELECT takes a fresh snapshot after the lock is granted and sees the
    # previous holder's committed entry (a single SQL statement would not).
    conn.exec_driver_sql(
        f"""
        CREATE OR REPLACE FUNCTION {PG_HEAD_FUNCTION}(lock_key integer)
        RETURNS TABLE (head_seq bigint, head_hash bytea)
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key, hashtext(current_schema()));
            RETURN QUERY SELECT e.seq, e.entry_hash FROM {AUDIT_TABLES[0]} e
                ORDER BY e.seq DESC LIMIT 1;
        END
        $$
        """  # noqa: S608 - names are module constants
    )
    for table in tables:
        # Drop + create inside this transaction: the table is never unguarded.
        for suffix, timing in (
            ("row", "BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW"),
            ("stmt", "BEFORE UPDATE OR DELETE OR TRUNCATE ON {t} FOR EACH STATEMENT"),
        ):
            name = f"{table}_guard_{suffix}"
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            conn.exec_driver_sql(
                f"CREATE TRIGGER {name} {timing.format(t=table)} EXECUTE FUNCTION {_PG_FUNCTION}()"
            )
            conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
    # Roles are cluster-wide: create once, tolerate a concurrent creator.
    conn.exec_driver_sql(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app_role}') THEN
                CREATE ROLE {app_role} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END
        $$
        """  # noqa: S608 - app_role matched _ROLE_NAME above
    )
    schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {app_role}')
    names = ", ".join(tables)
    conn.exec_driver_sql(f"REVOKE ALL ON {names} FROM PUBLIC")
    conn.exec_driver_sql(f"REVOKE ALL ON {names} FROM {app_role}")
    conn.exec_driver_sql(f"GRANT SELECT, INSERT ON {names} TO {app_role}")


def guards_installed(engine: Engine) -> bool:
    """True when every expected trigger exists (and, on PostgreSQL, fires ALWAYS)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            names = {
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                )
            }
            return all(f"{t}_no_{op}" in names for t in AUDIT_TABLES for op in ("update", "delete"))
        rows = conn.execute(
            sa.text(
                "SELECT tgname, tgenabled FROM pg_trigger "
                "WHERE tgrelid IN (SELECT to_regclass(t) FROM unnest(CAST(:names AS text[])) t)"
            ),
            {"names": list(AUDIT_TABLES)},
        ).all()
        enabled = {name: flag for name, flag in rows}
        return all(
            enabled.get(f"{t}_guard_{s}") == "A" for t in AUDIT_TABLES for s in ("row", "stmt")
        )
