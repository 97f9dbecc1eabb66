"""An archive's life after filing: consent, reclassification and destruction.

* Consent is data: a newer record must keep stored content covered, and a
  withdrawal erases the withdrawn groups with their history (PIPL Art 15).
* Reclassification moves an archive to another level: a new DEK under that
  level's KEK, and everything sealed under the old one re-sealed (Art 22).
* Destruction is crypto-shredding: the wrapped DEK is erased and every
  ciphertext deleted in one transaction, with a certificate in the audit log.

Each runs in the caller's transaction when given one, so an approved change
applies in the transaction of its final signature, and a decision and its
action commit together.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from audit.events import Actor, AuditAction, AuditSink
from foundation.clock import utcnow
from foundation.db import checkpoint_sqlite, transaction
from vault import crypto
from vault import manifest as mf
from vault.crypto import Sealer
from vault.envelope import Envelope, attachment_aad, chunk_aad, content_aad, interaction_aad
from vault.errors import DecryptionFailed, ValidationFailed
from vault.index import BlindIndexes
from vault.masked_names import MaskedNames
from vault.meta import ArchiveMeta
from vault.models import (
    Archive,
    ArchiveContact,
    ArchiveStatus,
    Attachment,
    AttachmentChunk,
    Classification,
    ContentHistory,
    Interaction,
    SealedGroup,
)
from vault.records import Consent, check_consent, parse_consent, parse_username, plain_text
from vault.rows import append_event, archive_id, load_archive, meta_of, rowcount, unit
from vault.schema import ProfileSchema


class Lifecycle:
    """Consent records and withdrawals, reclassification and destruction of archives."""

    def __init__(
        self,
        *,
        engine: Engine,
        schema: ProfileSchema,
        envelope: Envelope,
        index: BlindIndexes,
        masked_names: MaskedNames,
        audit: AuditSink,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.envelope = envelope
        self.index = index
        self.masked_names = masked_names
        self.audit = audit
        self.clock = clock

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
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no, for_update=True)
            old_level = archive.classification
            if level == Classification.INTERNAL:
                # An internal archive is kept by nobody in particular (Art 22).
                if custodian is not None and custodian != archive.custodian:
                    raise ValidationFailed(
                        f"archive {archive_no}: an internal archive has no custodian"
                    )
                custodian = None
            else:
                custodian = custodian or archive.custodian
            if level == Classification.TOP_SECRET and not custodian:
                raise ValidationFailed(
                    f"archive {archive_no}: a top_secret archive needs a named custodian (Art 22)"
                )
            if level == old_level and custodian == archive.custodian:
                raise ValidationFailed(f"archive {archive_no} is already {level}")
            if level == old_level:
                # Only the keeper changes: the same KEK, nothing to re-seal.
                previous = archive.custodian
                archive.custodian, archive.updated_at = custodian, self.clock()
                session.add(archive)
                append_event(
                    self.audit,
                    session,
                    AuditAction.RECLASSIFY,
                    actor,
                    archives=(archive_no,),
                    reason=reason,
                    detail={
                        "from": old_level,
                        "to": level,
                        "custodian": custodian,
                        "previous_custodian": previous,
                    },
                )
                return meta_of(session, archive)
            old = self.envelope.dek(
                archive_no, old_level, archive.kek_version, archive.dek_version, archive.wrapped_dek
            )
            new_key = crypto.new_key()
            new = Sealer(new_key, archive.dek_version + 1)
            manifest = self.envelope.manifest(old, archive)
            aid = archive_id(archive)
            mf.verify_all(session, manifest, archive_no, aid)
            self._reseal_all(session, archive, old, new, old_level, level)
            session.flush()
            archive.manifest = mf.seal(
                new, archive_no, level, mf.rebuilt(session, aid, manifest.history)
            )
            version = self.envelope.active_kek(session, level)
            archive.classification, archive.custodian = level, custodian
            archive.kek_version, archive.dek_version = version, new.version
            archive.wrapped_dek = self.envelope.wrap(new_key, archive_no, level, version)
            archive.updated_at = self.clock()
            session.add(archive)
            append_event(
                self.audit,
                session,
                AuditAction.RECLASSIFY,
                actor,
                archives=(archive_no,),
                reason=reason,
                detail={"from": old_level, "to": level, "custodian": custodian},
            )
            meta = meta_of(session, archive)
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
        for row in session.exec(select(SealedGroup).where(SealedGroup.archive_id == archive.id)):
            plain = old.open(
                row.ciphertext,
                content_aad(no, row.group_name, old_level, old.version, row.revision),
            )
            row.ciphertext = new.seal(
                plain, content_aad(no, row.group_name, new_level, new.version, row.revision)
            )
            session.add(row)
            if row.group_name == self.masked_names.group:
                # Re-sealed with the name in memory: the list's masked name follows
                # (and an archive from before masked names gets one).
                archive.masked_name_ct = self.masked_names.seal(no, json.loads(plain))
        for h in session.exec(
            select(ContentHistory).where(ContentHistory.archive_id == archive.id)
        ):
            plain = old.open(
                h.ciphertext, content_aad(no, h.group_name, old_level, old.version, h.revision)
            )
            h.ciphertext = new.seal(
                plain, content_aad(no, h.group_name, new_level, new.version, h.revision)
            )
            session.add(h)
        for it in session.exec(select(Interaction).where(Interaction.archive_id == archive.id)):
            if it.ciphertext is not None:
                plain = old.open(it.ciphertext, interaction_aad(no, old_level, old.version, it.uid))
                it.ciphertext = new.seal(plain, interaction_aad(no, new_level, new.version, it.uid))
                session.add(it)
        for att in session.exec(select(Attachment).where(Attachment.archive_id == archive.id)):
            if att.meta_ct is not None:
                plain = old.open(att.meta_ct, attachment_aad(no, old_level, old.version, att.uid))
                att.meta_ct = new.seal(plain, attachment_aad(no, new_level, new.version, att.uid))
                session.add(att)
            for seq in range(att.chunk_count):
                chunk = session.get(AttachmentChunk, (att.id, seq))
                if chunk is None:
                    raise DecryptionFailed(
                        f"archive {no}, attachment {att.uid}: chunk {seq} is missing (truncated)"
                    )
                final = seq == att.chunk_count - 1
                plain = old.open(
                    chunk.ciphertext, chunk_aad(no, old_level, old.version, att.uid, seq, final)
                )
                chunk.ciphertext = new.seal(
                    plain, chunk_aad(no, new_level, new.version, att.uid, seq, final)
                )
                session.add(chunk)
                session.flush()
                session.expunge(chunk)

    # -- consent ------------------------------------------------------------

    def record_consent(
        self, archive_no: str, consent: Any, *, actor: Actor, session: Session | None = None
    ) -> Consent:
        """Replace the consent record with a newer one that must keep what is stored covered."""
        parsed = parse_consent(consent, self.schema, now=self.clock())
        with unit(self.engine, session) as session:
            archive = load_archive(session, archive_no, for_update=True)
            stored = list(
                session.exec(
                    select(SealedGroup.group_name).where(SealedGroup.archive_id == archive.id)
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
            append_event(
                self.audit,
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
            archive = load_archive(session, archive_no, for_update=True)
            dek = self.envelope.dek_of(archive)
            manifest = self.envelope.manifest(dek, archive).erased(wanted)
            erased = self._erase_groups(session, archive, wanted)
            if self.masked_names.group in wanted:
                archive.masked_name_ct = None  # the list's masked name goes with the name
            archive.manifest = mf.seal(dek, archive_no, archive.classification, manifest)
            keep = [g for g in archive.consent_groups or [] if sensitive_only or g not in wanted]
            keep_sensitive = [g for g in archive.consent_sensitive_groups or [] if g not in wanted]
            archive.consent_groups, archive.consent_sensitive_groups = keep, keep_sensitive
            archive.updated_at = self.clock()
            session.add(archive)
            append_event(
                self.audit,
                session,
                AuditAction.CONSENT_WITHDRAW,
                actor,
                archives=(archive_no,),
                groups=tuple(wanted),
                detail={"erased": erased},
            )
        self.checkpoint()
        return erased

    def _erase_groups(
        self, session: Session, archive: Archive, groups: Sequence[str]
    ) -> dict[str, int]:
        aid = archive_id(archive)
        content = session.execute(
            delete(SealedGroup).where(
                col(SealedGroup.archive_id) == aid, col(SealedGroup.group_name).in_(groups)
            )
        )
        history = session.execute(
            delete(ContentHistory).where(
                col(ContentHistory.archive_id) == aid, col(ContentHistory.group_name).in_(groups)
            )
        )
        return {
            "groups": rowcount(content),
            "history": rowcount(history),
            "index_entries": self.index.erase(session, aid, groups),
        }

    # -- destruction ---------------------------------------------------------

    def destroy(
        self,
        archive_no: str,
        *,
        actor: Actor,
        reason: str,
        approval: str | None = None,
        session: Session | None = None,
    ) -> dict[str, Any]:
        """Crypto-shred: erase the wrapped DEK and every ciphertext in one transaction.

        SQLite's ``secure_delete`` zeroes the freed cells and the WAL is
        checkpointed afterwards, so neither the key nor the content survives
        in the database file. The certificate goes into the audit log. Given
        the caller's ``session``, the checkpoint is the caller's to run after
        its commit (``checkpoint``); the certificate then says so.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationFailed("a destruction needs a reason (Art 25)")
        reason = plain_text(reason, "reason")
        now = self.clock()
        with unit(self.engine, session) as tx:
            archive = load_archive(tx, archive_no, for_update=True)
            wrapped_digest = hashlib.sha256(archive.wrapped_dek or b"").hexdigest()
            erased = self._erase_groups(tx, archive, list(self.schema.groups))
            aid = archive_id(archive)
            erased["interactions"] = rowcount(
                tx.execute(delete(Interaction).where(col(Interaction.archive_id) == aid))
            )
            att_ids = list(tx.exec(select(Attachment.id).where(Attachment.archive_id == aid)))
            erased["attachment_chunks"] = (
                rowcount(
                    tx.execute(
                        delete(AttachmentChunk).where(
                            col(AttachmentChunk.attachment_id).in_(att_ids)
                        )
                    )
                )
                if att_ids
                else 0
            )
            erased["attachments"] = rowcount(
                tx.execute(delete(Attachment).where(col(Attachment.archive_id) == aid))
            )
            tx.execute(delete(ArchiveContact).where(col(ArchiveContact.archive_id) == aid))
            archive.wrapped_dek, archive.manifest, archive.masked_name_ct = None, None, None
            archive.status, archive.destroyed_at, archive.updated_at = (
                ArchiveStatus.DESTROYED.value,
                now,
                now,
            )
            archive.consent_groups, archive.consent_sensitive_groups = [], []
            tx.add(archive)
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
            append_event(
                self.audit,
                tx,
                AuditAction.DESTROY,
                actor,
                archives=(archive_no,),
                reason=reason.strip(),
                grant_id=approval,
                detail={"certificate": certificate},
            )
        if session is None:
            certificate["wal_checkpointed"] = self.checkpoint()
        return certificate

    def checkpoint(self) -> bool:
        """Fold the WAL into the database file after an erasure committed (SQLite)."""
        return checkpoint_sqlite(self.engine)
