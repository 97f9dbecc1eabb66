"""Signed checkpoints: which stored ones to trust, and signing the next one.

A checkpoint extends the newest *valid* signed tree from its stored frontier,
which is first checked against that signed root, and re-hashes (and checks the
MACs of) only the new entries, so it costs O(new entries); it never signs a
tree that does not extend the newest valid checkpoint or that holds an entry
whose MAC fails.

Checkpoint rows are not trusted because they are in the table: anyone who may
INSERT can add one. Each row's note is verified against the log's key and its
columns against the note; a row that fails is skipped (``verify`` reports it),
so a junk row is never taken as the latest and cannot stop the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.chain import rehash
from audit.checkpoint import CheckpointError, SignedCheckpoint, open_checkpoint, sign_checkpoint
from audit.codec import ENTRY_COLUMNS, canonical_from_row, format_time
from audit.errors import AuditIntegrityError
from audit.locks import CHECKPOINT_LOCK, head_of, take_lock, try_lock
from audit.log_keys import LogKeys
from audit.merkle import ZERO_HASH, CompactRange, ProofError, leaf_hash
from audit.models import checkpoint_table, entry_table

_CHECKPOINTS_DESC = sa.select(checkpoint_table).order_by(checkpoint_table.c.tree_size.desc())
_NOTE_CACHE_LIMIT = 10_000


def note_hash(note: str) -> bytes:
    """The key of a checkpoint row: SHA-256 of its note (see ``audit.models``)."""
    return hashlib.sha256(note.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Newest:
    """The newest valid checkpoint and every stored row that carries it."""

    checkpoint: SignedCheckpoint
    rows: list[Row[Any]]


class CheckpointSigner:
    """Reads the newest trustworthy checkpoint and signs the tree that extends it."""

    def __init__(self, engine: Engine, keys: LogKeys) -> None:
        self._engine = engine
        self._keys = keys
        self._notes: dict[bytes, SignedCheckpoint | None] = {}

    def latest(self) -> SignedCheckpoint | None:
        """The newest checkpoint row that is this log's and agrees with its note."""
        with self._engine.connect() as conn:
            newest = self.newest_valid(conn)
        return None if newest is None else newest.checkpoint

    def _valid(self, row: Row[Any]) -> SignedCheckpoint | None:
        """The row's checkpoint when its note verifies and its columns agree; else None.

        Verdicts on notes are remembered (a note's validity never changes), so
        junk rows cost one signature check per process, not one per checkpoint.
        """
        note = row.note
        if not isinstance(note, str):
            return None
        digest = note_hash(note)
        if digest in self._notes:
            cp = self._notes[digest]
        else:
            try:
                cp = open_checkpoint(note, self._keys.public_key, self._keys.origin)
            except (CheckpointError, ValueError, TypeError):
                cp = None
            if len(self._notes) >= _NOTE_CACHE_LIMIT:
                self._notes.clear()
            self._notes[digest] = cp
        if cp is None or cp.size != row.tree_size:
            return None
        if not hmac.compare_digest(cp.root, bytes(row.root_hash or b"")):
            return None
        return cp

    def newest_valid(self, conn: Connection) -> Newest | None:
        """The newest valid checkpoint and the rows that carry it (invalid rows skipped)."""
        best: SignedCheckpoint | None = None
        rows: list[Row[Any]] = []
        result = conn.execute(_CHECKPOINTS_DESC.execution_options(yield_per=256))
        try:
            for row in result:
                if best is not None and row.tree_size < best.size:
                    break
                cp = self._valid(row)
                if cp is None:
                    continue
                if best is None:
                    best = cp
                if cp.root == best.root:
                    rows.append(row)
        finally:
            result.close()
        return None if best is None else Newest(best, rows)

    def sign(self, now: datetime, *, wait: bool = True) -> SignedCheckpoint | None:
        """Sign a checkpoint of the current tree if it grew; None when there is nothing new.

        Raises AuditIntegrityError, and signs nothing, when the stored entries
        no longer extend the last signed checkpoint (edited, removed, truncated).
        ``wait=False``: None at once if another signer holds the lock.
        """
        with Session(self._engine) as session:
            conn = session.connection()
            if wait:
                take_lock(conn, CHECKPOINT_LOCK)
            elif not try_lock(conn, CHECKPOINT_LOCK):
                return None
            newest = self.newest_valid(conn)
            head = head_of(conn)
            rng, prev_leaf = self._extendable_range(conn, newest)
            if head < rng.size:
                raise AuditIntegrityError(
                    f"the log holds {head} entries but a checkpoint signed {rng.size}: "
                    "its tail was removed",
                    seq=head + 1,
                )
            if head == rng.size:
                return None
            mac = self._keys.entry_mac()
            for seq, leaf in rehash(conn, rng.size + 1, head, prev_leaf, mac=mac):
                rng.append(leaf)
                if seq != rng.size:  # pragma: no cover - rehash enforces contiguity
                    raise AuditIntegrityError("audit sequence broke while checkpointing", seq)
            timestamp = int(now.timestamp())
            cp = sign_checkpoint(
                self._keys.signing_key(), self._keys.origin, rng.size, rng.root(), timestamp
            )
            try:
                conn.execute(
                    checkpoint_table.insert(),
                    {
                        "note_hash": note_hash(cp.note),
                        "tree_size": cp.size,
                        "root_hash": cp.root,
                        "signed_at": format_time(now),
                        "note": cp.note,
                        "frontier": json.dumps([h.hex() for h in rng.hashes]),
                    },
                )
                session.commit()
            except IntegrityError:
                session.rollback()
                return None  # this very note is stored already
        return cp

    def _extendable_range(
        self, conn: Connection, newest: Newest | None
    ) -> tuple[CompactRange, bytes]:
        """The compact range of the newest valid signed tree, proven against its signed root."""
        if newest is None:
            return CompactRange(), ZERO_HASH
        cp = newest.checkpoint
        rng: CompactRange | None = None
        for row in newest.rows:  # a copy with a damaged frontier is tried, then passed over
            try:
                hashes = [bytes.fromhex(h) for h in json.loads(row.frontier)]
                candidate = CompactRange(cp.size, hashes)
                if candidate.root() == cp.root:
                    rng = candidate
                    break
            except (ValueError, TypeError, ProofError):
                continue
        if rng is None:  # the stored frontier is damaged: rebuild it from the entries
            rng = CompactRange()
            for _seq, leaf in rehash(conn, 1, cp.size, ZERO_HASH):
                rng.append(leaf)
            if rng.size != cp.size or rng.root() != cp.root:
                raise AuditIntegrityError(
                    f"entries 1..{cp.size} no longer reproduce the signed checkpoint of size "
                    f"{cp.size}; refusing to sign over them (run `archive-vault audit verify`)"
                )
        last_row = conn.execute(
            sa.select(*ENTRY_COLUMNS).where(entry_table.c.seq == cp.size)
        ).first()
        if last_row is None:
            raise AuditIntegrityError(
                f"entry {cp.size}, covered by a signed checkpoint, is missing", seq=cp.size
            )
        return rng, leaf_hash(canonical_from_row(tuple(last_row)))
