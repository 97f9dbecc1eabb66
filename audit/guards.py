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

The append queue (``audit_queue``, PostgreSQL's admission table, see
``audit.queue``) is the one audit table rows leave: the sequencer deletes each
row in the transaction that chains it. So it refuses UPDATE and TRUNCATE, and a
DELETE only of rows whose entry is already in ``audit_entry`` (equal in every
column an event sets; checked once per statement on PostgreSQL, per row on
SQLite): a queued entry cannot be made to vanish without its very content
standing in the chain, and a chained entry written without the key file fails
its MAC. Actor, time and action alone would not do: two reads by one account in
one microsecond (two workers) share them, and the second could then be deleted
once the first was chained. The
application role may SELECT, INSERT and DELETE it.

``install_guards`` is idempotent: it creates the audit tables when missing and
(re)creates the triggers in one transaction, so the guard is never absent.
Objects are created unqualified, in the connection's current schema.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from audit.models import (
    AUDIT_TABLES,
    QUEUE_TABLE,
    archive_ref_table,
    checkpoint_table,
    entry_table,
    queue_table,
)

DEFAULT_APP_ROLE = "archive_vault_app"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PG_FUNCTION = "audit_refuse_change"
_PG_QUEUE_FUNCTION = "audit_queue_check_delete"
# Only rows whose entry stands in the chain may leave the queue: an entry equal in
# every column an event sets. The lookup must go through the (actor, time) index:
# the action alone matches most of the log (reads), and a plan probing
# ``ix_audit_entry_action`` reads every entry of that action for each row deleted,
# so sequencing would slow with the log's size. ``+ 0`` keeps the planner off that
# index whatever its statistics say. ``{same}`` is the dialect's null-safe equality.
_UNCHAINED = (
    "NOT EXISTS (SELECT 1 FROM audit_entry e WHERE e.actor = {q}.actor "
    "AND e.time = {q}.time AND e.action + 0 = {q}.action "
    "AND e.actor_role = {q}.actor_role AND e.outcome = {q}.outcome "
    'AND e.archives = {q}.archives AND e."groups" = {q}."groups" AND e.detail = {q}.detail '
    "AND e.grant_id {same} {q}.grant_id AND e.purpose {same} {q}.purpose "
    "AND e.reason {same} {q}.reason AND e.client {same} {q}.client)"
)
_SAME = {"sqlite": "IS", "postgresql": "IS NOT DISTINCT FROM"}
_QUEUE_TRIGGERS = {
    "sqlite": (f"{QUEUE_TABLE}_no_update", f"{QUEUE_TABLE}_no_unchained_delete"),
    "postgresql": (
        f"{QUEUE_TABLE}_guard_row",
        f"{QUEUE_TABLE}_guard_stmt",
        f"{QUEUE_TABLE}_guard_delete",
    ),
}
PG_HEAD_FUNCTION = "audit_lock_head"


def install_guards(engine: Engine, *, app_role: str = DEFAULT_APP_ROLE) -> None:
    """Create the audit tables if missing and install the append-only guards (idempotent)."""
    SQLModel.metadata.create_all(
        engine, tables=[entry_table, checkpoint_table, archive_ref_table, queue_table]
    )
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
    queue = QUEUE_TABLE in present
    if conn.dialect.name == "sqlite":
        _install_sqlite(conn, tables)
        if queue:
            _install_sqlite_queue(conn)
    elif conn.dialect.name == "postgresql":
        _install_postgres(conn, app_role, tables)
        if queue:
            _install_postgres_queue(conn, app_role)
    else:  # pragma: no cover - only the two supported databases reach here
        raise NotImplementedError(f"no audit guards for {conn.dialect.name}")


def remove_guards(engine: Engine) -> None:
    """Drop the triggers. Only for tests that play an attacker with direct database access."""
    with engine.begin() as conn:
        sqlite = conn.dialect.name == "sqlite"
        for table in AUDIT_TABLES:
            if sqlite:
                for op in ("update", "delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
            else:
                for suffix in ("row", "stmt"):
                    conn.exec_driver_sql(
                        f"DROP TRIGGER IF EXISTS {table}_guard_{suffix} ON {table}"
                    )
        for name in _QUEUE_TRIGGERS[conn.dialect.name]:
            on = "" if sqlite else f" ON {QUEUE_TABLE}"
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}{on}")


def _install_sqlite(conn: Connection, tables: tuple[str, ...]) -> None:
    for table in tables:
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END"
            )


