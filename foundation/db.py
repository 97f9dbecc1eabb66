"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` (durable commits: the audit
log relies on them) and ``secure_delete`` so that erased ciphertext and wrapped
keys are overwritten with zeros in the file instead of lingering in free pages.
"""

from __future__ import annotations

import select
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

BUSY_TIMEOUT_MS = 30_000
_NO_WAIT = threading.local()
# The busy timeout a pooled connection was last set to (absent: BUSY_TIMEOUT_MS, from connect).
_BUSY_KEY = "sqlite_busy_timeout_ms"
# Set on a pooled connection whose page cache a bulk write raised (``sqlite_bulk_cache``).
_CACHE_KEY = "sqlite_cache_raised"


@contextmanager
def sqlite_no_wait() -> Iterator[None]:
    """SQLite connections checked out by this thread meanwhile never wait for a lock.

    For work run on the event loop (``api.deps.run_blocking``): when another
    process holds SQLite's write lock, the work fails at once with
    ``database is locked`` (see ``is_sqlite_busy``) instead of freezing the
    loop for up to ``BUSY_TIMEOUT_MS``, and the caller retries it in a thread.
    """
    _NO_WAIT.on = True
    try:
        yield
    finally:
        _NO_WAIT.on = False


def is_sqlite_busy(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, is SQLite's "database is locked"."""
    seen = 0
    while exc is not None and seen < 8:
        orig = getattr(exc, "orig", None)
        for candidate in (exc, orig):
            if isinstance(candidate, sqlite3.OperationalError) and (
                getattr(candidate, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
                or "database is locked" in str(candidate)
            ):
                return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


# PostgreSQL's SQLSTATE for "disk full" (class 53, insufficient resources).
_PG_DISK_FULL = "53100"


def is_storage_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the database's disk is full.

    SQLite raises SQLITE_FULL ("database or disk is full") and PostgreSQL
    ``disk_full`` when a write needs space there is none of. The transaction is
    rolled back either way; this tells a full disk from a database that is down,
    so the operator is told to free space rather than look for an outage.
    """
    seen = 0
    while exc is not None and seen < 8:
        for candidate in (exc, getattr(exc, "orig", None)):
            if isinstance(candidate, sqlite3.OperationalError) and (
                getattr(candidate, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or "database or disk is full" in str(candidate)
            ):
                return True
            if getattr(candidate, "sqlstate", None) == _PG_DISK_FULL:
                return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


PG_CONNECT_TIMEOUT = 10
PG_POOL_SIZE = 16
PG_POOL_OVERFLOW = 16


def make_engine(url: str, *, pg_schema: str | None = None, **kw: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kw
        )

        @sa.event.listens_for(engine, "checkout")
        def _busy_timeout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            # Every checkout gets the wait its thread asks for. The setting stays on
            # the connection until a checkout wants the other one, so the event
            # loop's reads, which all want no wait, run no PRAGMA per request.
            wanted = 0 if getattr(_NO_WAIT, "on", False) else BUSY_TIMEOUT_MS
            if record.info.get(_BUSY_KEY, BUSY_TIMEOUT_MS) != wanted:
                dbapi_conn.execute(f"PRAGMA busy_timeout={wanted}")
                record.info[_BUSY_KEY] = wanted

        @sa.event.listens_for(engine, "checkin")
        def _cache_back(dbapi_conn: Any, record: Any) -> None:
            # Back to SQLite's default page cache before the connection waits in the pool.
            if record is not None and record.info.pop(_CACHE_KEY, False) and dbapi_conn:
                dbapi_conn.execute("PRAGMA cache_size=-2000")

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            for pragma in (
                "journal_mode=WAL",
                "synchronous=FULL",
                "foreign_keys=ON",
                "secure_delete=ON",
                f"busy_timeout={BUSY_TIMEOUT_MS}",
            ):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        return engine
    # Bounded waits on the network: a database that does not answer a connection within
    # PG_CONNECT_TIMEOUT seconds, or a peer that vanished without closing the connection
    # (a crashed host, a cut link), is an error the caller turns into a 503, never a
    # request that waits forever holding a worker's thread.
    # A value the URL sets itself (``?connect_timeout=3``) is the operator's and wins.
    given = sa.make_url(url).query
    connect_args: dict[str, Any] = {
        k: v
        for k, v in {
            "connect_timeout": PG_CONNECT_TIMEOUT,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }.items()
        if k not in given
    }
    if pg_schema:
        connect_args["options"] = f"-c search_path={pg_schema}"
    # A worker serves up to PG_POOL_SIZE requests' statements at once from kept
    # connections. With SQLAlchemy's default of 5, eight concurrent reads opened and
    # closed an overflow connection (a new PostgreSQL backend) on most requests.
    kw.setdefault("pool_size", PG_POOL_SIZE)
    kw.setdefault("max_overflow", PG_POOL_OVERFLOW)
    # No pre-ping: a round trip on every checkout, for a database that restarts rarely.
    # A connection the server closed while pooled is seen without one (``_closed_by_server``);
    # one it closes after that check is replaced by the hot path's first statement
    # (``foundation.rawsql.RawTx``), and a Core or ORM statement on it fails once, a 503.
    engine = sa.create_engine(url, connect_args=connect_args, **kw)
    sa.event.listen(engine, "checkout", _closed_by_server)
    sa.event.listen(engine, "connect", _durable_commits)
    return engine


def _durable_commits(dbapi_conn: Any, _record: Any) -> None:
    """A new session never starts with ``synchronous_commit = off``.

    Any login role may set its own session defaults (``ALTER ROLE CURRENT_USER SET``),
    so the service's role could make every later commit return before its WAL is
    flushed: a read's audit entry, durable when its INSERT returns, would then be lost
    to a database crash after the plaintext left. ``off`` becomes ``on``; any stricter
    setting (``remote_apply``, ``local``...) is the operator's and stays. One statement
    per new connection, committed, or the pool's rollback would undo it.
    """
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(
            "SELECT set_config('synchronous_commit', 'on', false) "
            "WHERE current_setting('synchronous_commit') = 'off'"
        )
    finally:
        cursor.close()
    dbapi_conn.commit()


def _closed_by_server(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection that has something to read before anything was sent.

    An idle, healthy connection has nothing to read. One the server closed (a
    restart, a failover, ``pg_terminate_backend``) has its farewell or the end of
    the stream waiting in the socket, which a poll with no wait sees without a
    round trip. SQLAlchemy then discards every connection pooled before now, as
    after a restart all of them are dead, and checks out a new one.
    """
    try:
        ready, _, _ = select.select([dbapi_conn.fileno()], [], [], 0)
    except Exception as exc:
        raise sa.exc.DisconnectionError("the pooled connection is closed") from exc
    if ready:
        gone = sa.exc.DisconnectionError("the database closed this pooled connection")
        gone.invalidate_pool = True  # every connection pooled before now is discarded
        raise gone


_SQLITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def sqlite_lock(engine: Engine) -> threading.RLock:
    lock = _SQLITE_LOCKS.get(engine)
    if lock is None:
        lock = _SQLITE_LOCKS.setdefault(engine, threading.RLock())
    return lock


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any exception.

    On SQLite, units of work in one process take turns on a lock first: SQLite
    has one writer at a time, and a thread that finds the database locked
    otherwise sleeps in SQLite's busy handler (1, 2, 5, 10 … ms) instead of
    waking the moment the writer commits.
    """
    lock = sqlite_lock(engine) if engine.dialect.name == "sqlite" else None
    if lock is not None:
        lock.acquire()
    try:
        with Session(engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        if lock is not None:
            lock.release()


def sqlite_bulk_cache(session: Session, kib: int) -> None:
    """Let the session's SQLite connection cache ``kib`` KiB of pages until it goes back
    to the pool (nothing on PostgreSQL).

    A bulk import writes its whole file in one transaction into B-trees (indexes
    on random keys, such as the blind indexes) far larger than SQLite's default
    2 MiB cache: pages are evicted and read again, and dirty ones spilled to the
    WAL before the commit. The pool's check-in puts the default back.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    proxied = session.connection().connection
    dbapi = proxied.dbapi_connection
    if dbapi is None:  # an invalidated connection: the statement that follows fails anyway
        return
    proxied.info[_CACHE_KEY] = True
    cursor = dbapi.cursor()
    try:
        cursor.execute(f"PRAGMA cache_size=-{int(kib)}")
    finally:
        cursor.close()


def checkpoint_sqlite(engine: Engine) -> bool:
    """Fold the WAL into the main file and truncate it; True when it fully completed."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as conn:
        busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    return bool(busy == 0)
