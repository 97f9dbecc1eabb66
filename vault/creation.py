"""What creating a vault leaves behind, and taking it back when the creation fails.

``init`` writes in three places: directories, the keys (the key file, or the
objects it creates in a PKCS#11 token) and the database. A
failure part-way (a migration that fails, a database that goes away, an
interrupt) must leave none of them, or the next ``init`` is refused because a
key file "already exists" while the database holds no vault. So the creation
records, before it writes, what was there already, and on failure removes only
what it made itself: the directories and key file it created, the SQLite file
it created, and otherwise (PostgreSQL, or a SQLite file that was there before)
the tables and functions that were not in the schema before. A PostgreSQL role
it created is left: roles belong to the whole cluster and may be shared by
vaults in other schemas; it is ``NOLOGIN`` and the next ``init`` reuses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

# How long the undo waits for a lock on what it drops before giving up on it.
_PG_LOCK_TIMEOUT = "10s"
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def missing_dirs(path: Path) -> list[Path]:
    """The directories ``path.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database, or None (PostgreSQL, or SQLite in memory)."""
    name = engine.url.database
    if engine.dialect.name != "sqlite" or not name or name == ":memory:":
        return None
    return Path(name)


def _pg_functions(conn: Connection) -> set[str]:
    rows = conn.exec_driver_sql(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = current_schema()::regnamespace"
    )
    return {str(r) for r in rows.scalars()}


@dataclass
class Footprint:
    """What existed before a creation wrote anything, and what it has made since."""

    engine: Engine
    dirs: list[Path] = field(default_factory=list)  # created by this creation, deepest first
    key_file: Path | None = None  # set once this creation wrote it
    # Removes the key objects this creation made in a PKCS#11 token; the names of any left.
    token_keys: Callable[[], list[str]] | None = None
    database_file: Path | None = None  # a SQLite file this creation created
    tables: set[str] | None = None  # the schema's tables before (None: not looked at yet)
    functions: set[str] = field(default_factory=set)

    def take_snapshot(self) -> None:
        """Record the schema's tables (and PostgreSQL functions) before migrating."""
        with self.engine.connect() as conn:
            self.tables = set(sa.inspect(conn).get_table_names())
            if conn.dialect.name == "postgresql":
                self.functions = _pg_functions(conn)

    def undo(self) -> list[str]:
        """Remove what this creation made; the names of what could not be removed.

        Each step is tried even when an earlier one failed: the key file above all
        must go, so that a retry is not refused.
        """
        left: list[str] = []
        if self.database_file is None and self.tables is not None:
            try:
                self._drop_new_objects()
            except SQLAlchemyError:
                left.append(f"tables in {self.engine.url.render_as_string(hide_password=True)}")
        self.engine.dispose()  # no pooled connection keeps a removed SQLite file open
        if self.token_keys is not None:
            left += self.token_keys()
        files = [self.key_file] if self.key_file is not None else []
        if self.database_file is not None:
            db = self.database_file
            files += [db, *(db.with_name(db.name + end) for end in _SQLITE_SIDE_FILES)]
        for path in files:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                left.append(str(path))
        for directory in self.dirs:
            with contextlib.suppress(OSError):  # not empty: something else lives there
                directory.rmdir()
        return left

    def _drop_new_objects(self) -> None:
        before = self.tables or set()
        with self.engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            if not postgres:
                # SQLite checks foreign keys in a DROP TABLE's implicit DELETE.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            with conn.begin():
                if postgres:
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{_PG_LOCK_TIMEOUT}'")
                new = set(sa.inspect(conn).get_table_names()) - before
                prep = conn.dialect.identifier_preparer
                for table in sorted(new):
                    cascade = " CASCADE" if postgres else ""
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {prep.quote(table)}{cascade}")
                if postgres:
                    for function in sorted(_pg_functions(conn) - self.functions):
                        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function} CASCADE")
            if not postgres:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
