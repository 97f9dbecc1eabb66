"""A fixed write sent through libpq's prepared-statement call, on PostgreSQL with psycopg.

The audit append's INSERT runs once per audited read and once per durable
append. Through psycopg's cursor it cost 75–120 µs of Python per call on a
two-core benchmark machine (a cursor, a transformer, a dumper per parameter,
the wait loop) around a statement the database answers in tens; through the
libpq binding psycopg itself ships (``psycopg.pq``, which releases the GIL
while it waits), prepared once per connection, about 6. Nothing else changes:
the statement is the same compiled SQL, the values the same bind-processed
Python values, errors the same psycopg exception classes (built from the
server's result as psycopg builds them), and ``foundation.rawsql`` wraps them
as it wraps every DBAPI error.

Only values whose text form is unambiguous are sent this way (``None``,
``bool``, ``int``, ``str``; ``bytes`` and the DBAPI's ``Binary`` as binary
parameters); anything else goes through the cursor as before. And only in
autocommit, the hot path's mode: psycopg deallocates every prepared statement
of a connection (``DEALLOCATE ALL``) when it rolls back one that holds its own,
so a statement prepared earlier can be gone; in autocommit the failed call has
done nothing and is simply prepared and sent again, but inside a transaction
it would have aborted the transaction. A write inside a transaction therefore
goes through the cursor, which also sends psycopg's ``BEGIN`` when it is the
first.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")

# The names prepared on each connection (a server-side prepared statement lives as
# long as the session; a replaced connection starts with none).
_PREPARED: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()
_MUTEX = threading.Lock()

_INVALID_STATEMENT_NAME = "26000"


class PreparedWrite:
    """One statement without results, compiled for psycopg's ``pyformat`` style."""

    __slots__ = ("binary", "name", "names", "sql")

    def __init__(self, name: str, pyformat_sql: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(0) == "%%":
                return "%"
            key = match.group(1)
            if key not in names:
                names.append(key)
            return f"${names.index(key) + 1}"

        self.sql = _PLACEHOLDER.sub(number, pyformat_sql).encode()
        self.names = tuple(names)
        self.name = name.encode()
        from psycopg import Binary  # built only for psycopg connections: imported by now

        self.binary = Binary  # what SQLAlchemy's psycopg dialect wraps bytes in

    def encode(self, values: dict[str, Any]) -> tuple[list[bytes | None], list[int]] | None:
        """The parameters as libpq takes them; None when a value needs psycopg's dumpers."""
        params: list[bytes | None] = []
        formats: list[int] = []
        for key in self.names:
            value = values[key]
            kind = type(value)
            if value is None:
                params.append(None)
                formats.append(0)
            elif kind is str:
                params.append(value.encode())
                formats.append(0)
            elif kind is bytes or kind is self.binary:
                params.append(value if kind is bytes else bytes(value.obj))
                formats.append(1)
            elif kind is bool:
                params.append(b"t" if value else b"f")
                formats.append(0)
            elif kind is int:
                params.append(str(value).encode())
                formats.append(0)
            else:
                return None
        return params, formats


def usable(conn: Any) -> bool:
    """Whether ``conn`` is a psycopg connection in autocommit, outside any transaction."""
    pgconn = getattr(conn, "pgconn", None)
    if pgconn is None or not conn.autocommit:
        return False
    from psycopg import pq

    return bool(pgconn.transaction_status == pq.TransactionStatus.IDLE)


def execute(
    conn: Any, write: PreparedWrite, params: Sequence[bytes | None], formats: Sequence[int]
) -> int:
    """Run ``write`` on ``conn``; the row count. Raises psycopg's exception classes."""
    import psycopg
    from psycopg import pq

    pgconn = conn.pgconn
    with _MUTEX:
        names = _PREPARED.get(conn)
        if names is None:
            names = _PREPARED[conn] = set()
    for attempt in (1, 2):
        if write.name not in names:
            _check(conn, pgconn.prepare(write.name, write.sql))
            names.add(write.name)
        result = pgconn.exec_prepared(write.name, params, formats)
        if result.status == pq.ExecStatus.COMMAND_OK:
            return int(result.command_tuples or 0)
        error = psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
        if attempt == 1 and error.sqlstate == _INVALID_STATEMENT_NAME:
            # Deallocated behind our back (psycopg's DEALLOCATE ALL on a rollback, a
            # DISCARD ALL): in autocommit nothing was executed, so prepare and send again.
            names.discard(write.name)
            continue
        raise error
    raise AssertionError("unreachable")  # pragma: no cover


def _check(conn: Any, result: Any) -> None:
    import psycopg
    from psycopg import pq

    if result.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
