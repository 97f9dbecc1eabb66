"""Reading content: the primitives a read is made of, each inside the caller's transaction.

A read is one unit of work (principal, metadata, decision, decrypt, audit,
commit). The decision belongs to ``policies``; this module offers the vault's
steps of it, each taking the open transaction and no callbacks:

* ``load`` - the archive's row and clear metadata (``StoredArchive``);
* ``open_permitted`` - decrypt only the permitted groups (checked against the
  sealed manifest), then append the read's audit entry, allowed or failed;
* ``deny`` - append the audit entry of a refused read;
* ``view`` - after the commit: the content with masked groups masked.

``Reader.read`` composes them for callers that have decided already (the CLI,
tests). ``export`` and ``history`` decrypt several archives or revisions under
one audit entry, in the caller's transaction when given one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditSink, Outcome
from foundation.rawsql import Raw, RawTx, raw_autocommit, row_type
from vault import manifest as mf
from vault.envelope import Envelope
from vault.errors import (
    ArchiveDestroyed,
    ArchiveNotFound,
    DecryptionFailed,
    KeyFileError,
    ValidationFailed,
)
from vault.meta import ArchiveMeta
from vault.models import (
    Archive,
    ArchiveContact,
    ArchiveStatus,
    ContentHistory,
    SealedGroup,
    table_of,
)
from vault.records import Consent
from vault.rows import (
    append_event,
    archive_id,
    check_number,
    consent_of,
    load_archive,
    meta_of,
    unit,
)
from vault.schema import ProfileSchema

Handle = Session | RawTx


@dataclass(frozen=True, slots=True)
class ArchiveView:
    """What a read returns: metadata, consent and the requested groups' fields."""

    meta: ArchiveMeta
    content: dict[str, dict[str, str]]
    masked: tuple[str, ...] = ()
    consent: Consent = field(default_factory=Consent)


@dataclass(frozen=True, slots=True)
class ReadPermit:
    """What a read may show: groups in clear, groups masked, and what travels to the audit."""

    groups: tuple[str, ...]
    masked_groups: tuple[str, ...] = ()
    purpose: str | None = None
    grant_id: str | None = None
    reason: str | None = None

    @property
    def shown(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.groups, *self.masked_groups)))


@dataclass(frozen=True, slots=True)
class StoredArchive:
    """An archive's row as one read loaded it, with its clear metadata.

    ``sealed`` holds the ciphertext rows ``(group, revision, blob)`` of the
    groups ``load`` was asked to fetch with the row (``fetched``), still sealed:
    what is opened is decided later, and only that is.
    """

    row: Any  # a Core row of the archive table
    meta: ArchiveMeta
    fetched: frozenset[str] = frozenset()
    sealed: tuple[tuple[str, int, bytes], ...] = ()

    @property
    def consent(self) -> Consent:
        return consent_of(self.row)


@dataclass(frozen=True, slots=True)
class Opened:
    """The outcome of ``open_permitted``: content, or the failure to raise after the commit."""

    stored: StoredArchive
    permit: ReadPermit
    content: dict[str, dict[str, str]]
    failure: Exception | None = None


