"""Parsing and validating a large import's rows in a worker process that holds no keys.

Validation is pure (``vault.records``: no database, no keys) and is about a
third of an import's work; the rest (sealing, the inserts, the checks that
read the database) needs the keys and the one transaction. For a large file,
rows are validated in a separate process started for the import, so both
cores work: the importer reads the file and sends chunks of rows, the worker
sends back each row's validated record or its problem, in file order, while
the importer seals and writes the chunks before. The worker is started with
``spawn``: a fresh interpreter given only the profile schema and the
validation settings, never the key file, the keys or a database connection.
Rows travel over the pipes between the two processes, in memory; nothing is
written to disk. Memory stays flat: only a few chunks are in flight.

A worker that fails (an exception, or killed) fails the import, which rolls
back its one transaction; if the importer dies, the worker sees that it has a
new parent within half a second and exits.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date, datetime
from typing import Any

from vault.errors import ValidationFailed
from vault.records import Consent, NewArchive, parse_archive
from vault.schema import ProfileSchema

CHUNK_ROWS = 500  # rows per message to a worker
IN_FLIGHT = 4  # chunks sent ahead per worker

# A row as it leaves the reader: a JSON line still to parse, a CSV row already mapped
# to an object, or the reader's own problem with it.
Payload = str | dict[str, Any] | ValidationFailed
# A row as it leaves validation: its record, or its problem (one line of text).
Outcome = NewArchive | str

_schema: ProfileSchema | None = None
_limits: tuple[int, int] = (0, 0)


def validate_one(
    payload: Payload,
    schema: ProfileSchema,
    *,
    now: datetime,
    field_limit: int,
    retention_years: int,
    owner: str | None,
) -> Outcome:
    """One row's record, or its problem as the import lists it."""
    if isinstance(payload, ValidationFailed):
        return payload.message
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            return f"not valid JSON ({exc.msg})"
    try:
        return parse_archive(
            payload,
            schema,
            now=now,
            field_limit=field_limit,
            retention_years=retention_years,
            default_owner=owner,
        )
    except ValidationFailed as exc:
        return "; ".join(exc.problems)


def _start(schema: ProfileSchema, field_limit: int, retention_years: int) -> None:
    global _schema, _limits
    _schema, _limits = schema, (field_limit, retention_years)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the importer is gone (killed, it closes no pipe: the worker
    holds both ends of its queue and would wait for work forever)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _validate_chunk(
    chunk: list[tuple[int, Payload]], now: datetime, owner: str | None
) -> list[tuple[int, Any]]:
    if _schema is None:
        raise RuntimeError("the validation worker was not started")
    field_limit, retention_years = _limits
    out: list[tuple[int, Any]] = []
    for line, payload in chunk:
        outcome = validate_one(
            payload,
            _schema,
            now=now,
            field_limit=field_limit,
            retention_years=retention_years,
            owner=owner,
        )
        out.append((line, outcome if isinstance(outcome, str) else _pack(outcome)))
    return out


def _pack(r: NewArchive) -> tuple[Any, ...]:
    """A record as plain values: a tenth of the cost of pickling the dataclasses."""
    c = r.consent
    return (
        r.category,
        r.grade,
        r.classification,
        r.owner,
        r.department,
        r.retention_until.toordinal(),
        r.custodian,
        r.archive_no,
        r.contacts,
        (c.notice, c.at, c.channel, c.groups, c.sensitive_groups),
        r.groups,
    )


def _unpack(t: tuple[Any, ...]) -> NewArchive:
    category, grade, level, owner, department, retention, custodian, no, contacts, c, groups = t
    return NewArchive(
        category=category,
        grade=grade,
        classification=level,
        owner=owner,
        department=department,
        retention_until=date.fromordinal(retention),
        custodian=custodian,
        archive_no=no,
        contacts=contacts,
        consent=Consent(*c),
        groups=groups,
    )


def validate_in_worker(
    rows: Iterable[tuple[int, Payload]],
    schema: ProfileSchema,
    *,
    clock: Callable[[], datetime],
    field_limit: int,
    retention_years: int,
    owner: str | None,
) -> Iterator[tuple[int, Outcome]]:
    """(line, record or problem) for each row, in order, validated in a worker process."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=context,
        initializer=_start,
        initargs=(schema, field_limit, retention_years),
    ) as pool:
        pending: deque[Future[list[tuple[int, Any]]]] = deque()
        try:
            for chunk in _chunks(rows):
                pending.append(pool.submit(_validate_chunk, chunk, clock(), owner))
                if len(pending) >= IN_FLIGHT:
                    yield from _received(pending.popleft())
            while pending:
                yield from _received(pending.popleft())
        finally:
            for future in pending:
                future.cancel()


def _received(future: Future[list[tuple[int, Any]]]) -> Iterator[tuple[int, Outcome]]:
    for line, outcome in future.result():
        yield line, outcome if isinstance(outcome, str) else _unpack(outcome)


def _chunks(rows: Iterable[tuple[int, Payload]]) -> Iterator[list[tuple[int, Payload]]]:
    chunk: list[tuple[int, Payload]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
