"""Many rows into one table in one driver call: ``executemany`` on SQLite, ``COPY`` on PostgreSQL.

A bulk import writes about fifteen rows per archive into four tables. Through
SQLAlchemy's Core ``insert`` with a list of dicts, its per-row parameter
handling cost more than SQLite's own work; on PostgreSQL a row-by-row
``executemany`` costs a server round of parsing and planning per row, where
``COPY`` streams them.

Rows are tuples of the ``columns`` values, in that order; ``constant`` columns
take one value for the whole call (a batch's timestamp, a revision number),
given to ``run`` and converted once. Every value goes through its column
type's own bind processor (the conversions a Core insert makes: aware
datetimes, dates and JSON as SQLite stores them), so what is stored is what a
Core insert of the same values stores. The one processor left out is
``LargeBinary``'s on SQLite, which only wraps bytes in ``sqlite3.Binary`` (a
memoryview), bound as the very same BLOB.

The statement is the plain ``INSERT INTO t (c, ...) VALUES (?, ...)`` (or the
``COPY``) with SQLAlchemy's quoting of the table's own names: a compiled Core
insert lists columns in table order, which would cost a reordering of every
row. Everything runs on the DBAPI connection of the caller's handle, inside
its transaction; a DBAPI error is re-raised as SQLAlchemy's class for it
(``IntegrityError`` for a duplicate key), as a Core execution raises it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from foundation.rawsql import dbapi_of

_Processor = Callable[[Any], Any]
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    copy: bool  # PostgreSQL COPY ... FROM STDIN, else executemany with positional binds
    processors: tuple[tuple[int, _Processor], ...]  # (index in a row, processor)
    constants: tuple[_Processor | None, ...]  # per constant column


class BulkInsert:
    """An INSERT of rows given as tuples, compiled once per dialect."""

    __slots__ = ("_mutex", "_plans", "columns", "constant", "table")

    def __init__(
        self, table: sa.Table, columns: Sequence[str], constant: Sequence[str] = ()
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.constant = tuple(constant)
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
        def processor(column: sa.Column[Any]) -> _Processor | None:
            if dialect.name == "sqlite" and isinstance(column.type, sa.LargeBinary):
                return None
            proc: _Processor | None = column.type.dialect_impl(dialect).bind_processor(dialect)
            return proc

        row_columns = [self.table.c[name] for name in self.columns]
        all_columns = row_columns + [self.table.c[name] for name in self.constant]
        quote = dialect.identifier_preparer
        names = ", ".join(quote.format_column(c) for c in all_columns)
        target = quote.format_table(self.table)
        processors = tuple(
            (i, p) for i, p in enumerate(processor(c) for c in row_columns) if p is not None
        )
        constants = tuple(processor(c) for c in all_columns[len(row_columns) :])
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            return _Plan(f"COPY {target} ({names}) FROM STDIN", True, processors, constants)
        mark = _PLACEHOLDERS.get(str(dialect.paramstyle))
        if mark is None:
            raise ValueError(f"no bulk insert for the {dialect.paramstyle} parameter style")
        marks = ", ".join([mark] * len(all_columns))
        # Only the table's own names, quoted by the dialect, and placeholders.
        sql = f"INSERT INTO {target} ({names}) VALUES ({marks})"  # noqa: S608
        return _Plan(sql, False, processors, constants)

    def run(
        self,
        handle: Any,
        rows: Sequence[Sequence[Any]],
        constants: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert ``rows`` in the handle's transaction (nothing for an empty list)."""
        if not rows:
            return
        given = constants or {}
        if set(given) != set(self.constant):
            raise ValueError(f"constant columns are {', '.join(self.constant) or 'none'}")
        dbapi, dialect = dbapi_of(handle)
        plan = self._plan(dialect)
        tail = tuple(
            given[name] if proc is None else proc(given[name])
            for name, proc in zip(self.constant, plan.constants, strict=True)
        )
        batch = _processed(rows, plan.processors, tail)
        cursor = dbapi.cursor()
        try:
            if plan.copy:
                with cursor.copy(plan.sql) as copy:
                    for row in batch:
                        copy.write_row(row)
            else:
                cursor.executemany(plan.sql, batch)
        except dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(
                plan.sql, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        finally:
            cursor.close()


def _processed(
    rows: Sequence[Sequence[Any]],
    processors: tuple[tuple[int, _Processor], ...],
    tail: tuple[Any, ...],
) -> Sequence[Sequence[Any]]:
    """The rows with each value through its column's processor (None included: a JSON
    column stores it as ``null``, as a Core insert does), the constants appended.

    A processor is a pure conversion, and the values of a column repeat (a batch's
    few dates; consent given for the same groups, a tuple of text): each distinct
    such value is converted once per call. Only values whose equality is identity
    of content are looked up so (a date, a tuple of strings): equal datetimes in
    two zones, or 1 and True, would convert differently.
    """
    if not processors:
        return [(*row, *tail) for row in rows] if tail else rows
    seen: list[dict[Any, Any]] = [{} for _ in processors]
    out: list[Sequence[Any]] = []
    for row in rows:
        values = [*row, *tail]
        for (i, proc), memo in zip(processors, seen, strict=True):
            value = values[i]
            kind = type(value)
            if kind is date or (kind is tuple and all(type(v) is str for v in value)):
                done = memo.get(value, _MISSING)
                if done is _MISSING:
                    done = memo[value] = proc(value)
                values[i] = done
            else:
                values[i] = proc(value)
        out.append(values)
    return out


_MISSING = object()
