"""The store service: every way customer content goes in or out of the vault.

Envelope encryption: each archive has its own random DEK; each field group is
sealed under it with associated data binding archive number, group,
classification, DEK generation and revision, so a ciphertext copied to another
archive, group or revision fails to open. The DEK is wrapped under the KEK of
the archive's classification level, itself versioned (see ``vault.rotation``).

Every operation that releases or changes content appends its audit event in
the same transaction; plaintext is returned only after that commit, so an
audit failure means no content (fail-closed).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, delete, select

from audit.events import Actor, AuditAction, AuditEvent, AuditSink, Outcome
from foundation.db import checkpoint_sqlite, transaction
from foundation.rawsql import Raw, raw_begin
from vault import crypto
from vault import manifest as mf
from vault.crypto import InvalidCiphertext, Sealer
from vault.errors import (
    ArchiveDestroyed,
    ArchiveNotFound,
    Conflict,
    DecryptionFailed,
    KeyFileError,
    ValidationFailed,
)
from vault.formats import InvalidValue
from vault.media import stored_media_type
from vault.meta import ArchiveMeta
from vault.models import (
    Archive,
    ArchiveContact,
    ArchiveContent,
    ArchiveCounter,
    ArchiveStatus,
    Attachment,
    AttachmentChunk,
    BlindIndex,
    Channel,
    Classification,
    ContentHistory,
    Interaction,
    VaultMeta,
    utcnow,
)
from vault.records import (
    ARCHIVE_NO,
    ATTACHMENTS,
    INTERACTIONS,
    Consent,
    NewArchive,
    RecordCheck,
    check_consent,
    free_text,
    parse_archive,
    parse_consent,
    parse_username,
    plain_text,
)

if TYPE_CHECKING:
    from vault.vault import Vault

LIST_LIMIT_MAX = 500


@contextlib.contextmanager
def _unit(engine: Any, session: Session | None) -> Iterator[Session]:
    """The caller's session if given (its transaction), else a transaction of our own."""
    if session is not None:
        yield session
        return
    with transaction(engine) as own:
        yield own


INTERACTION_TEXT_MAX = 20_000


@dataclass(frozen=True, slots=True)
class ArchiveView:
    """What a read returns: metadata, consent and the requested groups' fields."""

    meta: ArchiveMeta
    content: dict[str, dict[str, str]]
    masked: tuple[str, ...] = ()
    consent: Consent = field(default_factory=Consent)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ArchiveMeta]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class ReadPermit:
    """What a read may show: groups in clear, groups masked, and what travels to the audit."""

    groups: tuple[str, ...]
    masked_groups: tuple[str, ...] = ()
    purpose: str | None = None
    grant_id: str | None = None
    reason: str | None = None


Check = Callable[[Any, "ArchiveMeta", tuple[str, ...]], ReadPermit]  # (Connection, meta, groups)
# (Session, meta, group) -> may the caller see this field group of this archive in
# clear? A search compares a group's value only where the answer is yes.
Visible = Callable[[Any, "ArchiveMeta", str], bool]


def _meta(a: Archive, contacts: Sequence[str] = ()) -> ArchiveMeta:
    return ArchiveMeta.of(a, contacts)


def _consent_of(a: Archive) -> Consent:
    return Consent(
        notice=a.consent_notice,
        at=a.consent_at,
        channel=a.consent_channel,
        groups=tuple(a.consent_groups or ()),
        sensitive_groups=tuple(a.consent_sensitive_groups or ()),
    )


