"""Bulk import of archives from JSON Lines or CSV, all or nothing.

Everything happens in ONE transaction, so a bad row, a crash or a kill leaves
the vault exactly as it was; every problem is collected with its line number
so a user fixes the file in one go. Rows are streamed, so memory stays flat
however large the file.
"""

from __future__ import annotations

import csv
import gc
import json
from collections.abc import Callable, Container, Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from audit.events import Actor, AuditAction, AuditEvent
from foundation.db import sqlite_bulk_cache, transaction
from vault.errors import ValidationFailed, VaultError
from vault.import_workers import Outcome, parse_json, validate_in_worker
from vault.models import Archive
from vault.records import NewArchive, RecordCheck
from vault.store import ArchiveStore

FORMATS = ("jsonl", "csv")
_VALIDATING_EVERY = 500  # rows between two "validating" progress reports
_CONSENT_COLUMNS = ("notice", "at", "channel", "groups", "sensitive_groups")
_CACHE_KIB = 64 * 1024  # SQLite's page cache while an import writes (foundation.db)


class ImportFailed(VaultError):
    """The file has bad rows; nothing was imported. ``rows`` lists (line, reason)."""

    code = "import-failed"

    def __init__(self, rows: list[tuple[int, str]], total: int) -> None:
        super().__init__(f"{len(rows)} of {total} rows are invalid; nothing was imported")
        self.rows = rows
        self.total = total


@dataclass
class ImportReport:
    imported: int
    first: str | None
    last: str | None
    # Every owner, custodian and contact named by the imported archives.
    people: frozenset[str] = frozenset()
    # (line, archive number, message): imported, but short of what the rules ask,
    # e.g. an important client with no contact besides its owner (篇七).
    warnings: tuple[tuple[int, str, str], ...] = ()


def detect_format(path: Path, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise ValidationFailed(f"--format must be one of {', '.join(FORMATS)}")
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ValidationFailed(f"cannot tell the format of {path.name}; pass --format jsonl|csv")


def _csv_row(row: dict[str, str | None], fields: set[str]) -> dict[str, Any]:
    """Map CSV columns (metadata names, field names, consent.* or consent_*) to a JSON object."""
    out: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    consent: dict[str, Any] = {}
    for column, value in row.items():
        if column is None:
            raise ValidationFailed("the row has more cells than the header has columns")
        key = column.strip()
        if value is None or value.strip() == "":
            continue
        for prefix in ("consent.", "consent_"):
            if key.startswith(prefix) and key[len(prefix) :] in _CONSENT_COLUMNS:
                consent[key[len(prefix) :]] = value
                break
        else:
            if key.startswith("profile."):
                profile[key[len("profile.") :]] = value
            elif key in fields:
                profile[key] = value
            else:
                out[key] = value
    if profile:
        out["profile"] = profile
    if consent:
        out["consent"] = consent
    return out


def count_rows(path: Path, fmt: str) -> int:
    """How many rows the file holds, for a progress bar: its non-blank lines (JSON
    Lines) or its lines after the header (CSV, where a quoted cell may hold a line
    break, so this is an upper bound). Reads bytes only; nothing is kept."""
    count = 0
    try:
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    count += 1
    except OSError:
        return 0
    return max(count - 1, 0) if fmt == "csv" else count


def iter_rows(
    path: Path, fmt: str, fields: set[str], *, parse: bool = True
) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object or ValidationFailed) for each non-blank row;
    with ``parse=False`` a JSON line is yielded as its text, for a worker to parse."""
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            if fmt == "jsonl":
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    if not parse:
                        yield number, line
                        continue
                    try:
                        yield number, parse_json(line)
                    except json.JSONDecodeError as exc:
                        yield number, ValidationFailed(f"not valid JSON ({exc.msg})")
            else:
                reader = csv.DictReader(handle)
                if not reader.fieldnames:
                    return
                for row in reader:
                    try:
                        yield reader.line_num, _csv_row(row, fields)
                    except ValidationFailed as exc:
                        yield reader.line_num, exc
        except UnicodeDecodeError:
            raise ValidationFailed(f"{path.name} is not UTF-8 text") from None
        except csv.Error as exc:
            raise ValidationFailed(f"{path.name} is not valid CSV: {exc}") from None


class _Batcher:
    """Seals and inserts records in batches inside the caller's one transaction."""

    def __init__(
        self,
        store: ArchiveStore,
        session: Session,
        *,
        actor: Actor,
        source: str,
        total: int,
        progress: Callable[[str, int, int], None] | None,
    ) -> None:
        self.store, self.session, self.actor, self.source = store, session, actor, source
        self.total, self.progress = total, progress
        self.pending: list[NewArchive] = []
        self.lines: list[int] = []
        self.clashes: list[tuple[int, str]] = []
        self.checked: set[str] = set()
        self.people: set[str] = set()  # explicit numbers already checked against the vault
        self.done = 0
        self.first: str | None = None
        self.last: str | None = None

    def add(self, record: NewArchive, line: int = 0) -> None:
        self.people.update(n for n in (record.owner, record.custodian, *record.contacts) if n)
        self.pending.append(record)
        self.lines.append(line)
        if len(self.pending) >= self.store.settings.import_batch:
            self.flush()

    def flush(self) -> None:
        """Insert the batch, unless an explicit archive number in it already exists."""
        if not self.pending:
            return
        explicit = {
            r.archive_no: line
            for r, line in zip(self.pending, self.lines, strict=True)
            if r.archive_no and not r.numbered
        }
        if explicit:
            self.checked.update(explicit)
            for no in _existing(self.session, list(explicit)):
                self.clashes.append((explicit[no], f"archive_no {no} already exists in the vault"))
            if self.clashes:
                self.pending.clear()
                self.lines.clear()
                return
        metas = self.store.filing.insert_many(self.session, self.pending)
        self.store.audit.append(
            self.session,
            AuditEvent(
                action=AuditAction.IMPORT,
                actor=self.actor,
                archives=tuple(m.archive_no for m in metas),
                detail={"source": self.source, "rows": len(metas)},
            ),
        )
        self.first = self.first or metas[0].archive_no
        self.last = metas[-1].archive_no
        self.done += len(metas)
        self.pending.clear()
        self.lines.clear()
        if self.progress:
            self.progress("importing", self.done, max(self.total, self.done))

    def report(self) -> ImportReport:
        return ImportReport(
            imported=self.done, first=self.first, last=self.last, people=frozenset(self.people)
        )


