"""Business records filed in an archive: interactions and attachments (篇七).

Interaction texts, attachment names and types, and attachment bytes are content:
each is sealed under the archive's DEK with associated data naming what it is,
so it follows the archive through reclassification and is shredded with it.
An attachment is sealed chunk by chunk (never held whole in memory), each chunk
bound to its position and to whether it is the last, so reordering or
truncation is detected. Reads and listings are audited like reads of content.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditSink
from foundation.clock import utcnow
from foundation.settings import Settings
from vault.crypto import InvalidCiphertext
from vault.envelope import Envelope, attachment_aad, chunk_aad, interaction_aad
from vault.errors import ArchiveNotFound, DecryptionFailed, ValidationFailed
from vault.media import stored_media_type
from vault.models import Attachment, AttachmentChunk, Channel, Interaction, table_of
from vault.records import ATTACHMENTS, INTERACTIONS, free_text, plain_text
from vault.rows import append_event, archive_id, encode, load_archive, unit

INTERACTION_TEXT_MAX = 20_000


class BusinessRecords:
    """File and read interactions; store, list and stream attachments."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        envelope: Envelope,
        audit: AuditSink,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.envelope = envelope
        self.audit = audit
        self.clock = clock

    def add_interaction(
        self,
        archive_no: str,
        *,
        occurred_on: date | str,
        channel: str,
        text: str,
        actor: Actor,
        session: Session | None = None,
    ) -> dict[str, Any]:
        """File a letter, fax, call, visit or revisit record (篇七); its text is sealed."""
        if channel not in {c.value for c in Channel}:
            raise ValidationFailed("channel must be one of " + ", ".join(c.value for c in Channel))
        if isinstance(occurred_on, str):
            try:
                occurred_on = date.fromisoformat(occurred_on)
            except ValueError:
                raise ValidationFailed("occurred_on must be a date (YYYY-MM-DD)") from None
        if occurred_on > self.clock().date():
            raise ValidationFailed("occurred_on is in the future")
        if not isinstance(text, str) or not text.strip():
            raise ValidationFailed("an interaction record needs its text")
        text = free_text(text, "interaction text", INTERACTION_TEXT_MAX)
        uid = secrets.token_hex(16)
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no)
            dek = self.envelope.dek_of(archive)
            blob = dek.seal(
                text.strip().encode(),
                interaction_aad(archive_no, archive.classification, dek.version, uid),
            )
            row = Interaction(
                uid=uid,
                archive_id=archive_id(archive),
                occurred_on=occurred_on,
                channel=channel,
                author=actor.username,
                ciphertext=blob,
                created_at=self.clock(),
            )
            session.add(row)
            archive.updated_at = self.clock()
            session.add(archive)
            append_event(
                self.audit,
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
        session: Session | None = None,
    ) -> list[dict[str, Any]]:
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no)
            rows = session.exec(
                select(Interaction)
                .where(Interaction.archive_id == archive.id)
                .order_by(col(Interaction.occurred_on), col(Interaction.id))
            ).all()
            out = []
            if rows:
                dek = self.envelope.dek_of(archive)
                for it in rows:
                    try:
                        text = dek.open(
                            it.ciphertext or b"",
                            interaction_aad(
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
            append_event(
                self.audit,
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

    def add_attachment(
        self,
        archive_no: str,
        *,
        filename: str,
        content_type: str,
        stream: IO[bytes],
        actor: Actor,
        session: Session | None = None,
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
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no)
            level = archive.classification
            dek = self.envelope.dek(
                archive_no, level, archive.kek_version, archive.dek_version, archive.wrapped_dek
            )
            row = Attachment(
                uid=uid,
                archive_id=archive_id(archive),
                author=actor.username,
                created_at=self.clock(),
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
                    sa.insert(table_of(AttachmentChunk)),
                    [
                        {
                            "attachment_id": row.id,
                            "seq": seq,
                            "ciphertext": dek.seal(
                                pending,
                                chunk_aad(archive_no, level, dek.version, uid, seq, final),
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
                encode(meta), attachment_aad(archive_no, level, dek.version, uid)
            )
            row.size, row.chunk_count, row.complete = size, seq, True
            session.add(row)
            append_event(
                self.audit,
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
        session: Session | None = None,
    ) -> list[dict[str, Any]]:
        """Attachment listing without names (names are content; open one to see it).

        Listing is an access to the archive's records, so it is audited like a read.
        """
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no)
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
                    .order_by(col(Attachment.id))
                )
            ]
            append_event(
                self.audit,
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
        session: Session | None = None,
    ) -> tuple[dict[str, Any], Iterator[bytes]]:
        """Audit first, then stream: returns the file's metadata and a chunk iterator."""
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no)
            att = session.exec(
                select(Attachment).where(
                    Attachment.uid == uid, Attachment.archive_id == archive.id, Attachment.complete
                )
            ).first()
            if att is None:
                raise ArchiveNotFound(f"archive {archive_no} has no attachment {uid!r}")
            level = archive.classification
            dek = self.envelope.dek(
                archive_no, level, archive.kek_version, archive.dek_version, archive.wrapped_dek
            )
            try:
                meta = json.loads(
                    dek.open(
                        att.meta_ct or b"",
                        attachment_aad(archive_no, level, dek.version, uid),
                    )
                )
            except InvalidCiphertext:
                raise DecryptionFailed(
                    f"archive {archive_no}, attachment {uid}: metadata failed authentication"
                ) from None
            append_event(
                self.audit,
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
                        sa.select(col(AttachmentChunk.seq), col(AttachmentChunk.ciphertext))
                        .where(
                            col(AttachmentChunk.attachment_id) == att_id,
                            col(AttachmentChunk.seq) >= start,
                            col(AttachmentChunk.seq) < start + 16,
                        )
                        .order_by(col(AttachmentChunk.seq))
                    ).all()
                for expected, (seq, blob) in enumerate(rows, start):
                    try:
                        if seq != expected:
                            raise InvalidCiphertext
                        yield dek.open(
                            blob,
                            chunk_aad(archive_no, level, dek.version, uid, seq, seq == count - 1),
                        )
                    except InvalidCiphertext:
                        raise DecryptionFailed(
                            f"archive {archive_no}, attachment {uid}: chunk {expected} failed "
                            "authentication (tampered, reordered or truncated)"
                        ) from None
                if len(rows) < min(16, count - start):
                    raise DecryptionFailed(f"archive {archive_no}, attachment {uid}: truncated")

        return meta, chunks()
