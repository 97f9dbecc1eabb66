"""The inspection's walk of the store: open every ciphertext, keep nothing but counts.

Art 14 asks for the whole archive's condition to be inspected every half year.
For an encrypted vault that means: every wrapped data key unwraps, every
manifest opens, every field group, superseded revision, interaction,
attachment name and attachment chunk authenticates under its archive's key
with the associated data that binds it to its place, and the rows agree with
the sealed manifest (no group rolled back, removed or added, no history
changed). A ciphertext that fails is counted against its kind and its archive
number is named; nothing else about it is kept.

Plaintext is never returned, parsed, logged or written: each ``open`` result is
dropped at once (``_opens`` answers a bool). The walk goes archive by archive in
batches of ids, each batch read with one query per table (chunks streamed), so
memory stays flat whatever the vault's size, and it never writes.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from vault import manifest as mf
from vault.crypto import InvalidCiphertext, Sealer
from vault.envelope import Envelope, attachment_aad, chunk_aad, content_aad, interaction_aad
from vault.errors import DecryptionFailed, VaultError
from vault.models import (
    Archive,
    ArchiveStatus,
    Attachment,
    AttachmentChunk,
    ContentHistory,
    Interaction,
    SealedGroup,
    table_of,
)

# Every kind of ciphertext the store holds for an archive, in the order reported.
KINDS = ("dek", "manifest", "group", "revision", "interaction", "attachment", "chunk")

_A = table_of(Archive)
_C = table_of(SealedGroup)
_H = table_of(ContentHistory)
_I = table_of(Interaction)
_F = table_of(Attachment)
_K = table_of(AttachmentChunk)


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0


@dataclass
class ContentCheck:
    """Counts per kind, and the kinds that failed per archive number (nothing else)."""

    archives: int = 0
    destroyed: int = 0
    kinds: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    failing: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def count(self, archive_no: str, kind: str, ok: bool, n: int = 1) -> None:
        tally = self.kinds[kind]
        if ok:
            tally.ok += n
        else:
            tally.failed += n
            self.failing[archive_no].add(kind)

    @property
    def ok(self) -> bool:
        return not self.failing

    def public(self) -> dict[str, Any]:
        return {
            "archives_checked": self.archives,
            "destroyed_skipped": self.destroyed,
            "kinds": {k: {"ok": t.ok, "failed": t.failed} for k, t in self.kinds.items()},
            "failing_archives": [
                {"archive_no": no, "kinds": [k for k in KINDS if k in kinds]}
                for no, kinds in sorted(self.failing.items())
            ],
        }


def _opens(sealer: Sealer, blob: bytes | None, aad: bytes) -> bool:
    """Whether ``blob`` authenticates; the plaintext is dropped before returning."""
    if blob is None:
        return False
    try:
        sealer.open(bytes(blob), aad)
    except InvalidCiphertext:
        return False
    return True


def _grouped(conn: Connection, stmt: sa.Select[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = defaultdict(list)
    for row in conn.execute(stmt):
        out[row[0]].append(row)
    return out


class StoreWalk:
    """Checks every ciphertext of every archive, in batches of ``batch`` archives."""

    def __init__(self, engine: Engine, envelope: Envelope, *, batch: int = 200) -> None:
        self.engine = engine
        self.envelope = envelope
        self.batch = batch

    def total(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_A)).scalar_one())

    def run(self, progress: Callable[[int, int], None] | None = None) -> ContentCheck:
        result = ContentCheck()
        total, done, last_id = self.total(), 0, 0
        while True:
            with self.engine.connect() as conn:
                archives = list(
                    conn.execute(
                        sa.select(_A).where(_A.c.id > last_id).order_by(_A.c.id).limit(self.batch)
                    ).all()
                )
                if not archives:
                    break
                self._batch(conn, archives, result)
            last_id = archives[-1].id
            done += len(archives)
            if progress is not None:
                progress(done, max(total, done))
        self.envelope.forget_keks()
        return result

    def _batch(self, conn: Connection, archives: list[Any], result: ContentCheck) -> None:
        ids = [a.id for a in archives if a.status != ArchiveStatus.DESTROYED.value]
        result.destroyed += len(archives) - len(ids)
        if not ids:
            return
        groups = _grouped(
            conn,
            sa.select(_C.c.archive_id, _C.c.group_name, _C.c.revision, _C.c.ciphertext).where(
                _C.c.archive_id.in_(ids)
            ),
        )
        history = _grouped(
            conn,
            sa.select(_H.c.archive_id, _H.c.group_name, _H.c.revision, _H.c.ciphertext).where(
                _H.c.archive_id.in_(ids)
            ),
        )
        interactions = _grouped(
            conn,
            sa.select(_I.c.archive_id, _I.c.uid, _I.c.ciphertext).where(_I.c.archive_id.in_(ids)),
        )
        attachments = _grouped(
            conn,
            sa.select(
                _F.c.archive_id, _F.c.id, _F.c.uid, _F.c.chunk_count, _F.c.complete, _F.c.meta_ct
            ).where(_F.c.archive_id.in_(ids)),
        )
        deks: dict[int, tuple[Any, Sealer | None]] = {}
        for archive in archives:
            if archive.status == ArchiveStatus.DESTROYED.value:
                continue
            result.archives += 1
            deks[archive.id] = (archive, self._archive(archive, result, groups, history))
            self._records(archive, deks[archive.id][1], result, interactions, attachments)
        self._chunks(conn, ids, deks, attachments, result)

    def _dek(self, archive: Any, result: ContentCheck) -> Sealer | None:
        try:
            dek = self.envelope.dek_of(archive)
        except (VaultError, KeyError, ValueError):  # tampered, wrong level or version, erased
            result.count(archive.archive_no, "dek", False)
            return None
        result.count(archive.archive_no, "dek", True)
        return dek

    def _archive(
        self,
        archive: Any,
        result: ContentCheck,
        groups: dict[int, list[Any]],
        history: dict[int, list[Any]],
    ) -> Sealer | None:
        """DEK, manifest, current groups and superseded revisions of one archive."""
        no, level = archive.archive_no, archive.classification
        rows, old = groups.get(archive.id, []), history.get(archive.id, [])
        dek = self._dek(archive, result)
        if dek is None:  # nothing of it can be opened: every ciphertext counts as failed
            result.count(no, "manifest", False)
            for kind, n in (("group", len(rows)), ("revision", len(old))):
                if n:
                    result.count(no, kind, False, n)
            return None
        manifest: mf.Manifest | None
        try:
            manifest = mf.open_manifest(dek, no, level, archive.manifest, keys=self.envelope.keys)
            result.count(no, "manifest", True)
        except DecryptionFailed:
            manifest = None
            result.count(no, "manifest", False)
        seen: set[str] = set()
        for _aid, group, revision, ct in rows:
            ok = _opens(dek, ct, content_aad(no, group, level, dek.version, revision))
            if ok and manifest is not None:
                expected = manifest.groups.get(group)
                ok = (
                    expected is not None
                    and group not in seen
                    and expected[0] == revision
                    and hmac.compare_digest(mf.digest(bytes(ct)), expected[1])
                )
            seen.add(group)
            result.count(no, "group", ok)
        if manifest is not None:
            missing = set(manifest.groups) - seen
            if missing:  # listed in the manifest, gone from the table
                result.count(no, "group", False, len(missing))
        per_group: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        for _aid, group, revision, ct in old:
            ok = _opens(dek, ct, content_aad(no, group, level, dek.version, revision))
            result.count(no, "revision", ok)
            per_group[group].append((revision, bytes(ct)))
        if manifest is not None:
            for group in set(per_group) | set(manifest.history):
                try:
                    mf.check_history(manifest, no, group, per_group.get(group, []))
                except DecryptionFailed:
                    result.count(no, "revision", False)
        return dek

    def _records(
        self,
        archive: Any,
        dek: Sealer | None,
        result: ContentCheck,
        interactions: dict[int, list[Any]],
        attachments: dict[int, list[Any]],
    ) -> None:
        no, level = archive.archive_no, archive.classification
        for _aid, uid, ct in interactions.get(archive.id, []):
            if ct is None:  # an interaction with no text is allowed
                continue
            ok = dek is not None and _opens(dek, ct, interaction_aad(no, level, dek.version, uid))
            result.count(no, "interaction", ok)
        for _aid, _id, uid, _n, complete, meta in attachments.get(archive.id, []):
            if meta is None and not complete:  # an upload still in progress names nothing yet
                continue
            ok = dek is not None and _opens(dek, meta, attachment_aad(no, level, dek.version, uid))
            result.count(no, "attachment", ok)

    def _chunks(
        self,
        conn: Connection,
        ids: list[int],
        deks: dict[int, tuple[Any, Sealer | None]],
        attachments: dict[int, list[Any]],
        result: ContentCheck,
    ) -> None:
        """Every chunk, streamed; a complete attachment has exactly chunks 0..n-1."""
        owners = {
            att_id: (aid, uid, n, complete)
            for aid in ids
            for _a, att_id, uid, n, complete, _m in attachments.get(aid, [])
        }
        if not owners:
            return
        seen: dict[int, set[int]] = defaultdict(set)
        stream = conn.execute(
            sa.select(_K.c.attachment_id, _K.c.seq, _K.c.ciphertext)
            .where(_K.c.attachment_id.in_(list(owners)))
            .order_by(_K.c.attachment_id, _K.c.seq)
            .execution_options(yield_per=64)
        )
        for att_id, seq, ct in stream:
            aid, uid, n, complete = owners[att_id]
            archive, dek = deks[aid]
            no, level = archive.archive_no, archive.classification
            seen[att_id].add(seq)
            if dek is None:
                result.count(no, "chunk", False)
                continue
            if complete:
                ok = 0 <= seq < n and _opens(
                    dek, ct, chunk_aad(no, level, dek.version, uid, seq, seq == n - 1)
                )
            else:  # in progress: no chunk is final yet
                ok = _opens(dek, ct, chunk_aad(no, level, dek.version, uid, seq, False))
            result.count(no, "chunk", ok)
        for att_id, (aid, _uid, n, complete) in owners.items():
            missing = n - len(seen[att_id] & set(range(n))) if complete else 0
            if missing:  # truncated: chunks the attachment counts are gone
                result.count(deks[aid][0].archive_no, "chunk", False, missing)
