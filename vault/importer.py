"""Bulk import of archives from JSON Lines or CSV, all or nothing.

Two passes over the file: the first validates every row (no keys, no writes)
and collects every problem with its line number; only a clean file reaches the
second pass, which seals and inserts everything in ONE transaction, so a bad
row, a crash or a kill leaves the vault exactly as it was. Rows are streamed,
so memory stays flat however large the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from audit.events import Actor, AuditAction, AuditEvent
from vault.db import transaction
from vault.errors import ValidationFailed, VaultError
from vault.models import Archive
from vault.records import NewArchive
from vault.store import ArchiveStore

FORMATS = ("jsonl", "csv")
_CONSENT_COLUMNS = ("notice", "at", "channel", "groups", "sensitive_groups")


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
            if key.startswith(prefix) and key[len(prefix):] in _CONSENT_COLUMNS:
                consent[key[len(prefix):]] = value
                break
        else:
            if key.startswith("profile."):
                profile[key[len("profile."):]] = value
            elif key in fields:
                profile[key] = value
            else:
                out[key] = value
    if profile:
        out["profile"] = profile
    if consent:
        out["consent"] = consent
    return out


def iter_rows(path: Path, fmt: str, fields: set[str]) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object or ValidationFailed) for each non-blank row."""
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
                    try:
                        yield number, json.loads(line)
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


def import_file(
    store: ArchiveStore,
    path: Path,
    *,
    owner: str | None,
    actor: Actor,
    fmt: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImportReport:
    """Validate the whole file, then import it in one transaction (or raise ImportFailed)."""
    fmt = detect_format(path, fmt)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None
    if size > store.settings.max_import_bytes:
        raise ValidationFailed(f"{path.name} is larger than {store.settings.max_import_bytes} bytes")
    fields = set(store.schema.fields)
    bad: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    total = 0
    for number, row in iter_rows(path, fmt, fields):
        total += 1
        if isinstance(row, ValidationFailed):
            bad.append((number, row.message))
        else:
            try:
                record = store.prepare(row, default_owner=owner)
                if record.archive_no:
                    if record.archive_no in seen:
                        raise ValidationFailed(
                            f"archive_no {record.archive_no} repeats line {seen[record.archive_no]}")
                    seen[record.archive_no] = number
            except ValidationFailed as exc:
                bad.append((number, "; ".join(exc.problems)))
        if progress and total % 1000 == 0:
            progress("checking", total, 0)
    if seen:
        existing = _existing(store, list(seen))
        bad.extend((seen[no], f"archive_no {no} already exists in the vault") for no in existing)
    if bad:
        raise ImportFailed(sorted(bad), total)
    if total == 0:
        raise ValidationFailed(f"{path.name} holds no archives")

    def records() -> Iterator[NewArchive]:
        for _, row in iter_rows(path, fmt, fields):
            if isinstance(row, ValidationFailed):
                raise row  # the file changed under us: abort, nothing is kept
            yield store.prepare(row, default_owner=owner)

    return bulk_insert(store, records(), actor=actor, total=total, source=path.name,
                       progress=progress, exact=True)


def bulk_insert(
    store: ArchiveStore,
    records: Iterable[NewArchive],
    *,
    actor: Actor,
    total: int,
    source: str,
    progress: Callable[[str, int, int], None] | None = None,
    exact: bool = False,
) -> ImportReport:
    """Insert validated archives in batches inside ONE transaction, one audit entry per batch.

    With ``exact``, a count other than ``total`` (the source changed between
    the checking pass and this one) aborts the transaction.
    """
    done, first, last = 0, None, None
    batch: list[NewArchive] = []
    with transaction(store.engine) as session:

        def flush() -> None:
            nonlocal done, first, last
            metas = store.insert_many(session, batch)
            store.audit.append(session, AuditEvent(
                action=AuditAction.IMPORT, actor=actor,
                archives=tuple(m.archive_no for m in metas),
                detail={"source": source, "rows": len(metas)}))
            first = first or metas[0].archive_no
            last = metas[-1].archive_no
            done += len(metas)
            batch.clear()
            if progress:
                progress("importing", done, total)

        for record in records:
            batch.append(record)
            if len(batch) >= store.settings.import_batch:
                flush()
        if batch:
            flush()
        if exact and done != total:
            raise ValidationFailed(f"{source} changed while it was imported; nothing was kept")
    return ImportReport(imported=done, first=first, last=last)


def _existing(store: ArchiveStore, numbers: list[str]) -> list[str]:
    found: list[str] = []
    with store.engine.connect() as conn:
        for i in range(0, len(numbers), 500):
            chunk = numbers[i : i + 500]
            found.extend(conn.execute(
                sa.select(Archive.archive_no).where(Archive.archive_no.in_(chunk))  # type: ignore[attr-defined]
            ).scalars())
    return found
