"""Parsing, validating and sealing a large import's rows in worker processes that hold no KEK.

Validation is pure (``vault.records``: no database, no keys) and sealing a new
archive needs only its own fresh DEK; together they are about two thirds of an
import's work. The rest (wrapping each DEK under its level's KEK, the blind
indexes and masked names under their keys, the inserts, the checks that read
the database) stays with the importer and its one transaction. For a large
file, rows go to ``import_workers`` processes started for the import, so both
cores work: a thread of the importer reads the file, numbers the rows that
carry no archive number (the next numbers of the year's counter, in file
order, as ``Numbering`` says) and sends chunks of rows to the workers in turn;
each worker sends back each row's validated record, sealed under a DEK it drew
(``vault.envelope.seal_new``, the filer's own recipe), or its problem; the
importer takes the answers in file order and wraps, indexes and writes them.
Memory stays flat: only a few chunks are in flight.

A worker is a fresh interpreter (``python -m vault.import_workers``), given
only the profile schema and the validation settings: never the key file, a
KEK, an index key or a database connection, and it never imports the
importer's main module (which ``multiprocessing``'s spawn would run again).
Rows, and the DEKs it draws for them, travel over its standard input and
output, pipes in memory between two processes of the same user; nothing is
written to disk. A DEK leaves the importer only wrapped, as filing stores it.
A worker that fails (an exception, or killed) fails the import, which rolls
back its one transaction; if the importer dies, the workers read the end of
their input and exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from multiprocessing.connection import Connection
from typing import Any

from pydantic_core import from_json

from vault import crypto
from vault.envelope import seal_new
from vault.errors import Conflict, ValidationFailed
from vault.masked_names import NAME_FIELD
from vault.records import ARCHIVE_NO, Consent, NewArchive, NewSeal, parse_archive
from vault.rows import encode
from vault.schema import ProfileSchema

CHUNK_ROWS = 500  # rows per message to the worker
IN_FLIGHT = 4  # chunks sent ahead

# A row as it leaves the reader: a JSON line still to parse, a CSV row already mapped
# to an object, or the reader's own problem with it.
Payload = str | dict[str, Any] | ValidationFailed
# A row as it leaves validation: its record, or its problem (one line of text).
Outcome = NewArchive | str


def parse_json(text: str) -> Any:
    """``json.loads(text)``, through pydantic's compiled parser (a third less per line).

    Whatever that parser refuses (bad JSON, but also a lone surrogate escape, which
    ``json`` takes) goes through ``json.loads``, so a row reads as it always did
    and a bad one fails with ``json``'s own message.
    """
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


class WorkerFailed(RuntimeError):
    """The validation worker stopped or raised; the import fails and rolls back."""


_NUMBER_KEY = '"archive_no"'


@dataclass(slots=True)
class Numbering:
    """The numbers an import gives its rows that carry none, before they are validated.

    A worker seals a row under associated data that names its archive number, so
    the number is fixed as the row is read: ``next`` is the year's counter plus
    one when the import began (read in its transaction, locked on PostgreSQL), and
    each row without a number takes the next one, in file order. A row that names
    its own number in ``year`` moves ``next`` past it, so no later row is given
    it. A bad row's number is never used: the import then writes nothing.
    """

    year: int
    next: int

    def assign(self, payload: Payload) -> str | None:
        """The number for this row, or None when it names its own (or is already a problem).

        A JSON line that does not hold the key's text names no number: only lines
        that do are parsed here, as the worker will parse them.
        """
        if isinstance(payload, ValidationFailed):
            return None
        own: Any = None
        if isinstance(payload, dict):
            own = payload.get("archive_no")
        elif _NUMBER_KEY in payload:
            try:
                data = json.loads(payload)
            except json.JSONDecodeError:
                return None
            own = data.get("archive_no") if isinstance(data, dict) else None
        if own:
            match = ARCHIVE_NO.fullmatch(own) if isinstance(own, str) else None
            if match and int(match.group(1)) == self.year:
                self.next = max(self.next, int(match.group(2)) + 1)
            return None
        if self.next > 999_999:
            raise Conflict(f"archive numbers for {self.year} are exhausted")
        self.next += 1
        return f"KH-{self.year}-{self.next - 1:06d}"


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
            payload = parse_json(payload)
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


class _Work:
    """A worker's state: the schema and limits it validates with; whether it met a bad row."""

    def __init__(self, schema: ProfileSchema, limits: tuple[int, int]) -> None:
        self.schema, self.limits = schema, limits
        self.failed = False  # once a row is bad nothing is written: sealing stops
        # The fields the importer still reads of a sealed record, by group: the blind
        # indexes' and the masked name's (under keys the worker never holds).
        kept: dict[str, list[str]] = {}
        for name in (*schema.searchable, NAME_FIELD):
            spec = schema.fields.get(name)
            if spec is not None and name not in kept.get(spec.group, ()):
                kept.setdefault(spec.group, []).append(name)
        self.kept = {g: tuple(names) for g, names in kept.items()}

    def chunk(
        self, chunk: list[tuple[int, Payload, str | None]], now: datetime, owner: str | None
    ) -> list[tuple[int, Any]]:
        field_limit, retention_years = self.limits
        out: list[tuple[int, Any]] = []
        deks = iter(crypto.new_keys(len(chunk)))
        for line, payload, number in chunk:
            outcome = validate_one(
                payload,
                self.schema,
                now=now,
                field_limit=field_limit,
                retention_years=retention_years,
                owner=owner,
            )
            dek = next(deks)
            if isinstance(outcome, str):
                self.failed = True
                out.append((line, outcome))
                continue
            if outcome.archive_no is None:
                if number is None:  # the reader saw a number that validation does not
                    self.failed = True
                    out.append((line, "archive_no could not be read alike twice"))
                    continue
                outcome.archive_no, outcome.numbered = number, True
            out.append((line, _pack(outcome, None if self.failed else dek, self.kept)))
        return out