class Reader:
    """Decrypting archives for callers who may see them, always with an audit entry."""

    def __init__(
        self, engine: Engine, envelope: Envelope, schema: ProfileSchema, audit: AuditSink
    ) -> None:
        self.engine = engine
        self.envelope = envelope
        self.schema = schema
        self.audit = audit

    # -- primitives of one read --------------------------------------------------

    def wanted(self, groups: Iterable[str] | str | None) -> list[str]:
        """The requested groups checked against the schema; all of them when none are named."""
        return self.schema.check_groups(list(self.schema.groups) if groups is None else groups)

    def load(self, handle: Handle, archive_no: str, groups: Sequence[str] = ()) -> StoredArchive:
        """The archive's row and metadata (``ArchiveNotFound``, ``ArchiveDestroyed``).

        Given ``groups`` (those a read may show, before its decision), their
        ciphertext comes in the same statement, so that a read makes one round
        trip for the archive instead of two; nothing is opened here.
        """
        check_number(archive_no)
        wanted = tuple(dict.fromkeys(groups))
        if not wanted:
            # One statement: the archive's row once per contact (once with NULL if none).
            rows = _ARCHIVE_WITH_CONTACTS.all(handle, {"no": archive_no})
            if not rows:
                raise ArchiveNotFound(f"archive {archive_no} does not exist")
            row = _ArchiveRow._make(rows[0][:-1])
            contacts = [r[-1] for r in rows if r[-1] is not None]
            sealed: tuple[tuple[str, int, bytes], ...] = ()
        else:
            # One statement: the archive's row once per contact and once per sealed
            # group found (once with NULLs if neither), never their product.
            params: dict[str, Any] = {f"g{i}": g for i, g in enumerate(wanted)}
            params["no"] = archive_no
            rows = _archive_with_content(len(wanted)).all(handle, params)
            if not rows:
                raise ArchiveNotFound(f"archive {archive_no} does not exist")
            row = _ArchiveRow._make(rows[0][:_ARCHIVE_WIDTH])
            contacts = [r[-4] for r in rows if r[-4] is not None]
            sealed = tuple((r[-3], r[-2], r[-1]) for r in rows if r[-3] is not None)
        if row.status == ArchiveStatus.DESTROYED:
            raise ArchiveDestroyed(f"archive {archive_no} has been destroyed")
        return StoredArchive(
            row=row,
            meta=ArchiveMeta.of(row, contacts),
            fetched=frozenset(wanted),
            sealed=sealed,
        )

    def decrypt(
        self,
        handle: Handle,
        archive: Any,
        groups: Sequence[str],
        fetched: StoredArchive | None = None,
    ) -> dict[str, dict[str, str]]:
        """The named groups of a row (ORM object or Core row), opened and manifest-checked.

        It appends no audit entry: it is the primitive under ``open_permitted``, the
        export, history and search, each of which appends its entry in the same
        transaction before anything it opened leaves the process. When ``fetched``
        (the archive as ``load`` read it) carries every named group's ciphertext,
        those rows are used, exactly as the query would have returned them.
        """
        groups = list(dict.fromkeys(groups))  # one compiled statement per distinct count
        rows: Sequence[tuple[str, int, bytes]]
        if fetched is not None and fetched.fetched.issuperset(groups):
            named = set(groups)
            rows = [r for r in fetched.sealed if r[0] in named]
        else:
            params: dict[str, Any] = {f"g{i}": g for i, g in enumerate(groups)}
            params["id"] = archive.id
            rows = _content_of(len(groups)).all(handle, params)
        dek = self.envelope.dek_of(archive)
        mf.check_rows(self.envelope.manifest(dek, archive), archive.archive_no, groups, rows)
        out = {}
        for group, revision, blob in rows:
            out[group] = self.envelope.open_group(
                dek, archive.archive_no, group, archive.classification, revision, blob
            )
        return {g: out[g] for g in groups if g in out}

    def open_permitted(
        self, handle: Handle, actor: Actor, stored: StoredArchive, permit: ReadPermit
    ) -> Opened:
        """Decrypt what the permit shows, then append the read's audit entry.

        A decryption failure is audited as an error and handed back (raised by
        ``view`` after the commit), so the attempt stays on record. The entry is
        appended last: on PostgreSQL the append's lock is held until commit.
        """
        shown = permit.shown
        content: dict[str, dict[str, str]] = {}
        failure: Exception | None = None
        try:
            content = self.decrypt(handle, stored.row, shown, stored) if shown else {}
            outcome = Outcome.ALLOWED
        except (DecryptionFailed, KeyFileError) as exc:
            failure, outcome = exc, Outcome.ERROR
        append_event(
            self.audit,
            handle,
            AuditAction.READ,
            actor,
            outcome=outcome,
            archives=(stored.meta.archive_no,),
            groups=shown,
            grant_id=permit.grant_id,
            purpose=permit.purpose,
            reason=permit.reason,
            detail={"masked": sorted(permit.masked_groups)} if permit.masked_groups else {},
        )
        return Opened(stored=stored, permit=permit, content=content, failure=failure)

    def deny(
        self, handle: Handle, actor: Actor, archive_no: str, groups: Sequence[str], why: str
    ) -> None:
        """Append the audit entry of a refused read (nothing was decrypted)."""
        append_event(
            self.audit,
            handle,
            AuditAction.READ,
            actor,
            outcome=Outcome.DENIED,
            archives=(archive_no,),
            groups=tuple(groups),
            reason=why[:500],
        )

    def committed(self) -> None:
        """Tell the audit log one entry appended on a bare connection has committed."""
        committed = getattr(self.audit, "committed", None)
        if committed is not None:
            committed(1)

    def view(self, opened: Opened) -> ArchiveView:
        """After the commit: the content with masked groups masked, or the failure raised."""
        if opened.failure is not None:
            raise opened.failure
        content = dict(opened.content)
        masked = opened.permit.masked_groups
        for group in set(masked) & content.keys():
            content[group] = {k: self.schema.fields[k].masked(v) for k, v in content[group].items()}
        return ArchiveView(
            meta=opened.stored.meta,
            content=content,
            masked=tuple(sorted(masked)),
            consent=opened.stored.consent,
        )

    # -- whole reads for callers that have decided -------------------------------

    def read(
        self,
        archive_no: str,
        groups: Iterable[str] | str | None = None,
        *,
        actor: Actor,
        masked: Iterable[str] = (),
        purpose: str | None = None,
        grant_id: str | None = None,
        reason: str | None = None,
    ) -> ArchiveView:
        """Decrypt the requested groups; the audit entry commits before anything returns."""
        check_number(archive_no)
        permit = ReadPermit(
            groups=tuple(self.wanted(groups)),
            masked_groups=tuple(self.schema.check_groups(list(masked), "masked groups")),
            purpose=purpose,
            grant_id=grant_id,
            reason=reason,
        )
        with raw_autocommit(self.engine) as tx:
            stored = self.load(tx, archive_no, permit.shown)
            opened = self.open_permitted(tx, actor, stored, permit)
        self.committed()
        return self.view(opened)

    def meta(
        self, archive_no: str, *, session: Session | None = None, for_update: bool = False
    ) -> ArchiveMeta:
        """Metadata of one archive (destroyed ones included); what decisions look at."""
        if session is None:
            with Session(self.engine) as own:
                return meta_of(own, load_archive(own, archive_no, allow_destroyed=True))
        archive = load_archive(session, archive_no, for_update=for_update, allow_destroyed=True)
        return meta_of(session, archive)

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
        session: Session | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> list[ArchiveView]:
        """Decrypt several archives for an approved copy or external provision (Art 23–24).

        One transaction and one audit entry naming every archive and group; as
        with ``read``, nothing is returned unless that entry commits. ``detail``
        adds identifiers to that entry (which copy of how many).
        """
        wanted = self.schema.check_groups(list(groups))
        numbers = list(dict.fromkeys(archive_nos))
        if not numbers:
            raise ValidationFailed("an export names at least one archive")
        views = []
        with unit(self.engine, session) as tx:
            for no in numbers:
                archive = load_archive(tx, no)
                views.append(
                    ArchiveView(
                        meta=meta_of(tx, archive), content=self.decrypt(tx, archive, wanted)
                    )
                )
            append_event(
                self.audit,
                tx,
                AuditAction.EXPORT,
                actor,
                archives=tuple(numbers),
                groups=tuple(wanted),
                purpose=purpose,
                grant_id=grant_id,
                reason=reason,
                detail={"provision": provision, "archives": len(numbers), **(detail or {})},
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
        session: Session | None = None,
    ) -> list[dict[str, Any]]:
        """Earlier revisions of one group, newest first (audited like a read)."""
        (group,) = self.schema.check_groups([group])
        with unit(self.engine, session) as tx:
            archive = load_archive(tx, archive_no)
            rows = tx.exec(
                select(ContentHistory)
                .where(
                    ContentHistory.archive_id == archive_id(archive),
                    ContentHistory.group_name == group,
                )
                .order_by(col(ContentHistory.revision).desc())
            ).all()
            dek = self.envelope.dek_of(archive)
            manifest = self.envelope.manifest(dek, archive)
            mf.check_history(
                manifest, archive_no, group, [(h.revision, h.ciphertext) for h in rows]
            )
            self.decrypt(tx, archive, [group])  # the current revision is genuine too
            out = [
                {
                    "revision": h.revision,
                    "superseded_at": h.superseded_at.isoformat(),
                    "fields": self.envelope.open_group(
                        dek, archive_no, group, archive.classification, h.revision, h.ciphertext
                    ),
                }
                for h in rows
            ]
            append_event(
                self.audit,
                tx,
                AuditAction.READ,
                actor,
                archives=(archive_no,),
                groups=(group,),
                purpose=purpose,
                grant_id=grant_id,
                detail={"history": True, "revisions": len(out)},
            )
        return out


