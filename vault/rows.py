"""Loading an archive's row inside a caller's transaction, and the small encodings
every collaborator of the store shares.

Each function takes the open session: the collaborators of ``vault.store`` act
inside one transaction, often the caller's own (a decision and its action
commit together), so nothing here opens a transaction of its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, cast

from sqlalchemy.engine import CursorResult, Engine
from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, AuditSink
from foundation.db import transaction
from vault.errors import ArchiveDestroyed, ArchiveNotFound, ValidationFailed
from vault.meta import ArchiveMeta
from vault.models import Archive, ArchiveContact, ArchiveStatus
from vault.records import ARCHIVE_NO, Consent


@contextlib.contextmanager
def unit(engine: Engine, session: Session | None) -> Iterator[Session]:
    """The caller's session if given (its transaction), else a transaction of our own."""
    if session is not None:
        yield session
        return
    with transaction(engine) as own:
        yield own


def check_number(archive_no: object) -> str:
    """An archive number, well formed (``ValidationFailed`` otherwise, never echoing it)."""
    if not isinstance(archive_no, str) or not ARCHIVE_NO.fullmatch(archive_no):
        raise ValidationFailed("an archive number looks like KH-2026-000123")
    return archive_no


def load_archive(
    session: Session,
    archive_no: str,
    *,
    for_update: bool = False,
    allow_destroyed: bool = False,
) -> Archive:
    """The archive's row; locked for the transaction on PostgreSQL when ``for_update``."""
    check_number(archive_no)
    stmt = select(Archive).where(Archive.archive_no == archive_no)
    if for_update and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    archive = session.exec(stmt).first()
    if archive is None:
        raise ArchiveNotFound(f"archive {archive_no} does not exist")
    if archive.status == ArchiveStatus.DESTROYED and not allow_destroyed:
        raise ArchiveDestroyed(f"archive {archive_no} has been destroyed")
    return archive


def archive_id(archive: Archive) -> int:
    """The primary key of a stored row (always set once the row is loaded or flushed)."""
    if archive.id is None:
        raise ValueError(f"archive {archive.archive_no} has not been stored")
    return archive.id


def contacts_of(session: Session, archive_id: int) -> list[str]:
    return list(
        session.exec(
            select(ArchiveContact.username)
            .where(ArchiveContact.archive_id == archive_id)
            .order_by(col(ArchiveContact.username))
        )
    )


def meta_of(session: Session, archive: Archive) -> ArchiveMeta:
    """The clear metadata of a loaded row, its contacts read in the same transaction."""
    return ArchiveMeta.of(archive, contacts_of(session, archive_id(archive)))


def consent_of(archive: Any) -> Consent:
    """The consent record of an archive row (ORM object or Core row)."""
    return Consent(
        notice=archive.consent_notice,
        at=archive.consent_at,
        channel=archive.consent_channel,
        groups=tuple(archive.consent_groups or ()),
        sensitive_groups=tuple(archive.consent_sensitive_groups or ()),
    )


def rowcount(result: Any) -> int:
    """How many rows a DML statement run through ``Session.execute`` touched."""
    return int(cast(CursorResult[Any], result).rowcount)


def encode(fields: Mapping[str, str]) -> bytes:
    """The one serialisation of a field group before it is sealed.

    ``json.dumps(fields, ensure_ascii=False, separators=(",", ":"), sort_keys=True)``:
    a dict of text to text (every group a write produces) is joined here from
    the escaper that call itself uses, the same bytes at a third of the cost
    (an import encodes about ten groups per archive); anything else goes
    through ``json.dumps``.
    """
    if type(fields) is dict:
        try:
            items = [_quote(k) + ":" + _quote(v) for k, v in sorted(fields.items())]
            return ("{" + ",".join(items) + "}").encode()
        except TypeError:  # a key or value that is not text
            pass
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


_quote = json.encoder.encode_basestring  # json.dumps's escaper with ensure_ascii=False


def append_event(
    audit: AuditSink, session: Any, action: AuditAction, actor: Actor, **kw: Any
) -> None:
    """Append one audit event in the caller's transaction."""
    audit.append(session, AuditEvent(action=action, actor=actor, **kw))
