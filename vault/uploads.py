"""Attachments streamed in from the network: sealed as they arrive, counted per user and day.

``BusinessRecords.add_attachment`` seals a file it can read at its own pace, in
one transaction. An upload arrives at the client's pace, and a transaction
held open for a slow client would hold SQLite's write turn (and an archive
row lock on PostgreSQL) for minutes. So an upload is sealed chunk by chunk
in memory (the same 64 KiB STREAM chunks, the same associated data, so
``open_attachment`` reads both alike) and written in short transactions:

1. ``begin``: the archive's key is unwrapped and an attachment row is added,
   marked incomplete (listings and downloads never see incomplete rows);
2. ``flush``: sealed chunks are inserted, and their plaintext size is added to
   the uploader's bytes of the day in the same transaction, atomically (an
   ``INSERT … ON CONFLICT DO UPDATE … WHERE used + n <= cap``), so parallel
   uploads cannot together exceed the quota;
3. ``finish``: the final chunk, the sealed name and type, ``complete`` and the
   audit entry, in one transaction that first checks the archive still has the
   key the chunks were sealed under (a reclassification in between fails the
   upload rather than leaving chunks nobody can open);
4. ``abort`` on any failure (too large, over quota, a bad name, the client
   gone): the chunks and the row are deleted, the bytes counted for them are
   given back, and the refusal is audited.

Plaintext exists only in the buffer of at most one chunk; nothing is ever
written to a temporary file. Rows left by a process that died mid-upload are
ciphertext only, never listed, and ``purge_abandoned`` removes them.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from audit.events import Actor, AuditAction, Outcome
from foundation.db import transaction
from vault.crypto import Sealer
from vault.envelope import attachment_aad, chunk_aad
from vault.errors import Conflict, ValidationFailed, VaultError
from vault.media import stored_media_type
from vault.models import Attachment, AttachmentChunk, UploadQuota, table_of
from vault.records import ATTACHMENTS, plain_text
from vault.rows import append_event, archive_id, encode, load_archive
from vault.store import ArchiveStore

FLUSH_BYTES = 1024 * 1024  # sealed chunks held before they are written (16 × 64 KiB)
_Q = table_of(UploadQuota)
_ATT = table_of(Attachment)
_CHUNK = table_of(AttachmentChunk)


class UploadTooLarge(VaultError):
    """The file (or the request carrying it) is over the size limit; nothing was stored."""

    code = "payload-too-large"


class QuotaExceeded(VaultError):
    """The uploader's bytes for the day would pass the quota; nothing was stored."""

    code = "upload-quota-exceeded"


def check_name(filename: Any) -> str:
    """The shared free-text rule (no controls, no bidirectional overrides) for file names."""
    if not isinstance(filename, str) or not filename.strip():
        raise ValidationFailed("an attachment needs a file name of at most 255 characters")
    return plain_text(filename, "filename", 255)


def check_type(content_type: Any) -> str:
    """Only the bare ``type/subtype`` is stored; downloads never echo what was sent."""
    return stored_media_type(content_type)


def used_today(engine: Any, username: str, day: date) -> int:
    with engine.connect() as conn:
        used = conn.execute(
            sa.select(_Q.c.used).where(_Q.c.username == username, _Q.c.day == day)
        ).scalar()
    return int(used or 0)


def _reserve(conn: Any, username: str, day: date, amount: int, cap: int) -> bool:
    """Add ``amount`` to the day's count unless that passes ``cap``; atomic in the database."""
    if amount > cap:
        return False
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(_Q)
    stmt = (
        insert.values(username=username, day=day, used=amount)
        .on_conflict_do_update(
            index_elements=[_Q.c.username, _Q.c.day],
            set_={"used": _Q.c.used + amount},
            where=_Q.c.used + amount <= cap,
        )
        .returning(_Q.c.used)
    )
    return conn.execute(stmt).first() is not None


def _release(conn: Any, username: str, day: date, amount: int) -> None:
    if amount:
        conn.execute(
            sa.update(_Q)
            .where(_Q.c.username == username, _Q.c.day == day)
            .values(used=sa.case((_Q.c.used > amount, _Q.c.used - amount), else_=0))
        )


