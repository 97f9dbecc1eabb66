"""Parsing and validating a large import's rows in a worker process that holds no keys.

Validation is pure (``vault.records``: no database, no keys) and is about a
third of an import's work; the rest (sealing, the inserts, the checks that
read the database) needs the keys and the one transaction. For a large file,
rows are validated in a separate process started for the import, so both
cores work: a thread of the importer reads the file and sends chunks of rows,
the worker sends back each row's validated record or its problem, in file
order, while the importer seals and writes the chunks before. Memory stays
flat: only a few chunks are in flight.

The worker is a fresh interpreter (``python -m vault.import_workers``), given
only the profile schema and the validation settings: never the key file, the
keys or a database connection, and it never imports the importer's main
module (which ``multiprocessing``'s spawn would run again). Rows travel over
its standard input and output, pipes in memory; nothing is written to disk.
A worker that fails (an exception, or killed) fails the import, which rolls
back its one transaction; if the importer dies, the worker reads the end of
its input and exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from multiprocessing.connection import Connection
from typing import Any

from vault.errors import ValidationFailed
from vault.records import Consent, NewArchive, parse_archive
from vault.rows import encode
from vault.schema import ProfileSchema

CHUNK_ROWS = 500  # rows per message to the worker
IN_FLIGHT = 4  # chunks sent ahead

# A row as it leaves the reader: a JSON line still to parse, a CSV row already mapped
# to an object, or the reader's own problem with it.
Payload = str | dict[str, Any] | ValidationFailed
# A row as it leaves validation: its record, or its problem (one line of text).
Outcome = NewArchive | str


class WorkerFailed(RuntimeError):
    """The validation worker stopped or raised; the import fails and rolls back."""


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


def _validate_chunk(
    chunk: list[tuple[int, Payload]],
    schema: ProfileSchema,
    limits: tuple[int, int],
    now: datetime,
    owner: str | None,
) -> list[tuple[int, Any]]:
    field_limit, retention_years = limits
    out: list[tuple[int, Any]] = []
    for line, payload in chunk:
        outcome = validate_one(
            payload,
            schema,
            now=now,
            field_limit=field_limit,
            retention_years=retention_years,
            owner=owner,
        )
        out.append((line, outcome if isinstance(outcome, str) else _pack(outcome)))
    return out


def _pack(r: NewArchive) -> tuple[Any, ...]:
    """A record as plain values (a tenth of the cost of pickling the dataclasses), with its
    groups' canonical encoding, which costs the worker what it saves the importer."""
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
        {g: encode(fields) for g, fields in r.groups.items() if fields},
    )


def _unpack(t: tuple[Any, ...]) -> NewArchive:
    (
        category,
        grade,
        level,
        owner,
        department,
        retention,
        custodian,
        no,
        contacts,
        c,
        groups,
        enc,
    ) = t
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
        encoded=enc,
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
    """(line, record or problem) for each row, in order, validated in a worker process.

    An error reading the file (not UTF-8, not CSV) is raised here as it would be
    without the worker.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "vault.import_workers"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
    )
    if proc.stdin is None or proc.stdout is None:
        raise WorkerFailed("the validation worker has no pipes")
    to_worker = Connection(os.dup(proc.stdin.fileno()), readable=False)
    from_worker = Connection(os.dup(proc.stdout.fileno()), writable=False)
    proc.stdin.close()
    proc.stdout.close()
    feeder = _Feeder(to_worker, rows, clock, owner)
    try:
        to_worker.send((schema, (field_limit, retention_years)))
        feeder.start()
        while True:
            try:
                message = from_worker.recv()
            except (EOFError, OSError):
                feeder.join()
                if feeder.error is not None:
                    raise feeder.error from None
                raise WorkerFailed("the validation worker stopped") from None
            if message is None:
                break
            if isinstance(message, str):
                raise WorkerFailed(f"the validation worker failed: {message}")
            feeder.slots.release()
            for line, outcome in message:
                yield line, outcome if isinstance(outcome, str) else _unpack(outcome)
        feeder.join()
        if feeder.error is not None:
            raise feeder.error
    finally:
        if proc.poll() is None:
            proc.kill()  # done (it is ending) or abandoned: either way, gone
        proc.wait()
        feeder.stop()
        to_worker.close()
        from_worker.close()


class _Feeder(threading.Thread):
    """Reads the file and sends its rows in chunks, at most IN_FLIGHT ahead of the answers."""

    def __init__(
        self,
        conn: Connection,
        rows: Iterable[tuple[int, Payload]],
        clock: Callable[[], datetime],
        owner: str | None,
    ) -> None:
        super().__init__(name="import-feeder", daemon=True)
        self.conn, self.rows, self.clock, self.owner = conn, rows, clock, owner
        self.slots = threading.Semaphore(IN_FLIGHT)
        self.error: BaseException | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            for chunk in _chunks(self.rows):
                self.slots.acquire()
                if self._stopped.is_set():
                    return
                self.conn.send((chunk, self.clock(), self.owner))
            self.conn.send(None)
        except (BrokenPipeError, OSError) as exc:
            if not self._stopped.is_set():
                self.error = WorkerFailed(f"the validation worker stopped ({type(exc).__name__})")
        except BaseException as exc:  # noqa: BLE001 - handed to the importer's thread
            self.error = exc
            self.conn.close()  # the worker reads the end of its input and exits

    def stop(self) -> None:
        self._stopped.set()
        self.slots.release()
        self.join(timeout=5)


def _serve() -> None:
    """The worker: validate the chunks read on standard input, answer on standard output."""
    source = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # anything printed goes to standard error, never into the answers
    schema, limits = source.recv()
    while True:
        try:
            message = source.recv()
        except EOFError:
            return
        if message is None:
            answers.send(None)
            return
        chunk, now, owner = message
        try:
            answers.send(_validate_chunk(chunk, schema, limits, now, owner))
        except Exception as exc:  # noqa: BLE001 - reported to the importer, which fails
            answers.send(type(exc).__name__)
            return


def _chunks(rows: Iterable[tuple[int, Payload]]) -> Iterator[list[tuple[int, Payload]]]:
    chunk: list[tuple[int, Payload]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


if __name__ == "__main__":
    _serve()