def _pack(r: NewArchive, dek: bytes | None, kept: dict[str, tuple[str, ...]]) -> tuple[Any, ...]:
    """A record as plain values (a tenth of the cost of pickling the dataclasses), sealed
    under ``dek`` (None: left unsealed, the import having already failed). A sealed
    record's groups keep only the ``kept`` fields: the rest travels sealed, and
    sending it back in clear too cost the importer more than its inserts."""
    c = r.consent
    seal = None
    groups = r.groups
    if dek is not None and r.archive_no is not None:
        encoded = {g: encode(fields) for g, fields in r.groups.items() if fields}
        s = seal_new(dek, r.archive_no, r.classification, encoded)
        seal = (s.dek, s.groups, s.manifest)
        groups = {}
        for g, names in kept.items():
            fields = r.groups.get(g)
            if fields:
                values = {n: fields[n] for n in names if n in fields}
                if values:
                    groups[g] = values
    return (
        r.category,
        r.grade,
        r.classification,
        r.owner,
        r.department,
        r.retention_until.toordinal(),
        r.custodian,
        r.archive_no,
        r.numbered,
        r.contacts,
        (c.notice, c.at, c.channel, c.groups, c.sensitive_groups),
        groups,
        seal,
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
        numbered,
        contacts,
        c,
        groups,
        seal,
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
        numbered=numbered,
        sealed=None if seal is None else NewSeal(*seal),
    )