class AttachmentUpload:
    """One attachment arriving in pieces; see the module docstring for the steps."""

    def __init__(self, store: ArchiveStore, archive_no: str, *, actor: Actor, day: date) -> None:
        self.store, self.archive_no, self.actor, self.day = store, archive_no, actor, day
        settings = store.settings
        self.cap = settings.max_attachment_bytes
        self.quota = settings.upload_quota_bytes_per_day
        self.chunk_size = settings.attachment_chunk_bytes
        self.uid = secrets.token_hex(16)
        self.size = 0  # plaintext bytes received
        self.counted = 0  # plaintext bytes added to the quota so far
        self._buffer = bytearray()
        self._pending: list[dict[str, Any]] = []
        self._pending_plain = 0
        self._pending_sealed = 0
        self._seq = 0
        self._id: int | None = None
        self._dek: Sealer | None = None
        self._level = ""
        self._dek_version = 0

    # -- 1. begin -------------------------------------------------------------

    def begin(self) -> None:
        store = self.store
        with transaction(store.engine) as session:
            archive = load_archive(session, self.archive_no)
            self._dek = store.envelope.dek_of(archive)
            self._level, self._dek_version = archive.classification, archive.dek_version
            row = Attachment(
                uid=self.uid,
                archive_id=archive_id(archive),
                author=self.actor.username,
                created_at=store.clock(),
            )
            session.add(row)
            session.flush()
            self._id = row.id

    # -- 2. data ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take the next piece of the file: CPU only, no database."""
        if not data:
            return
        self.size += len(data)
        if self.size > self.cap:
            raise UploadTooLarge(f"the attachment is larger than {self.cap} bytes")
        self._buffer += data
        # A chunk is sealed as non-final only once a byte beyond it has arrived.
        while len(self._buffer) > self.chunk_size:
            self._seal(bytes(self._buffer[: self.chunk_size]), final=False)
            del self._buffer[: self.chunk_size]

    @property
    def due(self) -> bool:
        return self._pending_sealed >= FLUSH_BYTES

    def _begun(self) -> Sealer:
        """The archive's DEK, unwrapped by ``begin``."""
        if self._dek is None:
            raise RuntimeError("begin() first")
        return self._dek

    def _seal(self, plain: bytes, *, final: bool) -> None:
        dek = self._begun()
        blob = dek.seal(
            plain,
            chunk_aad(self.archive_no, self._level, dek.version, self.uid, self._seq, final),
        )
        self._pending.append({"attachment_id": self._id, "seq": self._seq, "ciphertext": blob})
        self._seq += 1
        self._pending_plain += len(plain)
        self._pending_sealed += len(blob)

    def _write_pending(self, conn: Any) -> None:
        if not self._pending:
            return
        if not _reserve(conn, self.actor.username, self.day, self._pending_plain, self.quota):
            raise QuotaExceeded(
                f"this upload would pass your quota of {self.quota} bytes of attachments a day; "
                "nothing was stored (the quota starts again at 00:00 UTC)"
            )
        conn.execute(sa.insert(_CHUNK), self._pending)
        self.counted += self._pending_plain
        self._pending, self._pending_plain, self._pending_sealed = [], 0, 0

    def flush(self) -> None:
        with transaction(self.store.engine) as session:
            conn = session.connection()
            self._write_pending(conn)

    # -- 3. finish -------------------------------------------------------------

    def finish(self, filename: str, content_type: str) -> dict[str, Any]:
        filename, content_type = check_name(filename), check_type(content_type)
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        store = self.store
        with transaction(store.engine) as session:
            archive = load_archive(session, self.archive_no, for_update=True)
            if (archive.classification, archive.dek_version) != (self._level, self._dek_version):
                raise Conflict(
                    f"archive {self.archive_no} was reclassified during the upload; upload again"
                )
            conn = session.connection()
            self._write_pending(conn)
            meta = attachment_aad(self.archive_no, self._level, self._dek_version, self.uid)
            sealed_meta = self._begun().seal(
                encode({"filename": filename, "content_type": content_type}), meta
            )
            done = conn.execute(
                sa.update(_ATT)
                .where(_ATT.c.id == self._id, _ATT.c.complete.is_(False))
                .values(meta_ct=sealed_meta, size=self.size, chunk_count=self._seq, complete=True)
            ).rowcount
            if done != 1:
                raise Conflict(f"archive {self.archive_no}: the upload was removed meanwhile")
            append_event(
                store.audit,
                session,
                AuditAction.ATTACHMENT_ADD,
                self.actor,
                archives=(self.archive_no,),
                groups=(ATTACHMENTS,),
                detail={"attachment": self.uid, "bytes": self.size},
            )
        return {"uid": self.uid, "size": self.size, "chunks": self._seq}

    # -- 4. abort --------------------------------------------------------------

    def abort(self, reason: str, *, denied: bool = False) -> None:
        """Delete whatever was stored, give back the counted bytes, audit the refusal."""
        self._buffer.clear()
        self._pending.clear()
        store = self.store
        with transaction(store.engine) as session:
            conn = session.connection()
            if self._id is not None:
                conn.execute(sa.delete(_CHUNK).where(_CHUNK.c.attachment_id == self._id))
                conn.execute(
                    sa.delete(_ATT).where(_ATT.c.id == self._id, _ATT.c.complete.is_(False))
                )
            _release(conn, self.actor.username, self.day, self.counted)
            append_event(
                store.audit,
                session,
                AuditAction.ATTACHMENT_ADD,
                self.actor,
                outcome=Outcome.DENIED if denied else Outcome.ERROR,
                archives=(self.archive_no,),
                groups=(ATTACHMENTS,),
                reason=reason[:500],
                detail={"attachment": self.uid, "bytes_received": self.size},
            )
        self.counted = 0


def purge_abandoned(store: ArchiveStore, *, now: datetime, older_than: timedelta) -> int:
    """Delete uploads a dead process left incomplete (ciphertext only, never listed)."""
    with transaction(store.engine) as session:
        conn = session.connection()
        stale = (
            sa.select(_ATT.c.id)
            .where(_ATT.c.complete.is_(False), _ATT.c.created_at < now - older_than)
            .scalar_subquery()
        )
        conn.execute(sa.delete(_CHUNK).where(_CHUNK.c.attachment_id.in_(stale)))
        return conn.execute(
            sa.delete(_ATT).where(_ATT.c.complete.is_(False), _ATT.c.created_at < now - older_than)
        ).rowcount
