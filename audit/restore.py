"""Bringing a restored log back up to a newer, verified bundle without forking it.

A database restored from a backup holds the log as it was then; an auditor may
already hold checkpoints signed later. Appending to the old log would make a
second history (a fork: two different roots for one size), so before anything
new is appended the entries the backup lacks are put back from a newer bundle
exported by the vault itself, with exactly the hashes they had:

* the bundle is verified first, against the vault's own public key (never the
  copy inside the bundle), and only entries covered by its newest *signed*
  checkpoint are taken (an entry after it is signed by nobody);
* the restored log must be a prefix of the bundle's: the same leaves, and an
  RFC 9162 consistency proof from the restored tree to the bundle's signed
  root must verify (``audit.merkle.verify_consistency``);
* each missing entry is chained again by the ordinary appender code
  (``audit.queue.chain_entry``: seq, prev hash, leaf hash, the MAC under the key
  file's audit MAC key, the archive index) and its leaf must equal the bundle's,
  else nothing is written;
* the bundle's signed checkpoints are stored too, so the restored vault holds
  the very checkpoints auditors hold and signs its next one as their extension.

Everything happens in one transaction under the append lock. On PostgreSQL a
backup may hold entries that were queued, not yet chained, when it was taken;
once the bundle has put them back in the chain, their queued rows are deleted
(the queue's guard allows exactly that), so none is chained twice.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from audit.chain import rehash
from audit.checkpoint import SignedCheckpoint, open_checkpoint
from audit.codec import dump_json, format_time
from audit.errors import AuditError, AuditIntegrityError
from audit.locks import lock_and_read_head
from audit.mac import EntryMac
from audit.merkle import (
    ENTRY_FIELDS,
    ZERO_HASH,
    CompactRange,
    MerkleTree,
    ProofError,
    canonical_entry_bytes,
    leaf_hash,
    verify_consistency,
)
from audit.models import checkpoint_table, entry_table, queue_table
from audit.queue import chain_entry, same_entry
from audit.signer import note_hash
from audit.verify import BundleError, verify_bundle
from foundation.db import transaction


class BundleRefused(AuditError):
    """A bundle that does not verify against this vault's key, or that forks from its log."""

    code = "audit-bundle-refused"


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose entries, chain and signed checkpoints were checked with the vault's key."""

    entries: list[dict[str, Any]]
    leaves: list[bytes]
    checkpoints: list[SignedCheckpoint]

    @property
    def signed(self) -> SignedCheckpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None

    @property
    def size(self) -> int:
        """Entries covered by the newest signed checkpoint (the ones a restore takes)."""
        return self.signed.size if self.signed else 0


def verified_bundle(
    data: object, *, public_key: Ed25519PublicKey, origin: str, what: str = "the bundle"
) -> VerifiedBundle:
    """Check a parsed bundle with the vault's pinned key; BundleRefused says why not."""
    if not isinstance(data, Mapping):
        raise BundleRefused(f"{what} is not an audit bundle")
    try:
        report = verify_bundle(data, public_key=public_key)
    except BundleError as exc:
        raise BundleRefused(f"{what} does not verify with this vault's audit key: {exc}") from None
    if not report.ok:
        raise BundleRefused(f"{what} does not verify with this vault's audit key: {report.problem}")
    if data.get("origin") != origin:
        raise BundleRefused(f"{what} is the log of another vault ({data.get('origin')!r})")
    entries = list(data.get("entries") or [])
    leaves = [leaf_hash(canonical_entry_bytes({k: e[k] for k in ENTRY_FIELDS})) for e in entries]
    checkpoints = [
        open_checkpoint(item["note"], public_key, origin) for item in data.get("checkpoints") or []
    ]
    return VerifiedBundle(entries=entries, leaves=leaves, checkpoints=checkpoints)


def check_extends(size: int, root: bytes, newer: VerifiedBundle, *, what: str) -> None:
    """Require the tree (size, root) to be a prefix of the bundle's signed tree, by a proof."""
    signed = newer.signed
    if signed is None or size > signed.size:
        raise BundleRefused(f"{what} covers {size} entries, more than the bundle signs")
    tree = MerkleTree(newer.leaves[: signed.size])
    try:
        verify_consistency(size, signed.size, root, signed.root, tree.consistency_proof(size))
    except ProofError as exc:
        raise BundleRefused(
            f"{what} (size {size}) is not a prefix of the bundle's signed log: {exc}; "
            "the two are different histories"
        ) from None


