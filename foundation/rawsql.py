"""Core statements run straight on the DBAPI cursor: the SQL of the hot read path.

SQLAlchemy's Core execution spends 60–80 µs of Python per statement (execution
context, cache key, result metadata) and a pooled ``Connection`` as much again
per transaction; an audited read runs seven statements in one transaction, so
that overhead was a third of the API's CPU per request. The statements stay
Core objects (one definition for every dialect, no hand-written SQL): each is
compiled once per dialect, and keeps SQLAlchemy's own bind and result
processors, so values come back exactly as a Core execution returns them
(aware datetimes, decoded JSON, booleans). DBAPI errors are re-raised as
SQLAlchemy's exception classes, so callers map "database unavailable" the same
way whichever path ran.

``RawTx`` is one transaction on a pooled DBAPI connection. ``Raw.run`` accepts
it, an SQLAlchemy ``Connection`` or an ORM ``Session`` (their DBAPI connection,
inside their transaction), so code such as the audit append and the grant sync
runs the same statements on every path.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import Session

from foundation import pgprepared
from foundation.db import sqlite_lock


class RawTx:
    """One open transaction on a pooled DBAPI connection (see ``raw_begin``).

    The pool does not ping a connection when it hands it out (a round trip per
    request, a quarter of an audit append's CPU). A connection the database
    closed while it sat in the pool is refused at checkout
    (``foundation.db._closed_by_server``); one closed after that check (a restart,
    a failover, an administrator's ``pg_terminate_backend`` a moment later) is
    noticed by the first statement sent on it, which is then sent again on another connection
    (``replace_if_dropped``) when that cannot do anything twice: a read, or any
    statement inside a transaction (the server rolls back the transaction of a
    connection that went away). A write in autocommit may have committed before
    the link broke, so it is never repeated. Once anything was sent, or the
    DBAPI connection was handed out (``dbapi``), a dropped connection is an error
    for the caller, as it must be: whatever it carried is gone.
    """

    __slots__ = ("_autocommit", "_budget", "_conn", "_engine", "_fairy", "_fresh", "dialect")

    def __init__(
        self,
        dbapi: Any,
        dialect: Dialect,
        *,
        fairy: Any = None,
        engine: Engine | None = None,
        autocommit: bool = False,
    ) -> None:
        self._conn, self.dialect = dbapi, dialect
        self._fairy, self._engine, self._autocommit = fairy, engine, autocommit
        self._fresh = fairy is not None and engine is not None
        self._budget = _REPLACEMENTS

    @property
    def dbapi(self) -> Any:
        """The DBAPI connection. Whoever takes it may send anything on it, so from
        then on a dropped connection is never replaced."""
        self._fresh = False
        return self._conn

    def statement_connection(self) -> tuple[Any, bool]:
        """The connection for the next statement (``_run``), and whether that
        statement is the first sent on it; from now on something has been."""
        fresh, self._fresh = self._fresh, False
        return self._conn, fresh

    def replace_if_dropped(self, exc: Any, *, read: bool) -> bool:
        """Swap in another pooled connection if ``exc`` says this one was dropped
        before the failed statement, its first, was sent; whether to send it again.

        ``read``: the statement only reads, so sending it twice changes nothing.
        """
        if self._engine is None or not (read or not self._autocommit):
            return False
        if not self.dialect.is_disconnect(exc, self._conn, None):
            return False
        while self._budget > 0:  # one budget per checkout: a restart's pool drains
            self._budget -= 1
            self._fairy.invalidate(exc)  # closed, never pooled again
            self._fairy.close()
            self._fairy = None
            try:
                self._fairy = self._engine.raw_connection()
            except self.dialect.loaded_dbapi.Error as again:
                raise _wrap(again, "connect", self.dialect) from again
            dbapi = self._fairy.dbapi_connection
            if dbapi is None:  # invalidated meanwhile by another thread: take another
                continue
            self._conn, self._fresh = dbapi, True
            if self._autocommit:
                dbapi.autocommit = True
            return True
        return False

    def commit(self) -> None:
        self._conn.commit()

    def release(self) -> None:
        """Back to the pool (the pool rolls back whatever is still open)."""
        if self._fairy is not None:
            if self._autocommit:
                try:
                    self._conn.autocommit = False
                except Exception:  # noqa: BLE001 - a broken connection: never pooled again
                    self._fairy.invalidate()
            self._fairy.close()
            self._fairy = None

    def rollback_quietly(self) -> None:
        # A failed rollback means a broken connection: the pool invalidates it on return.
        with suppress(Exception):
            self._conn.rollback()


# How many dropped connections one checkout replaces: after a database restart
# every idle pooled connection is dead, and each is found by trying it.
_REPLACEMENTS = 40


def dbapi_of(handle: RawTx | Connection | Session) -> tuple[Any, Dialect]:
    """The DBAPI connection behind a handle, inside the handle's own transaction."""
    if isinstance(handle, RawTx):
        return handle.dbapi, handle.dialect
    if isinstance(handle, Session):
        handle = handle.connection()
    if isinstance(handle, Connection):
        return handle.connection.dbapi_connection, handle.dialect
    raise TypeError("expected a RawTx, an SQLAlchemy Connection or a Session")


def dialect_of(handle: RawTx | Connection | Session) -> Dialect:
    """The handle's dialect, without taking its connection."""
    if isinstance(handle, RawTx | Connection):
        return handle.dialect
    if isinstance(handle, Session):
        return handle.connection().dialect
    raise TypeError("expected a RawTx, an SQLAlchemy Connection or a Session")


def _wrap(exc: Exception, sql: str, dialect: Dialect) -> Exception:
    return sa.exc.DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error, dialect=dialect)


@contextmanager
def raw_begin(engine: Engine) -> Iterator[RawTx]:
    """A transaction on a pooled DBAPI connection: committed on success, else rolled back.

    On SQLite it takes the same in-process turn as ``foundation.db.transaction``.
    """
    dialect = engine.dialect
    lock = sqlite_lock(engine) if dialect.name == "sqlite" else None
    if lock is not None:
        lock.acquire()
    try:
        tx = _checkout(engine)
        try:
            try:
                yield tx
                tx.commit()
            except dialect.loaded_dbapi.Error as exc:
                tx.rollback_quietly()
                raise _wrap(exc, "commit", dialect) from exc
            except BaseException:
                tx.rollback_quietly()
                raise
        finally:
            tx.release()
    finally:
        if lock is not None:
            lock.release()


def _checkout(engine: Engine, *, autocommit: bool = False) -> RawTx:
    dialect = engine.dialect
    try:
        fairy = engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:
        raise _wrap(exc, "connect", dialect) from exc
    dbapi = fairy.dbapi_connection
    if dbapi is None:  # a pooled connection that was invalidated meanwhile
        fairy.close()
        raise sa.exc.DisconnectionError("the pooled connection is gone")
    if autocommit:
        try:
            dbapi.autocommit = True
        except Exception:
            fairy.invalidate()
            fairy.close()
            raise
    return RawTx(dbapi, dialect, fairy=fairy, engine=engine, autocommit=autocommit)


@contextmanager
def raw_autocommit(engine: Engine) -> Iterator[RawTx]:
    """The hot read path's handle: on PostgreSQL each statement is its own transaction.

    A read's statements are reads and then one write, its audit entry: a single
    INSERT into the append queue (``audit.queue``), durable when the statement
    returns. Under PostgreSQL's READ COMMITTED every statement of a transaction
    takes its own snapshot anyway, so the reads see what they saw before; what
    goes is two round trips (BEGIN, COMMIT) per read. Something failing after the
    entry leaves the entry standing: the record of an attempt that released
    nothing. SQLite appends to the chain under its write lock, which needs the
    transaction: there this is ``raw_begin``.
    """
    if engine.dialect.name != "postgresql":
        with raw_begin(engine) as tx:
            yield tx
        return
    tx = _checkout(engine, autocommit=True)
    try:
        yield tx
    finally:
        tx.release()


@contextmanager
def raw_connect(engine: Engine) -> Iterator[RawTx]:
    """A pooled DBAPI connection for reads only: whatever it did is rolled back.

    No SQLite turn is taken: in WAL mode readers never wait for the writer. The
    pool rolls the connection back when it is returned.
    """
    tx = _checkout(engine)
    try:
        yield tx
    finally:
        tx.release()


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    positional: tuple[str, ...] | None  # bind names in order, for qmark/format dialects
    defaults: dict[str, Any]  # values of literal binds (``column == "grants"``)
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # bind processors by name
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # result processors by position
    row: Any  # namedtuple class, or None for statements without typed result columns
    prepared: pgprepared.PreparedWrite | None  # the libpq path (``foundation.pgprepared``)


class Raw:
    """A Core statement, compiled once per dialect and run on the DBAPI cursor."""

    __slots__ = ("_mutex", "_plans", "column_keys", "prepared", "stmt")

    def __init__(
        self, stmt: Any, *, column_keys: Sequence[str] | None = None, prepared: str | None = None
    ) -> None:
        """``prepared``: a write run once per request, sent on PostgreSQL as a
        statement of that name prepared once per connection (``foundation.pgprepared``)."""
        self.stmt = stmt
        self.prepared = prepared
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._plans: dict[tuple[str, str, str], _Plan] = {}
        self._mutex = threading.Lock()

    def _plan(self, dialect: Dialect) -> _Plan:
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        plan = self._plans.get(key)
        if plan is None:
            with self._mutex:
                plan = self._plans.get(key) or self._compile(dialect)
                self._plans[key] = plan
        return plan

    def _compile(self, dialect: Dialect) -> _Plan:
        kw: dict[str, Any] = {"dialect": dialect}
        if self.column_keys is not None:
            kw["column_keys"] = self.column_keys
        compiled = self.stmt.compile(**kw)
        if getattr(compiled, "escaped_bind_names", None):
            raise ValueError("Raw statements need plain bind names")
        binds = []
        defaults = {}
        for name, bind in compiled.binds.items():
            if bind.expanding:
                raise ValueError("Raw statements cannot use expanding IN parameters")
            if not bind.required:
                defaults[name] = bind.effective_value
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                binds.append((name, proc))
        positional = tuple(compiled.positiontup) if compiled.positional else None
        results: list[tuple[int, Callable[[Any], Any]]] = []
        row = None
        if getattr(self.stmt, "is_select", False):
            columns = list(self.stmt.selected_columns)
            for i, c in enumerate(columns):
                proc = c.type.dialect_impl(dialect).result_processor(dialect, None)
                if proc is not None:
                    results.append((i, proc))
            row = row_type([c.key for c in columns])
        prepared = None
        if (
            self.prepared is not None
            and dialect.name == "postgresql"
            and dialect.driver == "psycopg"
            and positional is None
            and row is None
        ):
            prepared = pgprepared.PreparedWrite(f"archive_vault_{self.prepared}", compiled.string)
        return _Plan(
            compiled.string, positional, defaults, tuple(binds), tuple(results), row, prepared
        )

    @staticmethod
    def _values(plan: _Plan, params: Mapping[str, Any] | None) -> dict[str, Any]:
        values = {**plan.defaults, **params} if params else dict(plan.defaults)
        for name, proc in plan.binds:
            if name in values:
                values[name] = proc(values[name])
        return values

    def _execute(self, handle: Any, params: Mapping[str, Any] | None) -> tuple[Any, _Plan]:
        plan = self._plan(dialect_of(handle))
        values = self._values(plan, params)
        args: Any = values if plan.positional is None else [values[n] for n in plan.positional]
        read = plan.row is not None  # a SELECT
        run = _run(handle, plan.sql, _on_cursor(lambda c: c.execute(plan.sql, args)), read=read)
        return run, plan

    def _rows(self, cursor: Any, plan: _Plan, limit: int | None) -> list[Any]:
        try:
            raw = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
        finally:
            cursor.close()
        if plan.row is None:
            return list(raw)
        out = []
        for r in raw:
            if plan.results:
                r = list(r)
                for i, proc in plan.results:
                    r[i] = proc(r[i])
            out.append(plan.row._make(r))
        return out

    def all(self, handle: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
        cursor, plan = self._execute(handle, params)
        return self._rows(cursor, plan, None)

    def first(self, handle: Any, params: Mapping[str, Any] | None = None) -> Any:
        cursor, plan = self._execute(handle, params)
        rows = self._rows(cursor, plan, 1)
        return rows[0] if rows else None

    def scalar(self, handle: Any, params: Mapping[str, Any] | None = None) -> Any:
        row = self.first(handle, params)
        return None if row is None else row[0]

    def execute(self, handle: Any, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement without results (INSERT, UPDATE); returns the row count."""
        plan = self._plan(dialect_of(handle))
        write = plan.prepared
        if write is not None:
            values = self._values(plan, params)

            def statement(conn: Any) -> Any:
                encoded = write.encode(values) if pgprepared.usable(conn) else None
                if encoded is not None:
                    return pgprepared.execute(conn, write, *encoded)
                cursor = _on_cursor(lambda c: c.execute(plan.sql, values))(conn)
                try:
                    return cursor.rowcount
                finally:
                    cursor.close()

            return int(_run(handle, plan.sql, statement))
        cursor, _plan = self._execute(handle, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def execute_many(self, handle: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement without results once per parameter set, in one driver call."""
        if not rows:
            return
        plan = self._plan(dialect_of(handle))
        batch = []
        for params in rows:
            values = {**plan.defaults, **params}
            for name, proc in plan.binds:
                if name in values:
                    values[name] = proc(values[name])
            batch.append(
                values if plan.positional is None else [values[n] for n in plan.positional]
            )
        _run(handle, plan.sql, _on_cursor(lambda c: c.executemany(plan.sql, batch))).close()


def raw_sql(handle: Any, sql: str) -> None:
    """A fixed driver statement (``BEGIN IMMEDIATE``) on a handle's DBAPI connection."""
    _run(handle, sql, _on_cursor(lambda cursor: cursor.execute(sql))).close()


def _on_cursor(statement: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``statement(cursor)`` on a new cursor of a connection; the cursor, to read and close."""

    def run(conn: Any) -> Any:
        cursor = conn.cursor()
        try:
            statement(cursor)
        except BaseException:
            with suppress(Exception):
                cursor.close()
            raise
        return cursor

    return run


def _run(handle: Any, sql: str, statement: Callable[[Any], Any], *, read: bool = False) -> Any:
    """``statement(connection)`` on the handle's DBAPI connection; what it returns.

    A connection found dropped by its first statement is replaced and the
    statement sent again when that is safe (``RawTx.replace_if_dropped``); any
    other failure is re-raised as SQLAlchemy's exception class.
    """
    while True:
        if isinstance(handle, RawTx):
            conn, first = handle.statement_connection()
            dialect = handle.dialect
        else:
            (conn, dialect), first = dbapi_of(handle), False
        try:
            return statement(conn)
        except dialect.loaded_dbapi.Error as exc:
            if first and handle.replace_if_dropped(exc, read=read):
                continue
            raise _wrap(exc, sql, dialect) from exc


def row_type(names: list[str]) -> Any:
    """A named-tuple class for a statement's columns (their names known only at run time)."""
    return namedtuple("Row", names, rename=True)