def validate_in_worker(
    rows: Iterable[tuple[int, Payload]],
    schema: ProfileSchema,
    *,
    clock: Callable[[], datetime],
    field_limit: int,
    retention_years: int,
    owner: str | None,
    numbering: Numbering,
    workers: int = 1,
) -> Iterator[tuple[int, Outcome]]:
    """(line, record or problem) for each row, in order, validated and sealed in ``workers``
    processes, which take the chunks in turn.

    An error reading the file (not UTF-8, not CSV) is raised here as it would be
    without the workers, as is ``numbering`` running out of numbers.
    """
    procs: list[subprocess.Popen[bytes]] = []
    sends: list[Connection] = []
    answers: list[Connection] = []
    feeder: _Feeder | None = None
    try:
        for _ in range(max(workers, 1)):
            proc = subprocess.Popen(
                [sys.executable, "-m", "vault.import_workers"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
            procs.append(proc)
            if proc.stdin is None or proc.stdout is None:
                raise WorkerFailed("the validation worker has no pipes")
            sends.append(Connection(os.dup(proc.stdin.fileno()), readable=False))
            answers.append(Connection(os.dup(proc.stdout.fileno()), writable=False))
            proc.stdin.close()
            proc.stdout.close()
        for conn in sends:
            conn.send((schema, (field_limit, retention_years)))
        feeder = _Feeder(sends, rows, clock, owner, numbering)
        feeder.start()
        turn = 0
        while True:
            message = _receive(answers[turn % len(answers)], feeder)
            if message is None:  # the chunks ran out at this worker's turn: so at the others'
                for later in range(turn + 1, turn + len(answers)):
                    if _receive(answers[later % len(answers)], feeder) is not None:
                        raise WorkerFailed("a validation worker answered out of turn")
                break
            feeder.slots.release()
            turn += 1
            for line, outcome in message:
                yield line, outcome if isinstance(outcome, str) else _unpack(outcome)
        feeder.join()
        if feeder.error is not None:
            raise feeder.error
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()  # done (it is ending) or abandoned: either way, gone
            proc.wait()
        if feeder is not None:
            feeder.stop()
        for conn in (*sends, *answers):
            conn.close()


def _receive(conn: Connection, feeder: _Feeder) -> Any:
    """A worker's next answer: a chunk's outcomes, or None at the end."""
    try:
        message = conn.recv()
    except (EOFError, OSError):
        feeder.join()
        if feeder.error is not None:
            raise feeder.error from None
        raise WorkerFailed("the validation worker stopped") from None
    if isinstance(message, str):
        raise WorkerFailed(f"the validation worker failed: {message}")
    return message


class _Feeder(threading.Thread):
    """Reads the file, numbers its rows and sends them in chunks to the workers in turn,
    at most IN_FLIGHT chunks per worker ahead of the answers."""

    def __init__(
        self,
        conns: list[Connection],
        rows: Iterable[tuple[int, Payload]],
        clock: Callable[[], datetime],
        owner: str | None,
        numbering: Numbering,
    ) -> None:
        super().__init__(name="import-feeder", daemon=True)
        self.conns, self.rows, self.clock, self.owner = conns, rows, clock, owner
        self.numbering = numbering
        self.slots = threading.Semaphore(IN_FLIGHT * len(conns))
        self.error: BaseException | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            assign = self.numbering.assign
            numbered = ((line, p, assign(p)) for line, p in self.rows)
            for turn, chunk in enumerate(_chunks(numbered)):
                self.slots.acquire()
                if self._stopped.is_set():
                    return
                self.conns[turn % len(self.conns)].send((chunk, self.clock(), self.owner))
            for conn in self.conns:
                conn.send(None)
        except (BrokenPipeError, OSError) as exc:
            if not self._stopped.is_set():
                self.error = WorkerFailed(f"the validation worker stopped ({type(exc).__name__})")
        except BaseException as exc:  # noqa: BLE001 - handed to the importer's thread
            self.error = exc
            for conn in self.conns:
                conn.close()  # the workers read the end of their input and exit

    def stop(self) -> None:
        self._stopped.set()
        self.slots.release()
        self.join(timeout=5)


def _serve() -> None:
    """The worker: validate and seal the chunks read on standard input, answer on standard
    output."""
    source = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # anything printed goes to standard error, never into the answers
    work = _Work(*source.recv())
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
            answers.send(work.chunk(chunk, now, owner))
        except Exception as exc:  # noqa: BLE001 - reported to the importer, which fails
            answers.send(type(exc).__name__)
            return


def _chunks(
    rows: Iterable[tuple[int, Payload, str | None]],
) -> Iterator[list[tuple[int, Payload, str | None]]]:
    chunk: list[tuple[int, Payload, str | None]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


if __name__ == "__main__":
    _serve()
