"""Archives after filing: changing fields, owner and contacts; listing, counting, searching.

Every change re-seals what it touches under the archive's DEK, keeps the
superseded ciphertext in the sealed history and re-seals the manifest, and
appends its audit entry in the same transaction (the caller's, when given, so
a decision and its action commit together).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from audit.events import Actor, AuditAction, AuditSink
from foundation.clock import utcnow
from foundation.db import transaction
from foundation.settings import Settings
from vault import manifest as mf
from vault.envelope import Envelope, content_aad
from vault.errors import ValidationFailed
from vault.formats import InvalidValue
from vault.index import BlindIndexes
from vault.masked_names import MaskedNames
from vault.meta import ArchiveMeta
from vault.models import (
    Archive,
    ArchiveContact,
    ArchiveStatus,
    BlindIndex,
    ContentHistory,
    SealedGroup,
    table_of,
)
from vault.reading import Reader
from vault.records import check_consent, parse_username, plain_text
from vault.rows import append_event, archive_id, consent_of, encode, load_archive, meta_of, unit
from vault.schema import ProfileSchema

LIST_LIMIT_MAX = 500


# The items a statistical report (Art 10) may hold, in the order it shows them: the one
# list every report request, grant and summary names its items from (Art 11).
REPORT_ITEMS: tuple[str, ...] = (
    "total",
    "status",
    "category",
    "grade",
    "classification",
    "department",
    "new_per_month",
    "past_retention",
)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ArchiveMeta]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A searched value, normalised, with the group it lives in and its index bucket."""

    name: str  # the searched field
    group: str
    needle: str = field(repr=False)  # the value itself: never logged or audited
    bucket: int = 0


