"""The sealed manifest of an archive: which field groups exist, at which revision.

Each group's ciphertext is bound to its own revision by its associated data,
but nothing bound the *set* of rows: anyone with write access to the database
could put an old revision back (a superseded ciphertext from ``content_history``
with its revision number opens fine), delete a group, or add one, and reads
went on as if nothing had happened. The manifest closes that: one small
document per archive naming every group's current revision and a digest of its
ciphertext, plus how many superseded revisions each group keeps, sealed under
the archive's DEK with associated data naming the archive, its classification
and DEK generation. It lives on the archive row, is rewritten in the
transaction of every write that changes content, and every read compares the
rows it fetched with it. Whoever cannot seal under the DEK (that is, anyone
without the key file) cannot produce a manifest that agrees with a rollback.

Writers carry the manifest forward (open it, change the groups they touched,
seal it again); they never rebuild it from the rows, which would launder a
tampered row into a valid state. The only rebuild is ``seal_missing``, run
by ``archive-vault upgrade`` for archives written before manifests existed,
and only until it has sealed every archive once: from then on (and from
``init`` on for a new vault) the key file records that all archives carry a
manifest, so one set to NULL in the database is tampering, refused on read
and never sealed again.

What it does not cover: an attacker who kept an *earlier manifest* together
with the rows it described can put the whole archive back to that earlier
state (the database cannot tell time on its own); the audit log records every
write, so such a rollback contradicts it. Interactions and attachments are
bound to their archive by their own associated data, not by the manifest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit.events import SYSTEM, Actor, AuditAction, AuditEvent, Outcome
from foundation.db import transaction
from vault import crypto
from vault.crypto import InvalidCiphertext, Sealer
from vault.errors import DecryptionFailed, ManifestsMissing
from vault.models import Archive, ArchiveStatus, ContentHistory, SealedGroup, table_of

FORMAT = 1
DIGEST_BYTES = 16  # 128-bit truncated SHA-256: a second preimage is out of reach
NAMED = 20  # archive numbers an error line names (the audit entry names up to AUDITED)
AUDITED = 1000

_A = table_of(Archive)
_C = table_of(SealedGroup)
_H = table_of(ContentHistory)


def digest(ciphertext: bytes) -> str:
    """What the manifest remembers of a group's ciphertext (a revision number can repeat
    after a group is emptied and written again; its ciphertext cannot)."""
    return hashlib.sha256(ciphertext).digest()[:DIGEST_BYTES].hex()


def manifest_aad(archive_no: str, level: str, dek_version: int) -> bytes:
    return crypto.aad("manifest", FORMAT, archive_no, level, dek_version)


@dataclass(frozen=True, slots=True)
class Manifest:
    """Current groups (revision, ciphertext digest) and superseded revisions per group."""

    groups: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    history: Mapping[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        doc = {
            "v": FORMAT,
            "g": {g: [r, d] for g, (r, d) in sorted(self.groups.items())},
            "h": {g: n for g, n in sorted(self.history.items()) if n},
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        doc = json.loads(raw)
        if doc.get("v") != FORMAT:
            raise ValueError("unknown manifest format")
        return cls(
            groups={str(g): (int(r), str(d)) for g, (r, d) in doc["g"].items()},
            history={str(g): int(n) for g, n in doc["h"].items()},
        )

    def written(self, group: str, revision: int, ciphertext: bytes) -> Manifest:
        return Manifest({**self.groups, group: (revision, digest(ciphertext))}, self.history)

    def removed(self, group: str) -> Manifest:
        return Manifest({g: v for g, v in self.groups.items() if g != group}, self.history)

    def superseded(self, group: str) -> Manifest:
        """One more revision of ``group`` moved to history."""
        return Manifest(self.groups, {**self.history, group: self.history.get(group, 0) + 1})

    def erased(self, groups: Iterable[str]) -> Manifest:
        """Groups erased with their history (consent withdrawn)."""
        gone = set(groups)
        return Manifest(
            {g: v for g, v in self.groups.items() if g not in gone},
            {g: n for g, n in self.history.items() if g not in gone},
        )


def of_new_archive(sealed: Mapping[str, bytes]) -> Manifest:
    """The manifest of an archive just created: every group at revision 1."""
    return Manifest({g: (1, digest(ct)) for g, ct in sealed.items()})


def encode_new(sealed: Mapping[str, bytes]) -> bytes:
    """``of_new_archive(sealed).encode()``, the same bytes, without building the document.

    A bulk import encodes one per archive; the general encoder's cost per call
    showed there. The layout is ``Manifest.encode``'s for a document whose groups
    are all at revision 1 and that has no history.
    """
    groups = ",".join(f'{_json_key(g)}:[1,"{digest(sealed[g])}"]' for g in sorted(sealed))
    return f'{{"g":{{{groups}}},"h":{{}},"v":{FORMAT}}}'.encode()


_json_key = json.encoder.encode_basestring_ascii  # what json.dumps does to a key by default


def seal(dek: Sealer, archive_no: str, level: str, manifest: Manifest) -> bytes:
    return dek.seal(manifest.encode(), manifest_aad(archive_no, level, dek.version))


def _failed(archive_no: str, why: str, group: str | None = None) -> DecryptionFailed:
    where = f"archive {archive_no}" + (f", field group {group!r}" if group else "")
    return DecryptionFailed(
        f"{where}: {why}; nothing was returned (rolled back or tampered with in the database)"
    )


def open_manifest(
    dek: Sealer, archive_no: str, level: str, blob: bytes | None, *, keys: Any
) -> Manifest:
    """The archive's authenticated manifest; a missing or forged one fails closed.

    A missing one is advice to seal only in a vault whose key file does not yet
    record that every archive carries a manifest (``keys.manifests_complete``);
    there, it can only be an archive from before manifests. Anywhere else it was
    removed in the database, and sealing it would vouch for whatever rows are left.
    """
    if blob is None:
        if keys.manifests_complete():
            raise DecryptionFailed(
                f"archive {archive_no}: its sealed manifest of field groups is missing, though "
                "every archive of this vault carries one; nothing was returned. This is an "
                "integrity failure (removed or tampered with in the database) to investigate"
            )
        raise DecryptionFailed(
            f"archive {archive_no}: no sealed manifest of its field groups, so its content "
            "cannot be trusted; if the vault was just upgraded, run `archive-vault upgrade` "
            "(or `archive-vault seal-manifests`) with the key file"
        )
    try:
        return Manifest.decode(dek.open(blob, manifest_aad(archive_no, level, dek.version)))
    except (InvalidCiphertext, ValueError, KeyError, TypeError):
        raise _failed(archive_no, "its manifest of field groups failed authentication") from None


def check_rows(
    manifest: Manifest,
    archive_no: str,
    requested: Iterable[str],
    rows: Iterable[tuple[str, int, bytes]],
) -> None:
    """Every requested group is present iff the manifest lists it, at its revision and bytes."""
    fetched = {}
    for group, revision, ciphertext in rows:
        if group in fetched:
            raise _failed(archive_no, "stored twice", group)
        fetched[group] = (revision, ciphertext)
    for group in dict.fromkeys(requested):
        expected, row = manifest.groups.get(group), fetched.pop(group, None)
        if expected is None and row is None:
            continue
        if expected is None:
            raise _failed(archive_no, "not in the archive's sealed manifest", group)
        if row is None:
            raise _failed(archive_no, "missing, though the sealed manifest lists it", group)
        revision, ciphertext = row
        if revision != expected[0] or not hmac.compare_digest(digest(ciphertext), expected[1]):
            raise _failed(archive_no, "not the revision the sealed manifest names", group)
    if fetched:
        raise _failed(archive_no, "returned though not requested", sorted(fetched)[0])


def check_history(
    manifest: Manifest, archive_no: str, group: str, rows: Iterable[tuple[int, bytes]]
) -> None:
    """The superseded revisions of ``group``: as many as the manifest counts, none repeated."""
    listed = list(rows)
    distinct = {digest(ct) for _, ct in listed}
    if len(listed) != len(distinct) or len(listed) != manifest.history.get(group, 0):
        raise _failed(archive_no, "its history does not match the sealed manifest", group)


# -- whole-archive helpers (writes that re-seal everything, and the upgrade) --------


def _conn(handle: Any) -> Any:
    """A Core connection from an ORM session (or the connection itself)."""
    return handle.connection() if isinstance(handle, Session) else handle


def current_rows(session: Any, archive_id: int) -> list[tuple[str, int, bytes]]:
    conn = _conn(session)
    return [
        (g, r, ct)
        for g, r, ct in conn.execute(
            sa.select(_C.c.group_name, _C.c.revision, _C.c.ciphertext).where(
                _C.c.archive_id == archive_id
            )
        )
    ]


def history_counts(session: Any, archive_id: int) -> dict[str, int]:
    conn = _conn(session)
    return {
        g: int(n)
        for g, n in conn.execute(
            sa.select(_H.c.group_name, sa.func.count())
            .where(_H.c.archive_id == archive_id)
            .group_by(_H.c.group_name)
        )
    }


def verify_all(session: Any, manifest: Manifest, archive_no: str, archive_id: int) -> None:
    """The whole archive agrees with its manifest: every group, every history count."""
    rows = current_rows(session, archive_id)
    check_rows(manifest, archive_no, [*manifest.groups, *(g for g, _, _ in rows)], rows)
    counts = history_counts(session, archive_id)
    if {g: n for g, n in counts.items() if n} != {g: n for g, n in manifest.history.items() if n}:
        raise _failed(archive_no, "the history of its field groups was changed")


def rebuilt(session: Any, archive_id: int, history: Mapping[str, int]) -> Manifest:
    """The manifest of the rows as they are now (after a re-seal that ``verify_all`` preceded)."""
    return Manifest(
        {g: (r, digest(ct)) for g, r, ct in current_rows(session, archive_id)}, dict(history)
    )


def _missing(conn: Any) -> list[str]:
    """Active archives without a manifest (destroyed ones have none by design)."""
    return list(
        conn.execute(
            sa.select(_A.c.archive_no)
            .where(_A.c.manifest.is_(None), _A.c.status == ArchiveStatus.ACTIVE.value)
            .order_by(_A.c.id)
        ).scalars()
    )


def _refuse(store: Any, actor: Actor) -> None:
    """In a vault whose archives all carry manifests, name the ones without: audited, refused."""
    with transaction(store.engine) as session:
        missing = _missing(session.connection())
        if not missing:
            return
        store.audit.append(
            session,
            AuditEvent(
                action=AuditAction.SEAL_MANIFESTS,
                actor=actor,
                outcome=Outcome.ERROR,
                archives=tuple(missing[:AUDITED]),
                detail={"missing_manifests": len(missing), "sealed": 0},
            ),
        )
    more = len(missing) - NAMED
    named = ", ".join(missing[:NAMED]) + (f" and {more} more" if more > 0 else "")
    raise ManifestsMissing(
        f"{len(missing)} archive(s) have no sealed manifest, though every archive of this vault "
        f"carries one: tampered with in the database ({named}); nothing was sealed. Reads of "
        "them stay refused: investigate (the audit log, backups) and restore them",
        tuple(missing),
    )


def seal_missing(store: Any, *, actor: Actor = SYSTEM, batch: int = 500) -> int:
    """Seal a manifest for every active archive written before manifests; returns how many.

    Archives written before manifests existed have none, and a read refuses
    them. The migration that added the column cannot seal (migrations never
    see the key file), so ``archive-vault upgrade`` calls this with the keys.
    Each group is opened first, so only ciphertexts that authenticate under
    the archive's key, at their own revision, are vouched for. The manifest
    attests the state found now; it cannot tell whether that state was
    already rolled back.

    Once every archive carries a manifest, the key file records it (a new
    vault's does from ``init``) and this never seals again: an archive found
    without one then lost it in the database, so it is named, audited and
    refused (``ManifestsMissing``), never vouched for. Each batch sealed is
    audited with the archives it vouched for.
    """
    if store.keys.manifests_complete():
        _refuse(store, actor)
        return 0
    done = 0
    while True:
        with transaction(store.engine) as session:
            conn = session.connection()
            todo = conn.execute(
                sa.select(_A)
                .where(_A.c.manifest.is_(None), _A.c.status == ArchiveStatus.ACTIVE.value)
                .order_by(_A.c.id)
                .limit(batch)
            ).all()
            if not todo:
                # Every archive has one now: from here on a missing manifest is tampering.
                store.keys.mark_manifests_complete()
                store.audit.append(
                    session,
                    AuditEvent(
                        action=AuditAction.SEAL_MANIFESTS,
                        actor=actor,
                        detail={"sealed": done, "all_sealed": True},
                    ),
                )
                return done
            for archive in todo:
                dek = store.envelope.dek_of(archive)
                rows = current_rows(conn, archive.id)
                for group, revision, ciphertext in rows:
                    store.envelope.open_group(
                        dek, archive.archive_no, group, archive.classification, revision, ciphertext
                    )
                sealed = seal(
                    dek,
                    archive.archive_no,
                    archive.classification,
                    Manifest(
                        {g: (r, digest(ct)) for g, r, ct in rows}, history_counts(conn, archive.id)
                    ),
                )
                conn.execute(sa.update(_A).where(_A.c.id == archive.id).values(manifest=sealed))
            store.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.SEAL_MANIFESTS,
                    actor=actor,
                    archives=tuple(a.archive_no for a in todo),
                    detail={"sealed": len(todo)},
                ),
            )
            done += len(todo)
