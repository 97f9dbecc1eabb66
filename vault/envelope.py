"""Envelope keys: the only code that wraps, unwraps and opens with an archive's DEK.

Each archive has its own random DEK; each field group (and each interaction,
attachment name and attachment chunk) is sealed under it with associated data
binding archive number, what the ciphertext is, classification, DEK generation
and revision or uid, so a ciphertext copied to another archive, group, level or
revision fails to open. The DEK is wrapped under the KEK of the archive's
classification level, itself versioned (see ``vault.rotation``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlmodel import Session, select

from vault import crypto
from vault import manifest as mf
from vault.crypto import InvalidCiphertext, Sealer
from vault.errors import ArchiveDestroyed, DecryptionFailed
from vault.keys import KeyProvider
from vault.models import VaultMeta
from vault.records import NewSeal


def content_aad(archive_no: str, group: str, level: str, dek_version: int, revision: int) -> bytes:
    return crypto.aad("content", archive_no, group, level, dek_version, revision)


def content_aads(
    archive_no: str, groups: Iterable[str], level: str, dek_version: int, revision: int
) -> dict[str, bytes]:
    """``content_aad`` of several groups of one archive (the same bytes, built once per part)."""
    head = crypto.aad("content", archive_no)
    return {g: head + _content_tail(g, level, dek_version, revision) for g in groups}


@functools.lru_cache(maxsize=1024)
def _content_tail(group: str, level: str, dek_version: int, revision: int) -> bytes:
    return crypto.aad_tail(group, level, dek_version, revision)


def seal_new(dek: bytes, archive_no: str, level: str, encoded: dict[str, bytes]) -> NewSeal:
    """A new archive's groups (their ``vault.rows.encode`` bytes, non-empty ones only) sealed
    under its DEK at revision 1, and its manifest naming them: what filing stores.

    The one recipe for both the filer and an import's worker process, so a worker
    cannot drift from the stored format; everything is at DEK generation 1.
    """
    sealer = Sealer(dek, 1)
    groups = list(encoded)
    aads = content_aads(archive_no, groups, level, 1, 1)
    blobs = sealer.seal_many([(encoded[g], aads[g]) for g in groups])
    sealed = dict(zip(groups, blobs, strict=True))
    manifest = sealer.seal(mf.encode_new(sealed), mf.manifest_aad(archive_no, level, 1))
    return NewSeal(dek, sealed, manifest)


def interaction_aad(no: str, level: str, dek_version: int, uid: str) -> bytes:
    return crypto.aad("interaction", no, level, dek_version, uid)


def attachment_aad(no: str, level: str, dek_version: int, uid: str) -> bytes:
    return crypto.aad("attachment-meta", no, level, dek_version, uid)


def chunk_aad(no: str, level: str, dek_version: int, uid: str, seq: int, final: bool) -> bytes:
    # The final flag (as in the STREAM construction) makes truncation detectable.
    return crypto.aad("attachment-chunk", no, level, dek_version, uid, seq, int(final))


class Envelope:
    """DEK wrapping under the level's KEK (done by the key provider) and opening sealed groups.

    The KEKs themselves stay with the provider: in an HSM they never leave the token.
    """

    def __init__(self, keys: KeyProvider) -> None:
        self.keys = keys

    def forget_keks(self) -> None:
        """Drop the provider's cached KEKs (after a rotation retired some versions)."""
        self.keys.forget_keks()

    def dek_aad(self, archive_no: str, level: str) -> bytes:
        return crypto.aad("dek", self.keys.vault_id, archive_no, level)

    def wrap(self, dek: bytes, archive_no: str, level: str, version: int) -> bytes:
        return self.keys.wrap_dek(level, version, dek, self.dek_aad(archive_no, level))

    def wrap_many(self, deks: Sequence[tuple[bytes, str]], level: str, version: int) -> list[bytes]:
        """``wrap`` of (DEK, archive number) pairs of one level under one KEK version."""
        head = crypto.aad("dek", self.keys.vault_id)
        tail = crypto.aad_tail(level)
        return self.keys.wrap_deks(
            level, version, [(dek, head + crypto.aad_tail(no) + tail) for dek, no in deks]
        )

    def unwrap(self, archive_no: str, level: str, kek_version: int, wrapped: bytes) -> bytes:
        """The raw DEK, or ``DecryptionFailed`` naming the archive and the KEK version."""
        try:
            return self.keys.unwrap_dek(
                level, kek_version, wrapped, self.dek_aad(archive_no, level)
            )
        except InvalidCiphertext:
            raise DecryptionFailed(
                f"archive {archive_no}: its data key does not open under KEK {level} "
                f"v{kek_version} (tampered, moved from another archive, or the wrong keys)"
            ) from None

    def dek(
        self, archive_no: str, level: str, kek_version: int, dek_version: int, wrapped: bytes | None
    ) -> Sealer:
        if wrapped is None:
            raise ArchiveDestroyed(f"archive {archive_no} has been destroyed")
        return Sealer(self.unwrap(archive_no, level, kek_version, wrapped), dek_version)

    def dek_of(self, archive: Any) -> Sealer:
        """The DEK of an archive row (ORM object or Core row), unwrapped."""
        return self.dek(
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
        self.keys.check_kek(level, version)  # fail early and clearly if the keys lack it
        return version

    def open_group(
        self, dek: Sealer, archive_no: str, group: str, level: str, revision: int, blob: bytes
    ) -> dict[str, str]:
        try:
            raw = dek.open(blob, content_aad(archive_no, group, level, dek.version, revision))
        except InvalidCiphertext:
            raise DecryptionFailed(
                f"archive {archive_no}, field group {group!r}: ciphertext failed authentication "
                "(tampered, or copied from another archive or group)"
            ) from None
        return cast(dict[str, str], json.loads(raw))

    def manifest(self, dek: Sealer, archive: Any) -> mf.Manifest:
        """The archive's authenticated manifest (ORM object or Core row)."""
        return mf.open_manifest(
            dek, archive.archive_no, archive.classification, archive.manifest, keys=self.keys
        )