@dataclass(frozen=True)
class BroughtBack:
    """What ``bring_back`` did."""

    before: int  # entries the restored log held
    added: int  # entries put back from the bundle
    checkpoints: int  # signed checkpoints stored from the bundle
    dequeued: int  # queued rows whose entries the bundle chained


def bring_back(
    engine: Engine,
    bundle: VerifiedBundle,
    mac: EntryMac | None,
    progress: Callable[[int, int], None] | None = None,
) -> BroughtBack:
    """Append the entries the restored log lacks, exactly as the bundle has them."""
    signed = bundle.signed
    if signed is None:
        raise BundleRefused("the bundle has no signed checkpoint")
    with transaction(engine) as session:
        head = lock_and_read_head(session)
        before = 0 if head is None else head[0]
        conn = session.connection()
        # The restored log and the bundle must agree on every entry both hold: the same
        # leaves, and a consistency proof from the shared prefix to the signed root.
        shared = min(before, signed.size)
        restored = CompactRange()
        for seq, leaf in rehash(conn, 1, before, ZERO_HASH, mac=mac):
            if seq > shared:
                continue  # entries after the bundle's signed tree (checked by their MACs)
            if not hmac.compare_digest(leaf, bundle.leaves[seq - 1]):
                raise BundleRefused(
                    f"entry {seq} of the restored log differs from the bundle's: the two are "
                    "different histories"
                )
            restored.append(leaf)
        check_extends(shared, restored.root(), bundle, what="the restored log")
        for i in range(before, signed.size):
            got_seq, got_leaf = chain_entry(session, _columns(bundle.entries[i]), head, mac)
            if got_seq != i + 1 or not hmac.compare_digest(got_leaf, bundle.leaves[i]):
                raise AuditIntegrityError(
                    f"entry {i + 1} from the bundle does not chain to the same hash", seq=i + 1
                )
            head = (got_seq, got_leaf)
            if progress is not None and (got_seq % 1000 == 0 or got_seq == signed.size):
                progress(got_seq - before, signed.size - before)
        if before >= signed.size:
            return BroughtBack(before, 0, 0, 0)  # the restored log already extends the bundle
        stored = _store_checkpoints(conn, bundle)
        dequeued = _drop_requeued(conn, before)
    return BroughtBack(before, signed.size - before, stored, dequeued)


def _columns(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An exported entry as the appender's columns (JSON columns as their canonical text)."""
    return {
        "time": entry["time"],
        "actor": entry["actor"],
        "actor_role": entry["actor_role"],
        "action": entry["action"],
        "outcome": entry["outcome"],
        "archives": dump_json(entry["archives"]),
        "groups": dump_json(entry["groups"]),
        "grant_id": entry["grant_id"],
        "purpose": entry["purpose"],
        "reason": entry["reason"],
        "client": entry["client"],
        "detail": dump_json(entry["detail"]),
    }


def _store_checkpoints(conn: sa.Connection, bundle: VerifiedBundle) -> int:
    """The bundle's signed checkpoints the restored log lacks, each with its frontier."""
    have = set(conn.execute(sa.select(checkpoint_table.c.note_hash)).scalars())
    rng = CompactRange()
    stored = 0
    for cp in bundle.checkpoints:
        while rng.size < cp.size:
            rng.append(bundle.leaves[rng.size])
        digest = note_hash(cp.note)
        if digest in have:
            continue
        conn.execute(
            checkpoint_table.insert(),
            {
                "note_hash": digest,
                "tree_size": cp.size,
                "root_hash": cp.root,
                "signed_at": format_time(datetime.fromtimestamp(cp.timestamp, UTC)),
                "note": cp.note,
                "frontier": json.dumps([h.hex() for h in rng.hashes]),
            },
        )
        stored += 1
    return stored


def _drop_requeued(conn: sa.Connection, before: int) -> int:
    """Queued rows (PostgreSQL) whose entries the bundle has just chained (every column alike,
    as the queue's guard asks)."""
    e, q = entry_table.alias("chained"), queue_table
    chained = sa.select(e.c.seq).where(e.c.seq > before, same_entry(e, q)).exists()
    return int(conn.execute(q.delete().where(chained)).rowcount or 0)
