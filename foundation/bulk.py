"""Many rows into one table in one driver call: ``executemany`` on SQLite, ``COPY`` on PostgreSQL.

A bulk import writes about fifteen rows per archive into four tables. Through
SQLAlchemy's Core ``insert`` with a list of dicts, its per-row parameter
handling cost more than SQLite's own work; on PostgreSQL a row-by-row
``executemany`` costs a server round of parsing and planning per row, where
``COPY`` streams them. Rows here are tuples in the order of ``columns``; each
value goes through the column type's own bind processor first (the same
conversions a Core insert makes: aware datetimes, JSON text), so what is stored
is exactly what a Core insert of the same values stores. A processor's result
is reused for a value that is the very same object as the previous row's
(a batch's one timestamp), since processors are pure functions of the value.

Everything runs on the DBAPI connection of the caller's handle, inside its
transaction; a DBAPI error is re-raised as SQLAlchemy's exception class
(``IntegrityError`` for a duplicate key), as a Core execution raises it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from foundation.rawsql import dbapi_of

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    copy: bool  # PostgreSQL COPY ... FROM STDIN, else executemany with positional binds
    order: tuple[int, ...]  # for executemany: index in ``columns`` of each positional bind
    processors: tuple[_Processor, ...]  # by index in ``columns``


class BulkInsert:
    """An INSERT of rows given as tuples in ``columns`` order, compiled once per dialect."""

    __slots__ = ("_mutex", "_plans", "columns", "table")

    def __init__(self, table: sa.Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._plans: dict[tuple[str, str, str], _Plan] = {}
        self._mutex = threading.Lock()

    def _plan(self, dialect: Dialect) -> _Plan:
        key = (dialect.name, dialect.driver, str(dialect.paramstyle))
        plan = self._plans.get(key)
        if plan is None:
            with self._mutex:
                plan = self._plans.get(key) or self._compile(dialect)
                self._plans[key] = plan
        return plan

    def _compile(self, dialect: Dialect) -> _Plan:
        table_columns = [self.table.c[name] for name in self.columns]
        processors = tuple(
            c.type.dialect_impl(dialect).bind_processor(dialect) for c in table_columns
        )
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            quote = dialect.identifier_preparer
            names = ", ".join(quote.format_column(c) for c in table_columns)
            sql = f"COPY {quote.format_table(self.table)} ({names}) FROM STDIN"
            return _Plan(sql, True, (), processors)
        compiled = sa.insert(self.table).compile(dialect=dialect, column_keys=list(self.columns))
        binds = list(compiled.positiontup or ()) if compiled.positional else []
        if not compiled.positional or set(binds) != set(self.columns):
            # Columns with Python-side defaults not listed would need SQLAlchemy's
            # execution context; named paramstyles take the Core path instead.
            raise ValueError(f"bulk insert into {self.table.name} needs every column given")
        order = tuple(self.columns.index(name) for name in binds)
        return _Plan(compiled.string, False, order, processors)

    def run(self, handle: Any, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` in the handle's transaction (nothing for an empty list)."""
        if not rows:
            return
        dbapi, dialect = dbapi_of(handle)
        plan = self._plan(dialect)
        processed = _processed(rows, plan.processors)
        cursor = dbapi.cursor()
        try:
            if plan.copy:
                with cursor.copy(plan.sql) as copy:
                    for row in processed:
                        copy.write_row(row)
            else:
                order = plan.order
                if order != tuple(range(len(order))):
                    processed = [tuple(row[i] for i in order) for row in processed]
                cursor.executemany(plan.sql, processed)
        except dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(
                plan.sql, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        finally:
            cursor.close()


def _processed(
    rows: Sequence[Sequence[Any]], processors: tuple[_Processor, ...]
) -> list[Sequence[Any]]:
    """The rows with each value through its column's bind processor (None included: a JSON
    column stores it as ``null``, as a Core insert does)."""
    active = [(i, p) for i, p in enumerate(processors) if p is not None]
    if not active:
        return list(rows)
    last_in: list[Any] = [object()] * len(processors)
    last_out: list[Any] = [None] * len(processors)
    out: list[Sequence[Any]] = []
    for row in rows:
        values = list(row)
        for i, proc in active:
            value = values[i]
            if value is last_in[i]:
                values[i] = last_out[i]
            else:
                last_in[i] = value
                values[i] = last_out[i] = proc(value)
        out.append(values)
    return out