def import_file(
    store: ArchiveStore,
    path: Path,
    *,
    owner: str | None,
    actor: Actor,
    fmt: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    known_users: Container[str] | None = None,
    check: RecordCheck | None = None,
) -> ImportReport:
    """Import a whole file in ONE transaction, or nothing (raises ImportFailed).

    With ``known_users``, a row whose owner, custodian or contact is not among
    them is refused. The CLI does not pass it: archives are often imported before
    their salespeople have accounts; it warns about those names instead.
    ``check(session, record)`` runs on every valid row inside the import's
    transaction; the ``ValidationFailed`` it raises is that row's problem. The CLI
    passes the policy's rules on who may be named on an archive (contacts,
    custodian), which live above ``vault``.

    One streaming pass: rows are validated and sealed as they come; after the
    first bad row nothing more is sealed but every later row is still checked,
    so the error list is complete, and the transaction is rolled back at the end.

    ``progress(phase, done, total)`` hears ``"validating"`` with the rows read and
    checked so far and ``"importing"`` with the rows written (after each batch);
    ``total`` is the file's count of rows, counted before the pass (0 if unknown).
    """
    fmt = detect_format(path, fmt)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None
    if size > store.settings.max_import_bytes:
        raise ValidationFailed(
            f"{path.name} is larger than {store.settings.max_import_bytes} bytes"
        )
    fields = set(store.schema.fields)
    important = frozenset(store.settings.important_grades)
    short: list[tuple[int, NewArchive]] = []
    bad: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    total = 0
    expected = count_rows(path, fmt) if progress else 0
    with (
        _heap_frozen(),
        transaction(store.engine) as session,
        closing(_outcomes(store, session, path, fmt, fields, owner, size)) as outcomes,
    ):
        sqlite_bulk_cache(session, _CACHE_KIB)
        batcher = _Batcher(
            store, session, actor=actor, source=path.name, total=expected, progress=progress
        )
        for number, outcome in outcomes:
            total += 1
            if progress and total % _VALIDATING_EVERY == 0:
                progress("validating", total, max(expected, total))
            if isinstance(outcome, str):
                bad.append((number, outcome))
                continue
            record = outcome
            try:
                if known_users is not None:
                    check_people(record, known_users)
                if check is not None:
                    check(session, record)
            except ValidationFailed as exc:
                bad.append((number, "; ".join(exc.problems)))
                continue
            if record.archive_no and not record.numbered:
                if record.archive_no in seen:
                    bad.append(
                        (
                            number,
                            f"archive_no {record.archive_no} repeats line "
                            f"{seen[record.archive_no]}",
                        )
                    )
                    continue
                seen[record.archive_no] = number
            if record.grade in important and not contacts_besides_owner(record):
                short.append((number, record))
            if not bad and not batcher.clashes:
                batcher.add(record, number)
        if progress:
            progress("validating", total, total)
        batcher.total = total
        batcher.flush()
        bad.extend(batcher.clashes)
        if batcher.clashes or bad:
            # Numbers not yet checked against the vault (their batch never ran).
            unchecked = [no for no in seen if no not in batcher.checked]
            bad.extend(
                (seen[no], f"archive_no {no} already exists in the vault")
                for no in _existing(session, unchecked)
            )
        if bad:
            raise ImportFailed(sorted(bad), total)  # rolls the whole transaction back
        if total == 0:
            raise ValidationFailed(f"{path.name} holds no archives")
    report = batcher.report()
    # Never a refusal: the paper files an import brings in are the company's record,
    # and the second contact is named afterwards by a reassign request.
    report.warnings = tuple(
        (
            line,
            r.archive_no or "",
            f"grade {r.grade} is an important client (篇七: two or more contacts in the "
            f"company) and lists no contact besides its owner {r.owner}; name one with "
            f"POST /customers/{r.archive_no}/owner",
        )
        for line, r in short
    )
    return report


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """The objects alive when the import starts are left out of the collector's full passes.

    An import allocates millions of short-lived objects; the collector's full passes,
    which it triggers as batches of records survive the young generations, otherwise
    walk the whole heap of the process each time (a benchmark's rows held in memory,
    a long-running process's caches). Freezing only moves those objects aside for
    the duration; nothing is freed or kept differently.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _outcomes(
    store: ArchiveStore,
    session: Session,
    path: Path,
    fmt: str,
    fields: set[str],
    owner: str | None,
    size: int,
) -> Generator[tuple[int, Outcome]]:
    """Each row's record or problem, in file order: validated, numbered and sealed in
    ``import_workers`` worker processes for a file of ``import_parallel_bytes`` or more
    (``vault.import_workers``), else validated here (and numbered and sealed in batches
    as they are written)."""
    settings = store.settings
    if settings.import_workers and size >= settings.import_parallel_bytes:
        yield from validate_in_worker(
            iter_rows(path, fmt, fields, parse=False),
            store.schema,
            clock=store.clock,
            field_limit=settings.max_field_chars,
            retention_years=settings.default_retention_years,
            owner=owner,
            numbering=store.filing.numbering(session),
            workers=settings.import_workers,
        )
        return
    for number, row in iter_rows(path, fmt, fields):
        if isinstance(row, ValidationFailed):
            yield number, row.message
            continue
        try:
            yield number, store.filing.prepare(row, default_owner=owner)
        except ValidationFailed as exc:
            yield number, "; ".join(exc.problems)


def contacts_besides_owner(record: NewArchive) -> list[str]:
    """The contacts of a new archive other than its owner."""
    return [c for c in record.contacts if c != record.owner]


def check_people(record: NewArchive, known_users: Container[str]) -> None:
    """Refuse an archive whose owner, custodian or contacts are not users of the vault."""
    people = [("owner", record.owner), ("custodian", record.custodian)]
    people += [("contact", c) for c in record.contacts]
    unknown = [f"{role} {name}" for role, name in people if name and name not in known_users]
    if unknown:
        raise ValidationFailed(
            f"not users of this vault: {', '.join(unknown)} "
            "(add them with `archive-vault user add`)"
        )


def bulk_insert(
    store: ArchiveStore,
    records: Iterable[NewArchive],
    *,
    actor: Actor,
    total: int,
    source: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImportReport:
    """Insert validated archives in ONE transaction, one audit entry per batch."""
    with transaction(store.engine) as session:
        batcher = _Batcher(
            store, session, actor=actor, source=source, total=total, progress=progress
        )
        for record in records:
            batcher.add(record)
        batcher.flush()
    return batcher.report()


def _existing(session: Session, numbers: list[str]) -> list[str]:
    """Explicit numbers already in the vault (checked before the batch inserts would clash)."""
    found: list[str] = []
    for i in range(0, len(numbers), 500):
        chunk = numbers[i : i + 500]
        found.extend(
            session.execute(
                sa.select(col(Archive.archive_no)).where(col(Archive.archive_no).in_(chunk))
            ).scalars()
        )
    return found