_A = table_of(Archive)
_AC = table_of(ArchiveContact)
_C = table_of(SealedGroup)
_ARCHIVE_WITH_CONTACTS = Raw(
    sa.select(_A, _AC.c.username.label("contact"))
    .select_from(_A.outerjoin(_AC, _AC.c.archive_id == _A.c.id))
    .where(_A.c.archive_no == sa.bindparam("no"))
    .order_by(_AC.c.username)
)
# The archive's own columns of a row above, under their names (as a Core row has them).
_ArchiveRow = row_type([c.key for c in _A.columns])
_ARCHIVE_WIDTH = len(_A.columns)


@functools.cache
def _archive_with_content(count: int) -> Raw:
    """The archive's row with its contacts and the ciphertext of ``count`` named groups.

    The contacts and the sealed groups come from one ``UNION ALL`` joined to the
    archive, so each contact and each group is one row (not one per pair). Both
    halves look the archive up by number themselves, so neither database has to
    push the join's condition into the union to use its indexes.
    """
    archive_id = sa.select(_A.c.id).where(_A.c.archive_no == sa.bindparam("no")).scalar_subquery()
    sealed = sa.select(
        _C.c.archive_id,
        sa.cast(sa.null(), _AC.c.username.type).label("contact"),
        _C.c.group_name,
        _C.c.revision,
        _C.c.ciphertext,
    ).where(
        _C.c.archive_id == archive_id,
        _C.c.group_name.in_([sa.bindparam(f"g{i}") for i in range(count)]),
    )
    contacts = sa.select(
        _AC.c.archive_id,
        _AC.c.username.label("contact"),
        sa.cast(sa.null(), _C.c.group_name.type),
        sa.cast(sa.null(), _C.c.revision.type),
        sa.cast(sa.null(), _C.c.ciphertext.type),
    ).where(_AC.c.archive_id == archive_id)
    extra = sa.union_all(sealed, contacts).subquery("extra")
    return Raw(
        sa.select(
            _A,
            extra.c.contact,
            extra.c.group_name,
            extra.c.revision,
            extra.c.ciphertext,
        )
        .select_from(_A.outerjoin(extra, extra.c.archive_id == _A.c.id))
        .where(_A.c.archive_no == sa.bindparam("no"))
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
