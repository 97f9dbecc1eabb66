"""Copying a whole database out and back in: SQLite's online backup, PostgreSQL's dump.

Never a plain file copy of a live SQLite database: a copy taken while a writer
commits, or without its WAL, can be torn. ``sqlite3.Connection.backup`` copies
a consistent snapshot page by page while others go on writing (it restarts when
another connection wrote meanwhile). PostgreSQL is dumped by ``pg_dump`` in its
custom format and read back by ``pg_restore``, both found on ``PATH`` or under
``/usr/lib/postgresql/*/bin``; the password goes to them in ``PGPASSWORD``,
never on a command line other users can read.

Files written here are created with mode 0600 before anything is written into
them. A restore runs a caller's step (``between``) at the moment the tables
exist but hold no row yet (PostgreSQL), or in a private copy before it is
written into place (SQLite): the vault sets its "restore in progress" mark
there, so no moment exists at which the restored rows are visible unmarked.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from psycopg.conninfo import make_conninfo

Progress = Callable[[int, int], None]
_PAGES_PER_STEP = 1024
_PG_TIMEOUT_S = 24 * 3600


class DatabaseCopyError(RuntimeError):
    """A copy could not be made or read back; the message says what to do."""


def create_private(path: Path) -> None:
    """An empty file only its owner may read (refused if it exists)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_backup(source: Path, dest: Path, progress: Progress | None = None) -> None:
    """A consistent copy of a live SQLite database (WAL included) into a new file."""
    create_private(dest)
    src = sqlite3.connect(source)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out, pages=_PAGES_PER_STEP, progress=_pages(progress))
        finally:
            out.close()
    finally:
        src.close()


def sqlite_restore(
    source: Path,
    dest: Path,
    between: Callable[[sqlite3.Connection], None],
    progress: Progress | None = None,
) -> None:
    """Write a backed-up database into ``dest`` with ``between`` already applied to it.

    The backup is first copied into a private file beside ``dest``, ``between``
    runs there, and only then is the result written into ``dest`` (with the
    backup API, so a WAL-mode target stays consistent). The backup itself is
    never modified.
    """
    work = dest.with_name(f".{dest.name}.restoring")
    work.unlink(missing_ok=True)
    try:
        sqlite_backup(source, work, progress)
        conn = sqlite3.connect(work)
        try:
            between(conn)
            conn.commit()
            if not dest.exists():
                create_private(dest)
            target = sqlite3.connect(dest)
            try:
                conn.backup(target, pages=_PAGES_PER_STEP)
            finally:
                target.close()
        finally:
            conn.close()
    finally:
        work.unlink(missing_ok=True)


def _pages(progress: Progress | None) -> Callable[[int, int, int], object] | None:
    if progress is None:
        return None

    def step(_status: int, remaining: int, total: int) -> None:
        progress(total - remaining, total)

    return step


def pg_tool(name: str) -> str:
    """``pg_dump`` or ``pg_restore``: on PATH, else the newest server's under /usr/lib."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        (str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p)],
    )
    if candidates:
        return candidates[-1]
    raise DatabaseCopyError(
        f"{name} was not found on PATH nor under /usr/lib/postgresql/*/bin; install the "
        "PostgreSQL client tools of your server's version (Debian: postgresql-client)"
    )


def _libpq(url: sa.URL) -> tuple[str, dict[str, str]]:
    """A conninfo string without the password, and the environment carrying it."""
    params: dict[str, str | int | None] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "dbname": url.database,
    }
    for key, value in url.query.items():
        params[key] = value if isinstance(value, str) else value[-1]
    # pg_dump and pg_restore need PATH, locale and PG* settings, never the vault's own
    # secrets (an operator's password, a PIN, a key-file passphrase).
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None}), env


def _run(argv: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - a fixed tool with arguments built here
            argv, env=env, capture_output=True, text=True, timeout=_PG_TIMEOUT_S, check=False
        )
    except OSError as exc:
        raise DatabaseCopyError(f"{what}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        # Only the tools' own "error:" lines: they name objects and connection problems.
        # The server's DETAIL and CONTEXT lines that may follow can quote row values.
        lines = [ln for ln in done.stderr.splitlines() if ": error: " in ln]
        reason = lines[-1].split(": error: ", 1)[1][:300] if lines else ""
        reason = reason or f"exit status {done.returncode}"
        raise DatabaseCopyError(f"{what} failed: {reason}")
    return done.stdout


def pg_dump(url: sa.URL, schema: str, dest: Path) -> None:
    """The vault's schema in pg_dump's custom format (compressed, restorable by section)."""
    conninfo, env = _libpq(url)
    create_private(dest)
    _run(
        [
            pg_tool("pg_dump"),
            "--format=custom",
            "--schema",
            schema,
            "--file",
            str(dest),
            "--dbname",
            conninfo,
        ],
        env,
        "pg_dump",
    )


def pg_restore(
    url: sa.URL, schema: str, source: Path, between: Callable[[], None], work_dir: Path
) -> None:
    """Restore a dump of ``schema`` into the (existing, empty) schema of the same name.

    The schema's own entry is left out of the dump's list (the caller creates
    it: ``public`` exists in every new database). Tables first, then
    ``between`` while they are still empty, then the rows, then indexes,
    constraints and triggers. Owners and grants are not restored: the tables
    belong to whoever restores (run it as the vault's owner role) and the caller
    grants the application role again.
    """
    tool = pg_tool("pg_restore")
    conninfo, env = _libpq(url)
    listing = _run([tool, "--list", str(source)], env, "pg_restore --list")
    kept = [
        line
        for line in listing.splitlines()
        if not re.search(rf"\b(SCHEMA - |SCHEMA ){re.escape(schema)}\b", line)
    ]
    list_file = work_dir / ".restore-list"
    list_file.unlink(missing_ok=True)
    create_private(list_file)
    list_file.write_text("\n".join(kept) + "\n", "utf-8")
    try:
        for section in ("pre-data", "data", "post-data"):
            _run(
                [
                    tool,
                    "--no-owner",
                    "--no-acl",
                    "--exit-on-error",
                    "--single-transaction",
                    f"--section={section}",
                    "--use-list",
                    str(list_file),
                    "--dbname",
                    conninfo,
                    str(source),
                ],
                env,
                f"pg_restore ({section})",
            )
            if section == "pre-data":
                between()
    finally:
        list_file.unlink(missing_ok=True)