class Archives:
    """Change, list, count and search archives that exist."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        schema: ProfileSchema,
        envelope: Envelope,
        index: BlindIndexes,
        masked_names: MaskedNames,
        reader: Reader,
        audit: AuditSink,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.schema = schema
        self.envelope = envelope
        self.index = index
        self.masked_names = masked_names
        self.reader = reader
        self.audit = audit
        self.clock = clock

    def update(
        self,
        archive_no: str,
        profile: Any,
        *,
        actor: Actor,
        purpose: str | None = None,
        grant_id: str | None = None,
        session: Session | None = None,
    ) -> ArchiveMeta:
        """Change fields (null removes one); the old group ciphertext goes to history."""
        changes = self.schema.validate_profile(
            profile, limit=self.settings.max_field_chars, allow_null=True
        )
        if not changes:
            raise ValidationFailed("profile names no field to change")
        now = self.clock()
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no, for_update=True)
            writing = [g for g, f in changes.items() if any(v is not None for v in f.values())]
            check_consent(writing, consent_of(archive), self.schema)
            rows = {
                r.group_name: r
                for r in session.exec(
                    select(SealedGroup).where(
                        SealedGroup.archive_id == archive.id,
                        col(SealedGroup.group_name).in_(list(changes)),
                    )
                )
            }
            dek = self.envelope.dek_of(archive)
            # The rows about to be merged must be the current ones, or a rollback
            # would be laundered into a new revision.
            manifest = self.envelope.manifest(dek, archive)
            mf.check_rows(
                manifest,
                archive_no,
                list(changes),
                [(g, r.revision, r.ciphertext) for g, r in rows.items()],
            )
            touched = []
            for group, fields in changes.items():
                row = rows.get(group)
                current = (
                    self.envelope.open_group(
                        dek, archive_no, group, archive.classification, row.revision, row.ciphertext
                    )
                    if row
                    else {}
                )
                merged: dict[str, str] = {
                    k: v for k, v in {**current, **fields}.items() if v is not None
                }
                if merged == current:
                    continue
                touched.append(group)
                if row is not None:
                    session.add(
                        ContentHistory(
                            archive_id=archive_id(archive),
                            group_name=group,
                            revision=row.revision,
                            ciphertext=row.ciphertext,
                            superseded_at=now,
                        )
                    )
                    manifest = manifest.superseded(group)
                if group == self.masked_names.group:
                    archive.masked_name_ct = self.masked_names.seal(archive_no, merged)
                if not merged:
                    if row is not None:
                        session.delete(row)
                    manifest = manifest.removed(group)
                    continue
                revision = row.revision + 1 if row else 1
                blob = dek.seal(
                    encode(merged),
                    content_aad(archive_no, group, archive.classification, dek.version, revision),
                )
                if row is None:
                    session.add(
                        SealedGroup(
                            archive_id=archive_id(archive),
                            group_name=group,
                            revision=revision,
                            ciphertext=blob,
                            updated_at=now,
                        )
                    )
                else:
                    row.revision, row.ciphertext, row.updated_at = revision, blob, now
                    session.add(row)
                manifest = manifest.written(group, revision, blob)
                self.index.reindex(session, archive_id(archive), group, merged)
            archive.manifest = mf.seal(dek, archive_no, archive.classification, manifest)
            archive.updated_at = now
            session.add(archive)
            append_event(
                self.audit,
                session,
                AuditAction.UPDATE,
                actor,
                archives=(archive_no,),
                groups=tuple(touched),
                purpose=purpose,
                grant_id=grant_id,
            )
            meta = meta_of(session, archive)
        return meta

    # -- search: primitives, and the whole search for callers that see everything ----

    def search_query(self, field_name: str, value: Any) -> SearchQuery:
        """A searched value, checked and normalised (``ValidationFailed`` never echoes it)."""
        spec = self.schema.fields.get(field_name)
        if spec is None or not spec.searchable:
            raise ValidationFailed(
                f"{field_name!r} is not searchable; searchable fields: "
                + ", ".join(self.schema.searchable)
            )
        try:
            needle = spec.normalise(value, self.settings.max_field_chars)
        except InvalidValue as exc:
            raise ValidationFailed(f"{field_name}: {exc}") from None
        return SearchQuery(
            name=field_name,
            group=spec.group,
            needle=needle,
            bucket=self.index.bucket(field_name, needle),
        )

    def candidates(self, session: Session, query: SearchQuery) -> list[tuple[Archive, ArchiveMeta]]:
        """Active archives in the query's index bucket (many share one by design), unopened."""
        rows = session.exec(
            select(Archive)
            .join(BlindIndex, col(BlindIndex.archive_id) == col(Archive.id))
            .where(
                BlindIndex.field == query.name,
                BlindIndex.value == query.bucket,
                Archive.status == ArchiveStatus.ACTIVE.value,
            )
            .order_by(col(Archive.id))
        ).all()
        return [(archive, meta_of(session, archive)) for archive in rows]

    def named(self, found: Sequence[tuple[Archive, ArchiveMeta]]) -> list[ArchiveMeta]:
        """Found archives' metadata with their masked names, opened in one pass."""
        names = self.masked_names.open_many((a.archive_no, a.masked_name_ct) for a, _ in found)
        return [replace(meta, masked_name=names[meta.archive_no]) for _, meta in found]

    def matches(self, session: Session, archive: Archive, query: SearchQuery) -> bool:
        """Whether a candidate holds the searched value: decrypted, compared in constant time.

        Ask only about candidates whose searched group the caller may read in clear:
        comparing a value the caller sees only masked, or not at all, would answer
        questions about it (ten thousand searches unmask ``138****8000``), and a
        candidate that fails to decrypt would say something through its error.
        """
        fields = self.reader.decrypt(session, archive, [query.group]).get(query.group, {})
        stored = fields.get(query.name)
        return stored is not None and hmac.compare_digest(stored.encode(), query.needle.encode())

    def record_search(
        self,
        session: Session,
        actor: Actor,
        query: SearchQuery,
        found: Sequence[ArchiveMeta],
        purpose: str | None = None,
    ) -> None:
        """The search's audit entry: the keyed HMAC of the query and what was returned,
        never the value or the candidates."""
        append_event(
            self.audit,
            session,
            AuditAction.SEARCH,
            actor,
            purpose=purpose,
            archives=tuple(m.archive_no for m in found),
            detail={
                "field": query.name,
                "query_hmac": self.index.query_hmac(query.name, query.needle),
                "returned": len(found),
            },
        )

    def search(
        self,
        field_name: str,
        value: Any,
        *,
        actor: Actor,
        limit: int = 50,
        purpose: str | None = None,
    ) -> list[ArchiveMeta]:
        """Exact match through the blind index over every candidate, for a caller who may
        read the searched field of every archive (the operator, tests). A caller whose
        reads are decided searches through ``policies.archive_acts.ArchiveActs.search``,
        which asks the decision about each candidate before ``matches``."""
        query = self.search_query(field_name, value)
        hits: list[tuple[Archive, ArchiveMeta]] = []
        with transaction(self.engine) as session:
            for archive, meta in self.candidates(session, query):
                if self.matches(session, archive, query):
                    hits.append((archive, meta))
                    if len(hits) >= limit:
                        break
            found = self.named(hits)
            self.record_search(session, actor, query, found, purpose)
        return found

    def list(
        self,
        *,
        actor: Actor,
        owner: str | None = None,
        category: str | None = None,
        grade: str | None = None,
        classification: str | None = None,
        department: str | None = None,
        status: str | None = ArchiveStatus.ACTIVE.value,
        retention_before: date | None = None,
        offset: int = 0,
        limit: int = 50,
        audit: bool = True,
        session: Session | None = None,
        short_of_contacts: Collection[str] | None = None,
    ) -> Page:
        """Metadata and the masked name only (客户一览表): no archive's key is touched,
        the masked names are opened in one pass under the customer-list key
        (``vault.masked_names``). ``short_of_contacts`` keeps the
        archives of those (important) grades listing nobody besides their owner (篇七)."""
        if not 1 <= limit <= LIST_LIMIT_MAX or offset < 0:
            raise ValidationFailed(f"limit must be 1–{LIST_LIMIT_MAX} and offset ≥ 0")
        filters: list[Any] = []
        # An empty filter means "any", as in a form left blank.
        owner, category, grade = owner or None, category or None, grade or None
        classification, department = classification or None, department or None
        if owner is not None:
            owner = parse_username(owner, "owner filter")
        if department is not None:
            department = plain_text(department, "department filter", 64)
        for column, value in (
            (Archive.owner, owner),
            (Archive.category, category),
            (Archive.grade, grade),
            (Archive.classification, classification),
            (Archive.department, department),
            (Archive.status, status),
        ):
            if value is not None:
                filters.append(column == value)
        if retention_before is not None:
            filters.append(Archive.retention_until < retention_before)
        if short_of_contacts is not None:
            others = (
                sa.select(col(ArchiveContact.archive_id))
                .where(
                    col(ArchiveContact.archive_id) == col(Archive.id),
                    col(ArchiveContact.username) != col(Archive.owner),
                )
                .exists()
            )
            filters.append(col(Archive.grade).in_(sorted(short_of_contacts)))
            filters.append(~others)
        with unit(self.engine, session) as session:
            total = session.exec(select(sa.func.count()).select_from(Archive).where(*filters)).one()
            rows = session.exec(
                select(Archive)
                .where(*filters)
                .order_by(col(Archive.id))
                .offset(offset)
                .limit(limit)
            ).all()
            contacts: dict[int, list[str]] = {}
            if rows:
                for aid, user in session.exec(
                    select(ArchiveContact.archive_id, ArchiveContact.username).where(
                        col(ArchiveContact.archive_id).in_([archive_id(a) for a in rows])
                    )
                ):
                    contacts.setdefault(aid, []).append(user)
            if audit:
                append_event(
                    self.audit,
                    session,
                    AuditAction.LIST,
                    actor,
                    detail={
                        "filters": {
                            k: v
                            for k, v in {
                                "owner": owner,
                                "category": category,
                                "grade": grade,
                                "classification": classification,
                                "department": department,
                                "status": status,
                                "retention_before": retention_before.isoformat()
                                if retention_before
                                else None,
                                "short_of_contacts": sorted(short_of_contacts)
                                if short_of_contacts is not None
                                else None,
                            }.items()
                            if v is not None
                        },
                        "returned": len(rows),
                        "offset": offset,
                    },
                )
        names = self.masked_names.open_many((a.archive_no, a.masked_name_ct) for a in rows)
        return Page(
            items=[
                ArchiveMeta.of(a, contacts.get(archive_id(a), []), names[a.archive_no])
                for a in rows
            ],
            total=int(total),
            offset=offset,
            limit=limit,
        )

    def statistics(
        self,
        *,
        actor: Actor,
        grant_id: str | None = None,
        purpose: str | None = None,
        session: Session | None = None,
        departments: Sequence[str] | None = None,
        items: Sequence[str] = REPORT_ITEMS,
        today: date | None = None,
    ) -> dict[str, Any]:
        """Counts over the clear metadata only (Art 10 statistical reports): no key is
        touched. ``departments`` limits the count to those departments (None: all);
        ``items`` names which of :data:`REPORT_ITEMS` the report holds."""
        unknown = [i for i in items if i not in REPORT_ITEMS]
        if unknown:
            raise ValidationFailed(
                f"unknown report item {', '.join(unknown)} (known: {', '.join(REPORT_ITEMS)})"
            )
        table = table_of(Archive)
        where = [] if departments is None else [table.c.department.in_(list(departments))]
        today = today or self.clock().date()
        out: dict[str, Any] = {}
        with unit(self.engine, session) as session:
            conn = session.connection()
            for column in ("status", "category", "grade", "classification", "department"):
                if column in items:
                    rows = conn.execute(
                        sa.select(table.c[column], sa.func.count())
                        .where(*where)
                        .group_by(table.c[column])
                    ).all()
                    out[column] = {str(k): int(n) for k, n in rows}
            if "total" in items:
                out["total"] = int(
                    conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(*where)
                    ).scalar_one()
                )
            if "new_per_month" in items:
                year = sa.extract("year", table.c.created_at)
                month = sa.extract("month", table.c.created_at)
                rows = conn.execute(
                    sa.select(year, month, sa.func.count()).where(*where).group_by(year, month)
                ).all()
                out["new_per_month"] = {
                    f"{int(y):04d}-{int(m):02d}": int(n) for y, m, n in sorted(rows)
                }
            if "past_retention" in items:
                out["past_retention"] = int(
                    conn.execute(
                        sa.select(sa.func.count())
                        .select_from(table)
                        .where(
                            *where,
                            table.c.status == ArchiveStatus.ACTIVE.value,
                            table.c.retention_until < today,
                        )
                    ).scalar_one()
                )
            append_event(
                self.audit,
                session,
                AuditAction.REPORT,
                actor,
                grant_id=grant_id,
                purpose=purpose,
                detail={
                    "report": "summary",
                    "departments": "all" if departments is None else sorted(departments),
                    "items": list(items),
                },
            )
        return out

    def reassign(
        self,
        archive_no: str,
        new_owner: str,
        *,
        actor: Actor,
        contacts: Sequence[str] | None = None,
        reason: str | None = None,
        session: Session | None = None,
    ) -> ArchiveMeta:
        reason = plain_text(reason, "reason") if reason is not None else None
        new_owner = parse_username(new_owner, "new owner")
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no, for_update=True)
            previous = archive.owner
            archive.owner, archive.updated_at = new_owner, self.clock()
            session.add(archive)
            if contacts is not None:
                names = [parse_username(c, "contacts") for c in contacts]
                session.execute(
                    delete(ArchiveContact).where(col(ArchiveContact.archive_id) == archive.id)
                )
                session.add_all(
                    ArchiveContact(archive_id=archive_id(archive), username=c)
                    for c in dict.fromkeys(names)
                )
            append_event(
                self.audit,
                session,
                AuditAction.REASSIGN,
                actor,
                archives=(archive_no,),
                reason=reason,
                detail={"from": previous, "to": new_owner},
            )
            meta = meta_of(session, archive)
        return meta
