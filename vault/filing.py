"""Filing archives: numbering, sealing and inserting new ones (one or a bulk import).

Each new archive gets a fresh DEK wrapped under its level's active KEK, its
groups sealed under the DEK, its blind-index rows, a sealed manifest of its
groups and the customer list's sealed masked name (``vault.masked_names``), all
inserted in the caller's transaction with one driver call per table
(``foundation.bulk``), so an import of a hundred thousand archives is a few
statements per batch. A batch draws its DEKs, each archive's nonces and each
KEK's wraps in one call each; the per-call setup of the general recipes
(associated data, canonical JSON, the manifest) is built once and joined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from audit.events import Actor, AuditAction, AuditSink
from foundation.bulk import BulkInsert
from foundation.clock import utcnow
from foundation.settings import Settings
from vault import crypto
from vault.envelope import Envelope, seal_new
from vault.errors import Conflict
from vault.import_workers import Numbering
from vault.index import BlindIndexes
from vault.masked_names import MaskedNames
from vault.meta import ArchiveMeta
from vault.models import (
    Archive,
    ArchiveContact,
    ArchiveCounter,
    ArchiveStatus,
    BlindIndex,
    SealedGroup,
    table_of,
)
from vault.records import ARCHIVE_NO, NewArchive, parse_archive
from vault.rows import append_event, encode, unit
from vault.schema import ProfileSchema

_ARCHIVES = BulkInsert(
    table_of(Archive),
    (
        "archive_no",
        "category",
        "grade",
        "classification",
        "owner",
        "custodian",
        "department",
        "retention_until",
        "kek_version",
        "wrapped_dek",
        "consent_notice",
        "consent_at",
        "consent_channel",
        "consent_groups",
        "consent_sensitive_groups",
        "manifest",
        "masked_name_ct",
    ),
    constant=("status", "created_at", "updated_at", "dek_version"),
)
_CONTENT = BulkInsert(
    table_of(SealedGroup),
    ("archive_id", "group_name", "ciphertext"),
    constant=("revision", "updated_at"),
)
_INDEX = BulkInsert(table_of(BlindIndex), ("archive_id", "field", "value"))
_CONTACTS = BulkInsert(table_of(ArchiveContact), ("archive_id", "username"))


class Filing:
    """Create archives: validate, number, seal, insert, audit."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        schema: ProfileSchema,
        envelope: Envelope,
        index: BlindIndexes,
        masked_names: MaskedNames,
        audit: AuditSink,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.schema = schema
        self.envelope = envelope
        self.index = index
        self.masked_names = masked_names
        self.audit = audit
        self.clock = clock

    def prepare(self, data: Any, *, default_owner: str | None = None) -> NewArchive:
        return parse_archive(
            data,
            self.schema,
            now=self.clock(),
            field_limit=self.settings.max_field_chars,
            retention_years=self.settings.default_retention_years,
            default_owner=default_owner,
        )

    def create(
        self,
        data: Any,
        *,
        actor: Actor,
        purpose: str | None = None,
        session: Session | None = None,
    ) -> ArchiveMeta:
        """Validate and file one archive (in the caller's transaction when given one)."""
        record = self.prepare(data)
        with unit(self.engine, session) as tx:
            return self.file(tx, record, actor=actor, purpose=purpose)

    def file(
        self, session: Session, record: NewArchive, *, actor: Actor, purpose: str | None = None
    ) -> ArchiveMeta:
        """Insert one validated archive and audit it, in the caller's transaction: the
        caller's checks on who it names run in the same transaction first, so they hold
        at the moment it is inserted and a refusal leaves nothing behind."""
        (meta,) = self.insert_many(session, [record])
        append_event(
            self.audit,
            session,
            AuditAction.CREATE,
            actor,
            archives=(meta.archive_no,),
            groups=tuple(record.groups),
            purpose=purpose,
            detail={"classification": meta.classification},
        )
        return meta

    def _allocate(self, session: Session, year: int, count: int) -> int:
        """Reserve ``count`` archive numbers for ``year``; returns the first."""
        stmt = select(ArchiveCounter).where(ArchiveCounter.year == year)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        counter = session.exec(stmt).first()
        if counter is None:
            counter = ArchiveCounter(year=year, last=0)
            session.add(counter)
            try:
                session.flush()
            except IntegrityError:
                raise Conflict("another writer is numbering archives; try again") from None
        first = counter.last + 1
        counter.last += count
        session.add(counter)
        return first

    def numbering(self, session: Session) -> Numbering:
        """Where an import that numbers its rows as it reads them starts: this year's next
        number (the counter locked on PostgreSQL until the import commits). The
        numbers it gives move the counter as explicit ones do (``_bump_counter``)."""
        year = self.clock().year
        return Numbering(year, self._allocate(session, year, 0))

    def _bump_counter(self, session: Session, numbers: Iterable[str]) -> None:
        """Explicit archive numbers move the counter past them so allocation never collides."""
        top: dict[int, int] = {}
        for no in numbers:
            m = ARCHIVE_NO.fullmatch(no)
            if m:
                year, seq = int(m.group(1)), int(m.group(2))
                top[year] = max(top.get(year, 0), seq)
        for year, seq in top.items():
            counter = session.get(ArchiveCounter, year)
            if counter is None:
                session.add(ArchiveCounter(year=year, last=seq))
            elif counter.last < seq:
                counter.last = seq
                session.add(counter)

    def _wrap(
        self,
        deks: Sequence[bytes],
        numbers: Sequence[str],
        records: Sequence[NewArchive],
        active: dict[str, int],
    ) -> list[bytes]:
        """Each DEK wrapped under its archive's level's active KEK, one pass per level."""
        wrapped: list[bytes] = [b""] * len(records)
        for level, version in active.items():
            at = [i for i, r in enumerate(records) if r.classification == level]
            pairs = [(deks[i], numbers[i]) for i in at]
            for i, blob in zip(at, self.envelope.wrap_many(pairs, level, version), strict=True):
                wrapped[i] = blob
        return wrapped

    def _insert_archives(
        self,
        session: Session,
        rows: list[tuple[Any, ...]],
        numbers: Sequence[str],
        now: datetime,
    ) -> list[int]:
        """Insert the archive rows; their ids, in the order of ``numbers``."""
        constants = {
            "status": ArchiveStatus.ACTIVE.value,
            "created_at": now,
            "updated_at": now,
            "dek_version": 1,
        }
        try:
            _ARCHIVES.run(session, rows, constants)
        except IntegrityError:
            raise Conflict("an archive number in this batch already exists") from None
        table = table_of(Archive)
        found: dict[str, int] = {}
        for i in range(0, len(numbers), 500):
            stmt = sa.select(table.c.archive_no, table.c.id).where(
                table.c.archive_no.in_(numbers[i : i + 500])
            )
            found.update((no, id_) for no, id_ in session.execute(stmt))
        return [found[no] for no in numbers]

    def insert_many(self, session: Session, records: Sequence[NewArchive]) -> list[ArchiveMeta]:
        """Seal and insert validated archives in the caller's transaction (bulk, Core-level)."""
        if not records:
            return []
        now = self.clock()
        missing = [r for r in records if r.archive_no is None]
        explicit = [r.archive_no for r in records if r.archive_no is not None]
        if missing:
            first = self._allocate(session, now.year, len(missing))
            for i, r in enumerate(missing):
                seq = first + i
                if seq > 999_999:
                    raise Conflict(f"archive numbers for {now.year} are exhausted")
                r.archive_no = f"KH-{now.year}-{seq:06d}"
        if explicit:
            self._bump_counter(session, explicit)
        numbers = [r.archive_no for r in records if r.archive_no is not None]
        if len(numbers) != len(records):  # every record was numbered just above
            raise Conflict("an archive of this batch has no number")
        active = {
            lvl: self.envelope.active_kek(session, lvl)
            for lvl in {r.classification for r in records}
        }
        fresh = iter(crypto.new_keys(sum(1 for r in records if r.sealed is None)))
        seals = [
            r.sealed
            or seal_new(
                next(fresh),
                no,
                r.classification,
                r.encoded or {g: encode(f) for g, f in r.groups.items() if f},
            )
            for no, r in zip(numbers, records, strict=True)
        ]
        wrapped = self._wrap([s.dek for s in seals], numbers, records, active)
        named = [(no, r.groups) for no, r in zip(numbers, records, strict=True)]
        masked = self.masked_names.of_many(named)
        archive_rows: list[tuple[Any, ...]] = []
        for no, r, seal, wrapped_dek, masked_name in zip(
            numbers, records, seals, wrapped, masked, strict=True
        ):
            consent = r.consent
            archive_rows.append(
                (
                    no,
                    r.category,
                    r.grade,
                    r.classification,
                    r.owner,
                    r.custodian,
                    r.department,
                    r.retention_until,
                    active[r.classification],
                    wrapped_dek,
                    consent.notice,
                    consent.at,
                    consent.channel,
                    consent.groups,
                    consent.sensitive_groups,
                    seal.manifest,
                    masked_name,
                )
            )
        ids = self._insert_archives(session, archive_rows, numbers, now)
        _CONTENT.run(
            session,
            [
                (archive_id, group, blob)
                for archive_id, seal in zip(ids, seals, strict=True)
                for group, blob in seal.groups.items()
            ],
            {"revision": 1, "updated_at": now},
        )
        _INDEX.run(
            session,
            [
                (archive_id, name, value)
                for archive_id, r in zip(ids, records, strict=True)
                for name, value in self.index.buckets(r.groups)
            ],
        )
        _CONTACTS.run(
            session,
            [(id_, c) for id_, r in zip(ids, records, strict=True) for c in r.contacts],
        )
        return [
            ArchiveMeta(
                archive_no=no,
                category=r.category,
                grade=r.grade,
                classification=r.classification,
                owner=r.owner,
                custodian=r.custodian,
                department=r.department,
                status=ArchiveStatus.ACTIVE.value,
                created_at=now,
                updated_at=now,
                retention_until=r.retention_until,
                contacts=tuple(sorted(r.contacts)),
            )
            for no, r in zip(numbers, records, strict=True)
        ]