def _install_sqlite_queue(conn: Connection) -> None:
    no_update, no_delete = _QUEUE_TRIGGERS["sqlite"]
    conn.exec_driver_sql(
        f"CREATE TRIGGER IF NOT EXISTS {no_update} BEFORE UPDATE ON {QUEUE_TABLE} "
        f"BEGIN SELECT RAISE(ABORT, '{QUEUE_TABLE} is append-only: UPDATE refused'); END"
    )
    # Dropped and created in the caller's transaction: an older form is replaced, and
    # the queue is never without it.
    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {no_delete}")
    conn.exec_driver_sql(
        f"CREATE TRIGGER {no_delete} BEFORE DELETE ON {QUEUE_TABLE} "
        f"WHEN {_UNCHAINED.format(q='OLD', same=_SAME['sqlite'])} "
        f"BEGIN SELECT RAISE(ABORT, '{QUEUE_TABLE}: an entry leaves only once chained'); END"
    )


def _install_postgres_queue(conn: Connection, app_role: str) -> None:
    """UPDATE and TRUNCATE refused; DELETE only of rows already chained (see the docstring).

    The check runs once per sequencing batch; compiling it with JIT, which a
    large log's estimates would trigger, costs more than the check itself.
    """
    conn.exec_driver_sql(
        f"""
        CREATE OR REPLACE FUNCTION {_PG_QUEUE_FUNCTION}() RETURNS trigger
        LANGUAGE plpgsql SET jit = off AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM gone g
                       WHERE {_UNCHAINED.format(q="g", same=_SAME["postgresql"])}) THEN
                RAISE EXCEPTION '{QUEUE_TABLE}: an entry leaves the queue only once chained'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NULL;
        END
        $$
        """  # noqa: S608 - names are module constants
    )
    _pin_search_path(conn, f"{_PG_QUEUE_FUNCTION}()")
    row, stmt, delete = _QUEUE_TRIGGERS["postgresql"]
    for name, timing, function in (
        (row, f"BEFORE UPDATE ON {QUEUE_TABLE} FOR EACH ROW", _PG_FUNCTION),
        (stmt, f"BEFORE UPDATE OR TRUNCATE ON {QUEUE_TABLE} FOR EACH STATEMENT", _PG_FUNCTION),
        (
            delete,
            f"AFTER DELETE ON {QUEUE_TABLE} REFERENCING OLD TABLE AS gone FOR EACH STATEMENT",
            _PG_QUEUE_FUNCTION,
        ),
    ):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {QUEUE_TABLE}")
        conn.exec_driver_sql(f"CREATE TRIGGER {name} {timing} EXECUTE FUNCTION {function}()")
        conn.exec_driver_sql(f"ALTER TABLE {QUEUE_TABLE} ENABLE ALWAYS TRIGGER {name}")
    conn.exec_driver_sql(f"REVOKE ALL ON {QUEUE_TABLE} FROM PUBLIC")
    conn.exec_driver_sql(f"REVOKE ALL ON {QUEUE_TABLE} FROM {app_role}")
    conn.exec_driver_sql(f"GRANT SELECT, INSERT, DELETE ON {QUEUE_TABLE} TO {app_role}")


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
    _pin_search_path(conn, f"{_PG_FUNCTION}()")
    _pin_search_path(conn, f"{PG_HEAD_FUNCTION}(integer)")
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


def _pin_search_path(conn: Connection, function: str) -> None:
    """Names in the function resolve in the audit tables' schema, never in ``pg_temp``.

    PostgreSQL searches a session's temporary schema first unless told
    otherwise, and any role may create temporary tables: a temporary
    ``audit_entry`` holding the queued rows' actor, time and action would let the
    queue guard pass deletions of entries never chained.
    """
    schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
    conn.exec_driver_sql(f"ALTER FUNCTION {function} SET search_path = {quoted}, pg_temp")


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
            return all(
                f"{t}_no_{op}" in names for t in AUDIT_TABLES for op in ("update", "delete")
            ) and all(name in names for name in _QUEUE_TRIGGERS["sqlite"])
        rows = conn.execute(
            sa.text(
                "SELECT tgname, tgenabled FROM pg_trigger "
                "WHERE tgrelid IN (SELECT to_regclass(t) FROM unnest(CAST(:names AS text[])) t)"
            ),
            {"names": [*AUDIT_TABLES, QUEUE_TABLE]},
        ).all()
        enabled = {name: flag for name, flag in rows}
        return all(
            enabled.get(f"{t}_guard_{s}") == "A" for t in AUDIT_TABLES for s in ("row", "stmt")
        ) and all(enabled.get(name) == "A" for name in _QUEUE_TRIGGERS["postgresql"])