def _encode(fields: Mapping[str, str]) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class ArchiveStore:
    """Create, read, change and destroy archives; the only code that touches DEKs."""

    def __init__(
        self, *, vault: Vault, audit: AuditSink, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.vault = vault
        self.engine = vault.engine
        self.keys = vault.keys
        self.schema = vault.schema
        self.settings = vault.settings
        self.audit = audit
        self.clock = clock
        self._kek_cache: dict[tuple[str, int], Sealer] = {}
        self._index_mask = (1 << vault.index_bits) - 1

    # -- keys ---------------------------------------------------------------

    def _kek(self, level: str, version: int) -> Sealer:
        sealer = self._kek_cache.get((level, version))
        if sealer is None:
            sealer = Sealer(self.keys.kek(level, version), version)
            self._kek_cache[(level, version)] = sealer
        return sealer

    def _dek_aad(self, archive_no: str, level: str) -> bytes:
        return crypto.aad("dek", self.keys.vault_id, archive_no, level)

    def _wrap(self, dek: bytes, archive_no: str, level: str, version: int) -> bytes:
        return self._kek(level, version).seal(dek, self._dek_aad(archive_no, level))

    def _dek(
        self, archive_no: str, level: str, kek_version: int, dek_version: int, wrapped: bytes | None
    ) -> Sealer:
        if wrapped is None:
            raise ArchiveDestroyed(f"archive {archive_no} has been destroyed")
        try:
            dek = self._kek(level, kek_version).open(wrapped, self._dek_aad(archive_no, level))
        except InvalidCiphertext:
            raise DecryptionFailed(
                f"archive {archive_no}: its data key does not open under KEK {level} "
                f"v{kek_version} (tampered, moved from another archive, or the wrong key file)"
            ) from None
        return Sealer(dek, dek_version)

    def _dek_of(self, archive: Any) -> Sealer:
        """The DEK of an archive row (ORM object or Core row), unwrapped."""
        return self._dek(
            archive.archive_no,
            archive.classification,
            archive.kek_version,
            archive.dek_version,
            archive.wrapped_dek,
        )

    def active_kek(self, session: Session, level: str) -> int:
        """The KEK version new DEKs are wrapped under; the database is authoritative.

        Read from ``vault_meta`` (shared-locked on PostgreSQL) rather than the
        in-process keyring so that a rotation run by another process is seen
        at once and never retires a version a concurrent writer still uses.
        """
        stmt = select(VaultMeta).where(VaultMeta.key == f"kek_active:{level}")
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(read=True)
        row = session.exec(stmt).first()
        version = int(row.value) if row else 1
        self.keys.kek(level, version)  # fail early and clearly if the key file lacks it
        return version

    @staticmethod
    def content_aad(
        archive_no: str, group: str, level: str, dek_version: int, revision: int
    ) -> bytes:
        return crypto.aad("content", archive_no, group, level, dek_version, revision)

    def _open_group(
        self, dek: Sealer, archive_no: str, group: str, level: str, revision: int, blob: bytes
    ) -> dict[str, str]:
        try:
            raw = dek.open(blob, self.content_aad(archive_no, group, level, dek.version, revision))
        except InvalidCiphertext:
            raise DecryptionFailed(
                f"archive {archive_no}, field group {group!r}: ciphertext failed authentication "
                "(tampered, or copied from another archive or group)"
            ) from None
        return json.loads(raw)

    # -- blind indexes ------------------------------------------------------

    def blind_index(self, field_name: str, normalised: str) -> int:
        mac = hmac.new(self.keys.index_key(field_name), normalised.encode(), hashlib.sha256)
        return int.from_bytes(mac.digest()[:4], "big") & self._index_mask

    def query_hmac(self, field_name: str, normalised: str) -> str:
        """Full-length keyed hash of a searched value, for the audit log (never the value)."""
        key = self.keys.index_key("audit-query:" + field_name)
        return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()

    def _index_rows(self, archive_id: int, groups: Mapping[str, Mapping[str, str]]) -> list[dict]:
        rows = []
        for name in self.schema.searchable:
            spec = self.schema.fields[name]
            value = groups.get(spec.group, {}).get(name)
            if value is not None:
                rows.append(
                    {
                        "archive_id": archive_id,
                        "field": name,
                        "value": self.blind_index(name, value),
                    }
                )
        return rows

    # -- helpers ------------------------------------------------------------

    def _now(self) -> datetime:
        return self.clock()

    def _load(
        self,
        session: Session,
        archive_no: str,
        *,
        for_update: bool = False,
        allow_destroyed: bool = False,
    ) -> Archive:
        if not isinstance(archive_no, str) or not ARCHIVE_NO.fullmatch(archive_no):
            raise ValidationFailed("an archive number looks like KH-2026-000123")
        stmt = select(Archive).where(Archive.archive_no == archive_no)
        if for_update and session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        archive = session.exec(stmt).first()
        if archive is None:
            raise ArchiveNotFound(f"archive {archive_no} does not exist")
        if archive.status == ArchiveStatus.DESTROYED and not allow_destroyed:
            raise ArchiveDestroyed(f"archive {archive_no} has been destroyed")
        return archive

    def _contacts(self, session: Session, archive_id: int) -> list[str]:
        return list(
            session.exec(
                select(ArchiveContact.username)
                .where(ArchiveContact.archive_id == archive_id)
                .order_by(ArchiveContact.username)
            )
        )

    def _audit(self, session: Session, action: AuditAction, actor: Actor, **kw: Any) -> None:
        self.audit.append(session, AuditEvent(action=action, actor=actor, **kw))

    def prepare(self, data: Any, *, default_owner: str | None = None) -> NewArchive:
        return parse_archive(
            data,
            self.schema,
            now=self._now(),
            field_limit=self.settings.max_field_chars,
            retention_years=self.settings.default_retention_years,
            default_owner=default_owner,
        )

    # -- create -------------------------------------------------------------

    def create(
        self,
        data: Any,
        *,
        actor: Actor,
        purpose: str | None = None,
        check: RecordCheck | None = None,
    ) -> ArchiveMeta:
        """File one archive. ``check(session, record)`` runs in the inserting transaction
        first: the caller's rules on who may be named on it (the API passes the policy's)
        hold at the moment it is inserted, and its refusal leaves nothing behind."""
        record = self.prepare(data)
        with transaction(self.engine) as session:
            if check is not None:
                check(session, record)
            (meta,) = self.insert_many(session, [record])
            self._audit(
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

    def insert_many(self, session: Session, records: Sequence[NewArchive]) -> list[ArchiveMeta]:
        """Seal and insert validated archives in the caller's transaction (bulk, Core-level)."""
        if not records:
            return []
        now = self._now()
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
            self._bump_counter(session, explicit)  # type: ignore[arg-type]
        active = {lvl: self.active_kek(session, lvl) for lvl in {r.classification for r in records}}
        archive_rows, sealed_groups = [], []
        for r in records:
            dek = crypto.new_key()
            sealer = Sealer(dek, 1)
            sealed = {
                group: sealer.seal(
                    _encode(fields),
                    self.content_aad(r.archive_no, group, r.classification, 1, 1),  # type: ignore[arg-type]
                )
                for group, fields in r.groups.items()
                if fields
            }
            sealed_groups.append(sealed)
            archive_rows.append(
                {
                    "archive_no": r.archive_no,
                    "category": r.category,
                    "grade": r.grade,
                    "classification": r.classification,
                    "owner": r.owner,
                    "custodian": r.custodian,
                    "department": r.department,
                    "status": ArchiveStatus.ACTIVE.value,
                    "created_at": now,
                    "updated_at": now,
                    "retention_until": r.retention_until,
                    "kek_version": active[r.classification],
                    "dek_version": 1,
                    "wrapped_dek": self._wrap(
                        dek,
                        r.archive_no,
                        r.classification,  # type: ignore[arg-type]
                        active[r.classification],
                    ),
                    "consent_notice": r.consent.notice,
                    "consent_at": r.consent.at,
                    "consent_channel": r.consent.channel,
                    "consent_groups": list(r.consent.groups),
                    "consent_sensitive_groups": list(r.consent.sensitive_groups),
                    "manifest": mf.seal(
                        sealer, r.archive_no, r.classification, mf.of_new_archive(sealed)
                    ),  # type: ignore[arg-type]
                }
            )
        table = Archive.__table__  # type: ignore[attr-defined]
        try:
            ids = (
                session.execute(
                    sa.insert(table).returning(table.c.id, sort_by_parameter_order=True),
                    archive_rows,
                )
                .scalars()
                .all()
            )
        except IntegrityError:
            raise Conflict("an archive number in this batch already exists") from None
        content, index, contacts = [], [], []
        for archive_id, r, sealed in zip(ids, records, sealed_groups, strict=True):
            content.extend(
                {
                    "archive_id": archive_id,
                    "group_name": group,
                    "revision": 1,
                    "ciphertext": blob,
                    "updated_at": now,
                }
                for group, blob in sealed.items()
            )
            index.extend(self._index_rows(archive_id, r.groups))
            contacts.extend({"archive_id": archive_id, "username": c} for c in r.contacts)
        for model, rows in (
            (ArchiveContent, content),
            (BlindIndex, index),
            (ArchiveContact, contacts),
        ):
            if rows:
                session.execute(sa.insert(model.__table__), rows)  # type: ignore[attr-defined]
        return [
            ArchiveMeta(
                archive_no=r.archive_no,
                category=r.category,
                grade=r.grade,  # type: ignore[arg-type]
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
            for r in records
        ]

    # -- read ---------------------------------------------------------------

    def read(
        self,
        archive_no: str,
        groups: Iterable[str] | str | None = None,
        *,
        actor: Actor | Callable[[Any], Actor],
        masked: Iterable[str] = (),
        purpose: str | None = None,
        grant_id: str | None = None,
        reason: str | None = None,
        check: Check | None = None,
    ) -> ArchiveView:
        """Decrypt the requested groups; the audit entry commits before anything returns.

        ``check(session, meta, groups)``, when given, decides inside the same
        transaction (the policy decision of the read path) and returns a
        ``ReadPermit`` naming the groups to show in clear and masked; if it
        raises, the denial is audited, committed, and the exception re-raised.
        Without it, the caller has decided already and passes ``masked`` etc.
        ``actor`` may be a function of the open transaction (the API loads the
        caller's principal inside it); if that raises, nothing is read.
        """
        if not isinstance(archive_no, str) or not ARCHIVE_NO.fullmatch(archive_no):
            raise ValidationFailed("an archive number looks like KH-2026-000123")
        wanted = self.schema.check_groups(list(self.schema.groups) if groups is None else groups)
        permit = ReadPermit(
            groups=tuple(wanted),
            masked_groups=tuple(self.schema.check_groups(list(masked), "masked groups")),
            purpose=purpose,
            grant_id=grant_id,
            reason=reason,
        )
        failure: Exception | None = None
        content: dict[str, dict[str, str]] = {}
        with raw_begin(self.engine) as session:  # checks, opens and the audit append take it
            if not isinstance(actor, Actor):
                actor = actor(session)
            row = _ARCHIVE_BY_NO.first(session, {"no": archive_no})
            if row is None:
                raise ArchiveNotFound(f"archive {archive_no} does not exist")
            if row.status == ArchiveStatus.DESTROYED:
                raise ArchiveDestroyed(f"archive {archive_no} has been destroyed")
            contacts = [c for (c,) in _CONTACTS_OF.all(session, {"id": row.id})]
            meta = _meta(row, contacts)
            if check is not None:
                try:
                    permit = check(session, meta, tuple(wanted))
                except Exception as exc:  # noqa: BLE001 - audited, committed, re-raised below
                    failure = exc
            if failure is not None:
                self._audit(
                    session,
                    AuditAction.READ,
                    actor,
                    outcome=Outcome.DENIED,
                    archives=(archive_no,),
                    groups=tuple(wanted),
                    reason=str(failure)[:500],
                )
            else:
                shown = list(dict.fromkeys((*permit.groups, *permit.masked_groups)))
                try:
                    content = self._open_groups(session, row, shown) if shown else {}
                    outcome = Outcome.ALLOWED
                except (DecryptionFailed, KeyFileError) as exc:
                    failure, outcome = exc, Outcome.ERROR
                # Appended last: on PostgreSQL the append's lock is held until commit.
                self._audit(
                    session,
                    AuditAction.READ,
                    actor,
                    outcome=outcome,
                    archives=(archive_no,),
                    groups=tuple(shown),
                    grant_id=permit.grant_id,
                    purpose=permit.purpose,
                    reason=permit.reason,
                    detail={"masked": sorted(permit.masked_groups)} if permit.masked_groups else {},
                )
        committed = getattr(self.audit, "committed", None)
        if committed is not None:
            committed(1)
        if failure is not None:
            raise failure
        for group in set(permit.masked_groups) & content.keys():
            content[group] = {k: self.schema.fields[k].masked(v) for k, v in content[group].items()}
        return ArchiveView(
            meta=meta,
            content=content,
            masked=tuple(sorted(permit.masked_groups)),
            consent=_consent_of(row),
        )

    def _open_groups(
        self, session: Any, archive: Any, groups: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        groups = list(dict.fromkeys(groups))  # one compiled statement per distinct count
        params: dict[str, Any] = {f"g{i}": g for i, g in enumerate(groups)}
        params["id"] = archive.id
        rows = _content_of(len(groups)).all(session, params)
        dek = self._dek_of(archive)
        mf.check_rows(self._manifest(dek, archive), archive.archive_no, groups, rows)
        out = {}
        for group, revision, blob in rows:
            out[group] = self._open_group(
                dek, archive.archive_no, group, archive.classification, revision, blob
            )
        return {g: out[g] for g in groups if g in out}

    def _manifest(self, dek: Sealer, archive: Any) -> mf.Manifest:
        """The archive's authenticated manifest (ORM object or Core row)."""
        return mf.open_manifest(
            dek, archive.archive_no, archive.classification, archive.manifest, keys=self.keys
        )

    @staticmethod
    def _fast_statement(single: bool) -> sa.Select:
        a = Archive.__table__  # type: ignore[attr-defined]
        c = ArchiveContent.__table__  # type: ignore[attr-defined]
        # One group compares with = (no per-call IN expansion); several use expanding IN.
        group = (
            c.c.group_name == sa.bindparam("groups")
            if single
            else c.c.group_name.in_(sa.bindparam("groups", expanding=True))
        )
        return (
            sa.select(
                a.c.classification,
                a.c.kek_version,
                a.c.dek_version,
                a.c.wrapped_dek,
                a.c.status,
                c.c.group_name,
                c.c.revision,
                c.c.ciphertext,
                a.c.manifest,
            )
            .select_from(a.outerjoin(c, sa.and_(c.c.archive_id == a.c.id, group)))
            .where(a.c.archive_no == sa.bindparam("no"))
        )

    def _decrypt_unaudited(
        self, session: Session, archive_no: str, groups: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        """The bare decryption path (one joined query, unwrap, open), with NO audit entry.

        Private on purpose: only ``bench/store.py`` calls it, to measure what the
        encryption itself costs against a plain read. Everything that releases
        content goes through ``read``, which audits before returning.
        """
        if len(groups) == 1:
            stmt, params = _FAST_READ_ONE, {"no": archive_no, "groups": groups[0]}
        else:
            stmt, params = _FAST_READ_MANY, {"no": archive_no, "groups": list(groups)}
        rows = session.connection().execute(stmt, params).all()
        if not rows:
            raise ArchiveNotFound(f"archive {archive_no} does not exist")
        level, kek_v, dek_v, wrapped, status = rows[0][:5]
        if status == ArchiveStatus.DESTROYED:
            raise ArchiveDestroyed(f"archive {archive_no} has been destroyed")
        out: dict[str, dict[str, str]] = {}
        dek = self._dek(archive_no, level, kek_v, dek_v, wrapped)
        found = [(r[5], r[6], r[7]) for r in rows if r[5] is not None]
        manifest = mf.open_manifest(dek, archive_no, level, rows[0][8], keys=self.keys)
        mf.check_rows(manifest, archive_no, groups, found)
        for row in rows:
            if row[5] is None:
                continue
            out[row[5]] = self._open_group(dek, archive_no, row[5], level, row[6], row[7])
        return out

    def export(
        self,
        archive_nos: Sequence[str],
        groups: Iterable[str],
        *,
        actor: Actor,
        purpose: str | None = None,
        grant_id: str | None = None,
        reason: str | None = None,
        provision: bool = False,
    ) -> list[ArchiveView]:
        """Decrypt several archives for an approved copy or external provision (Art 23–24).

        One transaction and one audit entry naming every archive and group; as
        with ``read``, nothing is returned unless that entry commits.
        """
        wanted = self.schema.check_groups(list(groups))
        numbers = list(dict.fromkeys(archive_nos))
        if not numbers:
            raise ValidationFailed("an export names at least one archive")
        views = []
        with transaction(self.engine) as session:
            for no in numbers:
                archive = self._load(session, no)
                contacts = self._contacts(session, archive.id)  # type: ignore[arg-type]
                views.append(
                    ArchiveView(
                        meta=_meta(archive, contacts),
                        content=self._open_groups(session, archive, wanted),
                    )
                )
            self._audit(
                session,
                AuditAction.EXPORT,
                actor,
                archives=tuple(numbers),
                groups=tuple(wanted),
                purpose=purpose,
                grant_id=grant_id,
                reason=reason,
                detail={"provision": provision, "archives": len(numbers)},
            )
        return views

    def history(
        self,
        archive_no: str,
        group: str,
        *,
        actor: Actor,
        purpose: str | None = None,
        grant_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Earlier revisions of one group, newest first (audited like a read)."""
        (group,) = self.schema.check_groups([group])
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no)
            rows = session.exec(
                select(ContentHistory)
                .where(ContentHistory.archive_id == archive.id, ContentHistory.group_name == group)
                .order_by(ContentHistory.revision.desc())  # type: ignore[attr-defined]
            ).all()
            out = []
            dek = self._dek_of(archive)
            manifest = self._manifest(dek, archive)
            mf.check_history(
                manifest, archive_no, group, [(h.revision, h.ciphertext) for h in rows]
            )
            self._open_groups(session, archive, [group])  # the current revision is genuine too
            if rows:
                for h in rows:
                    out.append(
                        {
                            "revision": h.revision,
                            "superseded_at": h.superseded_at.isoformat(),
                            "fields": self._open_group(
                                dek,
                                archive_no,
                                group,
                                archive.classification,
                                h.revision,
                                h.ciphertext,
                            ),
                        }
                    )
            self._audit(
                session,
                AuditAction.READ,
                actor,
                archives=(archive_no,),
                groups=(group,),
                purpose=purpose,
                grant_id=grant_id,
                detail={"history": True, "revisions": len(out)},
            )
        return out

    # -- update -------------------------------------------------------------

    def update(
        self,
        archive_no: str,
        profile: Any,
        *,
        actor: Actor,
        purpose: str | None = None,
        grant_id: str | None = None,
    ) -> ArchiveMeta:
        """Change fields (null removes one); the old group ciphertext goes to history."""
        changes = self.schema.validate_profile(
            profile, limit=self.settings.max_field_chars, allow_null=True
        )
        if not changes:
            raise ValidationFailed("profile names no field to change")
        now = self._now()
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no, for_update=True)
            writing = [g for g, f in changes.items() if any(v is not None for v in f.values())]
            check_consent(writing, _consent_of(archive), self.schema)
            rows = {
                r.group_name: r
                for r in session.exec(
                    select(ArchiveContent).where(
                        ArchiveContent.archive_id == archive.id,
                        ArchiveContent.group_name.in_(list(changes)),  # type: ignore[attr-defined]
                    )
                )
            }
            dek = self._dek_of(archive)
            # The rows about to be merged must be the current ones, or a rollback
            # would be laundered into a new revision.
            manifest = self._manifest(dek, archive)
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
                    self._open_group(
                        dek, archive_no, group, archive.classification, row.revision, row.ciphertext
                    )
                    if row
                    else {}
                )
                merged = {**current, **fields}
                merged = {k: v for k, v in merged.items() if v is not None}
                if merged == current:
                    continue
                touched.append(group)
                if row is not None:
                    session.add(
                        ContentHistory(
                            archive_id=archive.id,
                            group_name=group,
                            revision=row.revision,
                            ciphertext=row.ciphertext,
                            superseded_at=now,
                        )
                    )
                    manifest = manifest.superseded(group)
                if not merged:
                    if row is not None:
                        session.delete(row)
                    manifest = manifest.removed(group)
                    continue
                revision = row.revision + 1 if row else 1
                blob = dek.seal(
                    _encode(merged),
                    self.content_aad(
                        archive_no, group, archive.classification, dek.version, revision
                    ),
                )
                if row is None:
                    session.add(
                        ArchiveContent(
                            archive_id=archive.id,
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
                self._reindex(session, archive.id, group, merged)  # type: ignore[arg-type]
            archive.manifest = mf.seal(dek, archive_no, archive.classification, manifest)
            archive.updated_at = now
            session.add(archive)
            self._audit(
                session,
                AuditAction.UPDATE,
                actor,
                archives=(archive_no,),
                groups=tuple(touched),
                purpose=purpose,
                grant_id=grant_id,
            )
            meta = _meta(archive, self._contacts(session, archive.id))  # type: ignore[arg-type]
        return meta

    def _reindex(
        self, session: Session, archive_id: int, group: str, fields: Mapping[str, str]
    ) -> None:
        for name in self.schema.searchable:
            if self.schema.fields[name].group != group:
                continue
            session.execute(
                delete(BlindIndex).where(
                    BlindIndex.archive_id == archive_id, BlindIndex.field == name
                )
            )
            if name in fields:
                session.add(
                    BlindIndex(
                        archive_id=archive_id,
                        field=name,
                        value=self.blind_index(name, fields[name]),
                    )
                )

    # -- search & list ------------------------------------------------------

    def search(
        self,
        field_name: str,
        value: Any,
        *,
        actor: Actor,
        visible: Visible,
        limit: int = 50,
        purpose: str | None = None,
    ) -> list[ArchiveMeta]:
        """Exact match through the blind index, only among archives whose searched
        field the caller may read in clear.

        ``visible(session, meta, group)`` asks whether the caller's read decision
        on one candidate shows the searched field's group in clear (not masked,
        and covered by the grant that allows it), inside the search's transaction
        and before anything is decrypted. Comparing a value the caller sees only
        masked, or not at all, would answer questions about it (ten thousand
        searches unmask ``138****8000``), so a candidate it refuses is never
        opened: neither the result, its count nor an error (a candidate that
        fails to decrypt) says anything about values the caller may not read. The
        others are confirmed by decrypting and comparing in constant time. The
        audit entry records the keyed HMAC of the query and what was returned,
        never the value or the candidates.
        """
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
        bucket = self.blind_index(field_name, needle)
        found: list[ArchiveMeta] = []
        with transaction(self.engine) as session:
            candidates = session.exec(
                select(Archive)
                .join(BlindIndex, BlindIndex.archive_id == Archive.id)
                .where(
                    BlindIndex.field == field_name,
                    BlindIndex.value == bucket,
                    Archive.status == ArchiveStatus.ACTIVE.value,
                )
                .order_by(Archive.id)
            ).all()
            for archive in candidates:
                meta = _meta(archive, self._contacts(session, archive.id))  # type: ignore[arg-type]
                if not visible(session, meta, spec.group):
                    continue
                fields = self._open_groups(session, archive, [spec.group]).get(spec.group, {})
                stored = fields.get(field_name)
                if stored is not None and hmac.compare_digest(stored.encode(), needle.encode()):
                    found.append(meta)
                    if len(found) >= limit:
                        break
            self._audit(
                session,
                AuditAction.SEARCH,
                actor,
                purpose=purpose,
                archives=tuple(m.archive_no for m in found),
                detail={
                    "field": field_name,
                    "query_hmac": self.query_hmac(field_name, needle),
                    "returned": len(found),
                },
            )
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
    ) -> Page:
        """Metadata only (客户一览表): no key is touched."""
        if not 1 <= limit <= LIST_LIMIT_MAX or offset < 0:
            raise ValidationFailed(f"limit must be 1–{LIST_LIMIT_MAX} and offset ≥ 0")
        filters = []
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
        with transaction(self.engine) as session:
            total = session.exec(select(sa.func.count()).select_from(Archive).where(*filters)).one()
            rows = session.exec(
                select(Archive).where(*filters).order_by(Archive.id).offset(offset).limit(limit)
            ).all()
            contacts: dict[int, list[str]] = {}
            if rows:
                for aid, user in session.exec(
                    select(ArchiveContact.archive_id, ArchiveContact.username).where(
                        ArchiveContact.archive_id.in_([a.id for a in rows])
                    )  # type: ignore[attr-defined]
                ):
                    contacts.setdefault(aid, []).append(user)
            if audit:
                self._audit(
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
                            }.items()
                            if v is not None
                        },
                        "returned": len(rows),
                        "offset": offset,
                    },
                )
        return Page(
            items=[_meta(a, sorted(contacts.get(a.id, []))) for a in rows],  # type: ignore[arg-type]
            total=int(total),
            offset=offset,
            limit=limit,
        )

    def statistics(
        self, *, actor: Actor, grant_id: str | None = None, purpose: str | None = None
    ) -> dict[str, Any]:
        """Counts over the clear metadata only (Art 10 statistical reports): no key is touched."""
        table = Archive.__table__  # type: ignore[attr-defined]
        out: dict[str, Any] = {}
        with transaction(self.engine) as session:
            conn = session.connection()
            for column in ("status", "category", "grade", "classification", "department"):
                rows = conn.execute(
                    sa.select(table.c[column], sa.func.count()).group_by(table.c[column])
                ).all()
                out[column] = {str(k): int(n) for k, n in rows}
            out["total"] = sum(out["status"].values())
            self._audit(
                session,
                AuditAction.REPORT,
                actor,
                grant_id=grant_id,
                purpose=purpose,
                detail={"report": "summary", "total": out["total"]},
            )
        return out

    def meta(self, archive_no: str) -> ArchiveMeta:
        """Metadata of one archive (destroyed ones included); used by policy decisions."""
        with Session(self.engine) as session:
            archive = self._load(session, archive_no, allow_destroyed=True)
            return _meta(archive, self._contacts(session, archive.id))  # type: ignore[arg-type]

    # -- ownership & classification -----------------------------------------

    def reassign(
        self,
        archive_no: str,
        new_owner: str,
        *,
        actor: Actor,
        contacts: Sequence[str] | None = None,
        reason: str | None = None,
    ) -> ArchiveMeta:
        reason = plain_text(reason, "reason") if reason is not None else None
        new_owner = parse_username(new_owner, "new owner")
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no, for_update=True)
            previous = archive.owner
            archive.owner, archive.updated_at = new_owner, self._now()
            session.add(archive)
            if contacts is not None:
                names = [parse_username(c, "contacts") for c in contacts]
                session.execute(
                    delete(ArchiveContact).where(ArchiveContact.archive_id == archive.id)
                )
                session.add_all(
                    ArchiveContact(archive_id=archive.id, username=c)  # type: ignore[arg-type]
                    for c in dict.fromkeys(names)
                )
            self._audit(
                session,
                AuditAction.REASSIGN,
                actor,
                archives=(archive_no,),
                reason=reason,
                detail={"from": previous, "to": new_owner},
            )
            meta = _meta(archive, self._contacts(session, archive.id))  # type: ignore[arg-type]
        return meta

    def reclassify(
        self,
        archive_no: str,
        level: str,
        *,
        actor: Actor,
        custodian: str | None = None,
        reason: str | None = None,
        session: Session | None = None,
    ) -> ArchiveMeta:
        """Move an archive to another level: a new DEK under that level's KEK, all re-sealed.

        Given a ``session``, runs in the caller's transaction (an approved change
        request applies in the transaction of its final signature)."""
        reason = plain_text(reason, "reason") if reason is not None else None
        if level not in {c.value for c in Classification}:
            raise ValidationFailed("classification must be one of internal, secret, top_secret")
        if custodian is not None:
            custodian = parse_username(custodian, "custodian")
        with _unit(self.engine, session) as session:
            archive = self._load(session, archive_no, for_update=True)
            old_level = archive.classification
            custodian = custodian or archive.custodian
            if level == Classification.TOP_SECRET and not custodian:
                raise ValidationFailed(
                    f"archive {archive_no}: a top_secret archive needs a named custodian (Art 22)"
                )
            if level == old_level and custodian == archive.custodian:
                raise ValidationFailed(f"archive {archive_no} is already {level}")
            old = self._dek(
                archive_no, old_level, archive.kek_version, archive.dek_version, archive.wrapped_dek
            )
            new_key = crypto.new_key()
            new = Sealer(new_key, archive.dek_version + 1)
            manifest = self._manifest(old, archive)
            mf.verify_all(session, manifest, archive_no, archive.id)  # type: ignore[arg-type]
            self._reseal_all(session, archive, old, new, old_level, level)
            session.flush()
            archive.manifest = mf.seal(
                new, archive_no, level, mf.rebuilt(session, archive.id, manifest.history)
            )  # type: ignore[arg-type]
            version = self.active_kek(session, level)
            archive.classification, archive.custodian = level, custodian
            archive.kek_version, archive.dek_version = version, new.version
            archive.wrapped_dek = self._wrap(new_key, archive_no, level, version)
            archive.updated_at = self._now()
            session.add(archive)
            self._audit(
                session,
                AuditAction.RECLASSIFY,
                actor,
                archives=(archive_no,),
                reason=reason,
                detail={"from": old_level, "to": level, "custodian": custodian},
            )
            meta = _meta(archive, self._contacts(session, archive.id))  # type: ignore[arg-type]
        return meta

    def _reseal_all(
        self,
        session: Session,
        archive: Archive,
        old: Sealer,
        new: Sealer,
        old_level: str,
        new_level: str,
    ) -> None:
        no = archive.archive_no
        for row in session.exec(
            select(ArchiveContent).where(ArchiveContent.archive_id == archive.id)
        ):
            plain = old.open(
                row.ciphertext,
                self.content_aad(no, row.group_name, old_level, old.version, row.revision),
            )
            row.ciphertext = new.seal(
                plain, self.content_aad(no, row.group_name, new_level, new.version, row.revision)
            )
            session.add(row)
        for h in session.exec(
            select(ContentHistory).where(ContentHistory.archive_id == archive.id)
        ):
            plain = old.open(
                h.ciphertext, self.content_aad(no, h.group_name, old_level, old.version, h.revision)
            )
            h.ciphertext = new.seal(
                plain, self.content_aad(no, h.group_name, new_level, new.version, h.revision)
            )
            session.add(h)
        for it in session.exec(select(Interaction).where(Interaction.archive_id == archive.id)):
            if it.ciphertext is not None:
                plain = old.open(
                    it.ciphertext, self._interaction_aad(no, old_level, old.version, it.uid)
                )
                it.ciphertext = new.seal(
                    plain, self._interaction_aad(no, new_level, new.version, it.uid)
                )
                session.add(it)
        for att in session.exec(select(Attachment).where(Attachment.archive_id == archive.id)):
            if att.meta_ct is not None:
                plain = old.open(
                    att.meta_ct, self._attachment_aad(no, old_level, old.version, att.uid)
                )
                att.meta_ct = new.seal(
                    plain, self._attachment_aad(no, new_level, new.version, att.uid)
                )
                session.add(att)
            for seq in range(att.chunk_count):
                chunk = session.get(AttachmentChunk, (att.id, seq))
                final = seq == att.chunk_count - 1
                plain = old.open(
                    chunk.ciphertext,
                    self._chunk_aad(  # type: ignore[union-attr]
                        no, old_level, old.version, att.uid, seq, final
                    ),
                )
                chunk.ciphertext = new.seal(
                    plain,
                    self._chunk_aad(  # type: ignore[union-attr]
                        no, new_level, new.version, att.uid, seq, final
                    ),
                )
                session.add(chunk)
                session.flush()
                session.expunge(chunk)  # type: ignore[arg-type]

    # -- consent ------------------------------------------------------------

    def record_consent(self, archive_no: str, consent: Any, *, actor: Actor) -> Consent:
        """Replace the consent record with a newer one that must keep what is stored covered."""
        parsed = parse_consent(consent, self.schema, now=self._now())
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no, for_update=True)
            stored = list(
                session.exec(
                    select(ArchiveContent.group_name).where(ArchiveContent.archive_id == archive.id)
                )
            )
            try:
                check_consent(stored, parsed, self.schema)
            except ValidationFailed as exc:
                raise ValidationFailed(
                    f"archive {archive_no}: the new consent does not cover stored content "
                    f"({exc.message}); withdraw those groups instead"
                ) from None
            archive.consent_notice, archive.consent_at = parsed.notice, parsed.at
            archive.consent_channel = parsed.channel
            archive.consent_groups = list(parsed.groups)
            archive.consent_sensitive_groups = list(parsed.sensitive_groups)
            session.add(archive)
            self._audit(
                session,
                AuditAction.CONSENT_RECORD,
                actor,
                archives=(archive_no,),
                groups=parsed.groups,
                detail={"notice": parsed.notice, "channel": parsed.channel},
            )
        return parsed

    def withdraw_consent(
        self,
        archive_no: str,
        groups: Iterable[str] | str,
        *,
        actor: Actor,
        sensitive_only: bool = False,
    ) -> dict[str, int]:
        """PIPL Art 15: withdrawing consent erases those groups, their history included."""
        wanted = self.schema.check_groups(groups)
        if not wanted:
            raise ValidationFailed("name the field groups whose consent is withdrawn")
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no, for_update=True)
            dek = self._dek_of(archive)
            manifest = self._manifest(dek, archive).erased(wanted)
            erased = self._erase_groups(session, archive, wanted)
            archive.manifest = mf.seal(dek, archive_no, archive.classification, manifest)
            keep = [g for g in archive.consent_groups or [] if sensitive_only or g not in wanted]
            keep_sensitive = [g for g in archive.consent_sensitive_groups or [] if g not in wanted]
            archive.consent_groups, archive.consent_sensitive_groups = keep, keep_sensitive
            archive.updated_at = self._now()
            session.add(archive)
            self._audit(
                session,
                AuditAction.CONSENT_WITHDRAW,
                actor,
                archives=(archive_no,),
                groups=tuple(wanted),
                detail={"erased": erased},
            )
        checkpoint_sqlite(self.engine)
        return erased

    def _erase_groups(
        self, session: Session, archive: Archive, groups: Sequence[str]
    ) -> dict[str, int]:
        content = session.execute(
            delete(ArchiveContent).where(
                ArchiveContent.archive_id == archive.id, ArchiveContent.group_name.in_(groups)
            )
        )  # type: ignore[attr-defined]
        history = session.execute(
            delete(ContentHistory).where(
                ContentHistory.archive_id == archive.id, ContentHistory.group_name.in_(groups)
            )
        )  # type: ignore[attr-defined]
        fields = [n for n in self.schema.searchable if self.schema.fields[n].group in groups]
        index = session.execute(
            delete(BlindIndex).where(
                BlindIndex.archive_id == archive.id, BlindIndex.field.in_(fields)
            )
        )  # type: ignore[attr-defined]
        return {
            "groups": content.rowcount,
            "history": history.rowcount,
            "index_entries": index.rowcount,
        }

    # -- destruction ---------------------------------------------------------

    def destroy(
        self, archive_no: str, *, actor: Actor, reason: str, approval: str | None = None
    ) -> dict[str, Any]:
        """Crypto-shred: erase the wrapped DEK and every ciphertext in one transaction.

        SQLite's ``secure_delete`` zeroes the freed cells and the WAL is
        checkpointed afterwards, so neither the key nor the content survives
        in the database file. The certificate goes into the audit log.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationFailed("a destruction needs a reason (Art 25)")
        reason = plain_text(reason, "reason")
        now = self._now()
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no, for_update=True)
            wrapped_digest = hashlib.sha256(archive.wrapped_dek or b"").hexdigest()
            erased = self._erase_groups(session, archive, list(self.schema.groups))
            erased["interactions"] = session.execute(
                delete(Interaction).where(Interaction.archive_id == archive.id)
            ).rowcount
            att_ids = list(
                session.exec(select(Attachment.id).where(Attachment.archive_id == archive.id))
            )
            erased["attachment_chunks"] = (
                session.execute(
                    delete(AttachmentChunk).where(AttachmentChunk.attachment_id.in_(att_ids))  # type: ignore[attr-defined]
                ).rowcount
                if att_ids
                else 0
            )
            erased["attachments"] = session.execute(
                delete(Attachment).where(Attachment.archive_id == archive.id)
            ).rowcount
            session.execute(delete(ArchiveContact).where(ArchiveContact.archive_id == archive.id))
            archive.wrapped_dek, archive.manifest = None, None
            archive.status, archive.destroyed_at, archive.updated_at = (
                ArchiveStatus.DESTROYED.value,
                now,
                now,
            )
            archive.consent_groups, archive.consent_sensitive_groups = [], []
            session.add(archive)
            certificate = {
                "certificate_id": uuid.uuid4().hex,
                "archive_no": archive_no,
                "destroyed_at": now.isoformat(),
                "destroyed_by": actor.username,
                "reason": reason.strip(),
                "approval": approval,
                "classification": archive.classification,
                "kek_version": archive.kek_version,
                "dek_version": archive.dek_version,
                "wrapped_dek_sha256": wrapped_digest,
                "erased": erased,
                "method": "crypto-shred: wrapped DEK erased, ciphertext deleted (secure_delete)",
            }
            self._audit(
                session,
                AuditAction.DESTROY,
                actor,
                archives=(archive_no,),
                reason=reason.strip(),
                grant_id=approval,
                detail={"certificate": certificate},
            )
        certificate["wal_checkpointed"] = checkpoint_sqlite(self.engine)
        return certificate

    # -- interactions ---------------------------------------------------------

    @staticmethod
    def _interaction_aad(no: str, level: str, dek_version: int, uid: str) -> bytes:
        return crypto.aad("interaction", no, level, dek_version, uid)

    def add_interaction(
        self, archive_no: str, *, occurred_on: date | str, channel: str, text: str, actor: Actor
    ) -> dict[str, Any]:
        """File a letter, fax, call, visit or revisit record (篇七); its text is sealed."""
        if channel not in {c.value for c in Channel}:
            raise ValidationFailed("channel must be one of " + ", ".join(c.value for c in Channel))
        if isinstance(occurred_on, str):
            try:
                occurred_on = date.fromisoformat(occurred_on)
            except ValueError:
                raise ValidationFailed("occurred_on must be a date (YYYY-MM-DD)") from None
        if occurred_on > self._now().date():
            raise ValidationFailed("occurred_on is in the future")
        if not isinstance(text, str) or not text.strip():
            raise ValidationFailed("an interaction record needs its text")
        text = free_text(text, "interaction text", INTERACTION_TEXT_MAX)
        uid = secrets.token_hex(16)
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no)
            dek = self._dek_of(archive)
            blob = dek.seal(
                text.strip().encode(),
                self._interaction_aad(archive_no, archive.classification, dek.version, uid),
            )
            row = Interaction(
                uid=uid,
                archive_id=archive.id,
                occurred_on=occurred_on,  # type: ignore[arg-type]
                channel=channel,
                author=actor.username,
                ciphertext=blob,
                created_at=self._now(),
            )
            session.add(row)
            archive.updated_at = self._now()
            session.add(archive)
            self._audit(
                session,
                AuditAction.INTERACTION_ADD,
                actor,
                archives=(archive_no,),
                groups=(INTERACTIONS,),
                detail={"interaction": uid, "channel": channel},
            )
        return {
            "uid": uid,
            "occurred_on": occurred_on.isoformat(),
            "channel": channel,
            "author": actor.username,
        }

    def interactions(
        self,
        archive_no: str,
        *,
        actor: Actor,
        purpose: str | None = None,
        grant_id: str | None = None,
    ) -> list[dict[str, Any]]:
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no)
            rows = session.exec(
                select(Interaction)
                .where(Interaction.archive_id == archive.id)
                .order_by(Interaction.occurred_on, Interaction.id)
            ).all()
            out = []
            if rows:
                dek = self._dek_of(archive)
                for it in rows:
                    try:
                        text = dek.open(
                            it.ciphertext or b"",
                            self._interaction_aad(
                                archive_no, archive.classification, dek.version, it.uid
                            ),
                        ).decode()
                    except InvalidCiphertext:
                        raise DecryptionFailed(
                            f"archive {archive_no}, interaction {it.uid}: ciphertext failed "
                            "authentication"
                        ) from None
                    out.append(
                        {
                            "uid": it.uid,
                            "occurred_on": it.occurred_on.isoformat(),
                            "channel": it.channel,
                            "author": it.author,
                            "text": text,
                        }
                    )
            self._audit(
                session,
                AuditAction.INTERACTION_READ,
                actor,
                archives=(archive_no,),
                groups=(INTERACTIONS,),
                purpose=purpose,
                grant_id=grant_id,
                detail={"count": len(out)},
            )
        return out

    # -- attachments ----------------------------------------------------------

    @staticmethod
    def _attachment_aad(no: str, level: str, dek_version: int, uid: str) -> bytes:
        return crypto.aad("attachment-meta", no, level, dek_version, uid)

    @staticmethod
    def _chunk_aad(no: str, level: str, dek_version: int, uid: str, seq: int, final: bool) -> bytes:
        # The final flag (as in the STREAM construction) makes truncation detectable.
        return crypto.aad("attachment-chunk", no, level, dek_version, uid, seq, int(final))

    def add_attachment(
        self, archive_no: str, *, filename: str, content_type: str, stream: IO[bytes], actor: Actor
    ) -> dict[str, Any]:
        """Seal a file chunk by chunk: it is never held whole in memory."""
        if not isinstance(filename, str) or not filename.strip() or len(filename) > 255:
            raise ValidationFailed("an attachment needs a file name of at most 255 characters")
        filename = plain_text(filename, "filename", 255)
        content_type = stored_media_type(content_type)
        size_cap, chunk_size = (
            self.settings.max_attachment_bytes,
            self.settings.attachment_chunk_bytes,
        )
        uid = secrets.token_hex(16)
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no)
            level = archive.classification
            dek = self._dek(
                archive_no, level, archive.kek_version, archive.dek_version, archive.wrapped_dek
            )
            row = Attachment(
                uid=uid,
                archive_id=archive.id,
                author=actor.username,  # type: ignore[arg-type]
                created_at=self._now(),
            )
            session.add(row)
            session.flush()
            size, seq = 0, 0
            pending = stream.read(chunk_size)
            while True:
                nxt = stream.read(chunk_size) if pending else b""
                final = not nxt
                size += len(pending)
                if size > size_cap:
                    raise ValidationFailed(f"attachment is larger than {size_cap} bytes")
                session.execute(
                    sa.insert(AttachmentChunk.__table__),
                    [
                        {  # type: ignore[attr-defined]
                            "attachment_id": row.id,
                            "seq": seq,
                            "ciphertext": dek.seal(
                                pending,
                                self._chunk_aad(archive_no, level, dek.version, uid, seq, final),
                            ),
                        }
                    ],
                )
                seq += 1
                if final:
                    break
                pending = nxt
            meta = {"filename": filename.strip(), "content_type": content_type}
            row.meta_ct = dek.seal(
                _encode(meta), self._attachment_aad(archive_no, level, dek.version, uid)
            )
            row.size, row.chunk_count, row.complete = size, seq, True
            session.add(row)
            self._audit(
                session,
                AuditAction.ATTACHMENT_ADD,
                actor,
                archives=(archive_no,),
                groups=(ATTACHMENTS,),
                detail={"attachment": uid, "bytes": size},
            )
        return {"uid": uid, "size": size, "chunks": seq}

    def attachments(
        self,
        archive_no: str,
        *,
        actor: Actor,
        purpose: str | None = None,
        grant_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Attachment listing without names (names are content; open one to see it).

        Listing is an access to the archive's records, so it is audited like a read.
        """
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no)
            out = [
                {
                    "uid": a.uid,
                    "size": a.size,
                    "author": a.author,
                    "created_at": a.created_at.isoformat(),
                }
                for a in session.exec(
                    select(Attachment)
                    .where(Attachment.archive_id == archive.id, Attachment.complete)
                    .order_by(Attachment.id)
                )
            ]
            self._audit(
                session,
                AuditAction.ATTACHMENT_LIST,
                actor,
                archives=(archive_no,),
                groups=(ATTACHMENTS,),
                purpose=purpose,
                grant_id=grant_id,
                detail={"count": len(out)},
            )
        return out

    def open_attachment(
        self,
        archive_no: str,
        uid: str,
        *,
        actor: Actor,
        purpose: str | None = None,
        grant_id: str | None = None,
    ) -> tuple[dict[str, Any], Iterator[bytes]]:
        """Audit first, then stream: returns the file's metadata and a chunk iterator."""
        with transaction(self.engine) as session:
            archive = self._load(session, archive_no)
            att = session.exec(
                select(Attachment).where(
                    Attachment.uid == uid, Attachment.archive_id == archive.id, Attachment.complete
                )
            ).first()
            if att is None:
                raise ArchiveNotFound(f"archive {archive_no} has no attachment {uid!r}")
            level = archive.classification
            dek = self._dek(
                archive_no, level, archive.kek_version, archive.dek_version, archive.wrapped_dek
            )
            try:
                meta = json.loads(
                    dek.open(
                        att.meta_ct or b"",
                        self._attachment_aad(archive_no, level, dek.version, uid),
                    )
                )
            except InvalidCiphertext:
                raise DecryptionFailed(
                    f"archive {archive_no}, attachment {uid}: metadata failed authentication"
                ) from None
            self._audit(
                session,
                AuditAction.ATTACHMENT_READ,
                actor,
                archives=(archive_no,),
                groups=(ATTACHMENTS,),
                purpose=purpose,
                grant_id=grant_id,
                detail={"attachment": uid, "bytes": att.size},
            )
            att_id, count = att.id, att.chunk_count
        meta.update({"uid": uid, "size": att.size})

        def chunks() -> Iterator[bytes]:
            for start in range(0, count, 16):
                with Session(self.engine) as s:
                    rows = s.execute(
                        sa.select(AttachmentChunk.seq, AttachmentChunk.ciphertext)
                        .where(
                            AttachmentChunk.attachment_id == att_id,
                            AttachmentChunk.seq >= start,
                            AttachmentChunk.seq < start + 16,
                        )
                        .order_by(AttachmentChunk.seq)
                    ).all()
                for expected, (seq, blob) in enumerate(rows, start):
                    try:
                        if seq != expected:
                            raise InvalidCiphertext
                        yield dek.open(
                            blob,
                            self._chunk_aad(
                                archive_no, level, dek.version, uid, seq, seq == count - 1
                            ),
                        )
                    except InvalidCiphertext:
                        raise DecryptionFailed(
                            f"archive {archive_no}, attachment {uid}: chunk {expected} failed "
                            "authentication (tampered, reordered or truncated)"
                        ) from None
                if len(rows) < min(16, count - start):
                    raise DecryptionFailed(f"archive {archive_no}, attachment {uid}: truncated")

        return meta, chunks()


_A = Archive.__table__  # type: ignore[attr-defined]
_AC = ArchiveContact.__table__  # type: ignore[attr-defined]
_C = ArchiveContent.__table__  # type: ignore[attr-defined]
_ARCHIVE_BY_NO = Raw(sa.select(_A).where(_A.c.archive_no == sa.bindparam("no")))
_CONTACTS_OF = Raw(
    sa.select(_AC.c.username).where(_AC.c.archive_id == sa.bindparam("id")).order_by(_AC.c.username)
)


@functools.cache
def _content_of(count: int) -> Raw:
    """The ciphertext of ``count`` named groups (one compiled statement per count)."""
    return Raw(
        sa.select(_C.c.group_name, _C.c.revision, _C.c.ciphertext).where(
            _C.c.archive_id == sa.bindparam("id"),
            _C.c.group_name.in_([sa.bindparam(f"g{i}") for i in range(count)]),
        )
    )


_FAST_READ_ONE = ArchiveStore._fast_statement(single=True)
_FAST_READ_MANY = ArchiveStore._fast_statement(single=False)
