"""Putting a backup's database back, marked "restore in progress" until it is brought up to date.

The restored rows never become visible unmarked: on SQLite the mark is written
into a private copy of the backup before that copy is written into place, on
PostgreSQL into ``vault_meta`` after the tables are made and before any row is
loaded (``foundation.dbcopy``). ``open_vault`` refuses a marked database, so
no command or service runs on a log that may be older than one already
published; ``finish`` removes the mark in the transaction of the restore's own
audit entry, the last step.

The target must be empty (no SQLite file, or one without tables; a PostgreSQL
schema that does not exist or holds nothing) unless ``force`` is given, which
deletes what is there first. Which schema: the one the backup was taken from,
and the configured URL's ``search_path`` must lead to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from audit.events import Actor
from foundation.dbcopy import pg_restore, pg_tool, sqlite_restore
from vault import migrate
from vault.backup import BackupError
from vault.creation import sqlite_file
from vault.errors import ArchiveDestroyed, ArchiveNotFound
from vault.models import User, table_of
from vault.store import ArchiveStore
from vault.vault import RESTORE_MARKER, describe

Progress = Callable[[str, int, int], None]


def check_target(engine: Engine, manifest: Mapping[str, Any], *, force: bool) -> None:
    """Refuse, changing nothing, a target that is not where this backup can go."""
    kind = manifest["database"]["kind"]
    if engine.dialect.name != kind:
        raise BackupError(
            f"the backup is of a {kind} database but VAULT_DATABASE_URL names a "
            f"{engine.dialect.name} one ({describe(engine)})"
        )
    if manifest["database"].get("schema_revision") != migrate.head():
        raise BackupError(
            f"the backup's schema is at revision {manifest['database'].get('schema_revision')}, "
            f"this version of archive-vault is at {migrate.head()}: restore it with the version "
            "that wrote it, then run `archive-vault upgrade`"
        )
    if kind == "postgresql":
        pg_tool("pg_restore")  # missing: said now, before anything is deleted or created
    held = _objects(engine, manifest)
    if held and not force:
        raise BackupError(
            f"the database {describe(engine)} is not empty ({held} objects): restore into an "
            "empty database, or pass --force to delete everything in it first"
        )


def _objects(engine: Engine, manifest: Mapping[str, Any]) -> int:
    if engine.dialect.name == "sqlite":
        path = sqlite_file(engine)
        if path is None:
            raise BackupError("cannot restore into an in-memory SQLite database")
        if not path.exists() or path.stat().st_size == 0:
            return 0
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar_one())
    schema = _pg_schema(engine, manifest)
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = :s) + (SELECT count(*) "
                    "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = :s)"
                ),
                {"s": schema},
            ).scalar_one()
        )


def _pg_schema(engine: Engine, manifest: Mapping[str, Any]) -> str:
    """The backup's schema, refused unless the URL's search_path leads there first."""
    schema = str(manifest["database"].get("pg_schema") or "")
    with engine.connect() as conn:
        path = str(conn.exec_driver_sql("SHOW search_path").scalar_one())
        user = str(conn.exec_driver_sql("SELECT current_user").scalar_one())
        existing = set(conn.exec_driver_sql("SELECT nspname FROM pg_namespace").scalars())
    for part in (p.strip().strip('"') for p in path.split(",")):
        name = user if part == "$user" else part
        if name == schema:
            return schema
        if name in existing:
            break
    raise BackupError(
        f"the backup is of the PostgreSQL schema {schema!r}, but the search_path of "
        f"VAULT_DATABASE_URL ({path}) does not lead to it; add options=-csearch_path%3D{schema}"
    )


def restore_database(
    engine: Engine,
    manifest: Mapping[str, Any],
    backup: Path,
    work_dir: Path,
    *,
    force: bool,
    progress: Progress,
    app_role: str = "",
) -> None:
    """Write the backup's database into the target, marked as a restore in progress.

    ``app_role`` is ``VAULT_APP_ROLE`` (empty: the role named after the database)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    source = backup / str(manifest["database"]["file"])
    if engine.dialect.name == "sqlite":
        target = sqlite_file(engine)
        assert target is not None  # checked by check_target
        engine.dispose()
        # A restore onto a new machine: the data directory may not exist yet.
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if force:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)

        def mark(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO vault_meta (key, value) VALUES (?, ?)", (RESTORE_MARKER, started)
            )

        sqlite_restore(source, target, mark, lambda d, t: progress("database", d, t))
        return
    schema = _pg_schema(engine, manifest)
    with engine.begin() as conn:
        if force:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

    def mark_pg() -> None:
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO vault_meta (key, value) VALUES (:k, :v)"),
                {"k": RESTORE_MARKER, "v": started},
            )

    progress("database (pg_restore)", 0, 1)
    pg_restore(engine.url, schema, source, mark_pg, work_dir)
    engine.dispose()  # connections from before the tables existed cached nothing stale
    migrate.secure(engine, app_role)
    progress("database (pg_restore)", 1, 1)


def revoke_every_session(conn: sa.Connection, now: datetime) -> int:
    """Void every API token and web session issued before the restore; returns how many
    accounts.

    The restored rows carry the generations of the backup's day. A token or
    session revoked since (a disable, a password change, a containment) carries a
    generation a restored row may hold again, and would open once more. Every
    account's ``tokens_valid_after`` becomes ``now`` (rounded up to the second a
    token's ``iat`` counts in), which the principal check compares with a token's
    issue time and a web session's start, whatever the generations say (a restore
    run again over the database an earlier run left included); the generation moves
    on as well, as every revocation moves it. Everyone signs in again.
    """
    users = table_of(User)
    after = now.replace(microsecond=0) + timedelta(seconds=1)
    done = conn.execute(
        sa.update(users).values(
            token_generation=users.c.token_generation + 1, tokens_valid_after=after
        )
    )
    return int(done.rowcount or 0)


def clear_marker(conn: sa.Connection) -> None:
    """The restore is complete: the vault may start (in the restore entry's transaction)."""
    conn.execute(sa.text("DELETE FROM vault_meta WHERE key = :k"), {"k": RESTORE_MARKER})


@dataclass
class Reapplied:
    """What re-applying a newer log's destructions did."""

    done: list[str] = field(default_factory=list)
    already: int = 0
    missing: int = 0


def reapply_destructions(
    store: ArchiveStore, entries: Iterable[Mapping[str, Any]], actor: Actor
) -> Reapplied:
    """Destroy again every archive a (verified, newer) log records as destroyed."""
    out = Reapplied()
    for entry in entries:
        if entry.get("action") != "archive:destroy" or entry.get("outcome") != "allowed":
            continue
        certificate = (entry.get("detail") or {}).get("certificate") or {}
        for archive_no in entry.get("archives") or []:
            try:
                store.lifecycle.destroy(
                    archive_no,
                    actor=actor,
                    reason=f"re-applied after restore: certificate "
                    f"{certificate.get('certificate_id', '?')} (audit entry {entry['seq']})",
                    approval=entry.get("grant_id"),
                )
                out.done.append(archive_no)
            except ArchiveDestroyed:
                out.already += 1
            except ArchiveNotFound:
                out.missing += 1
    return out
