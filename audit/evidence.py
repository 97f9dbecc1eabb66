"""Entries as evidence: found through the indexes, frozen with proofs, checked again later.

A leak case asks two questions of the log: who touched these archives in this
window, and what did this account touch in this window. Both are answered from
indexes (``audit_archive_ref`` and ``ix_audit_entry_actor_time``), never by
scanning the JSON text of every entry, and both stop at a given head so the
answer is the same whenever it is asked again.

An answer is frozen as the entries themselves (in the bundle's entry format,
``audit.codec.entry_dict_from_row``) with an RFC 9162 inclusion proof of each
against one signed checkpoint. ``check_frozen`` needs nothing but those and
the log's public key: every entry is re-hashed from its fields and must lead
to the signed root, so an entry edited in the frozen copy is named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection

from audit.checkpoint import CheckpointError, SignedCheckpoint, open_checkpoint
from audit.codec import ENTRY_COLUMNS, entry_dict_from_row, format_time
from audit.errors import AuditQueryError
from audit.merkle import (
    ENTRY_FIELDS,
    ProofError,
    canonical_entry_bytes,
    leaf_hash,
    verify_inclusion,
)
from audit.models import archive_ref_table, entry_table

_E = entry_table.c
_R = archive_ref_table.c


def _window(stmt: Any, since: datetime, until: datetime, upto: int) -> Any:
    if since.tzinfo is None or until.tzinfo is None:
        raise AuditQueryError("evidence windows need timezone-aware times")
    return stmt.where(
        _E.time >= format_time(since), _E.time < format_time(until), _E.seq <= upto
    ).order_by(_E.seq)


def by_account(
    conn: Connection, account: str, since: datetime, until: datetime, upto: int, limit: int
) -> list[tuple[Any, ...]]:
    """Every entry ``account`` wrote in [since, until), up to seq ``upto`` (at most ``limit``)."""
    stmt = _window(sa.select(*ENTRY_COLUMNS).where(_E.actor == account), since, until, upto)
    return [tuple(r) for r in conn.execute(stmt.limit(limit))]


def by_archives(
    conn: Connection,
    archives: Sequence[str],
    since: datetime,
    until: datetime,
    upto: int,
    limit: int,
    actions: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Every entry naming one of ``archives`` in [since, until), through the archive index."""
    refs = sa.select(_R.seq).where(_R.archive_no.in_(list(archives)), _R.seq <= upto)
    stmt = sa.select(*ENTRY_COLUMNS).where(_E.seq.in_(refs))
    if actions:
        stmt = stmt.where(_E.action.in_(list(actions)))
    return [tuple(r) for r in conn.execute(_window(stmt, since, until, upto).limit(limit))]


def by_seqs(conn: Connection, seqs: Sequence[int]) -> list[tuple[Any, ...]]:
    """The rows of the given entries, in seq order (missing ones are simply absent)."""
    stmt = sa.select(*ENTRY_COLUMNS).where(_E.seq.in_(list(seqs))).order_by(_E.seq)
    return [tuple(r) for r in conn.execute(stmt)]


def freeze(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """The entries as they are frozen into a case: fields, stored hash (hex), nothing else."""
    return [entry_dict_from_row(tuple(row)) for row in rows]


def frozen_leaf(entry: Mapping[str, Any]) -> bytes:
    """The leaf hash an entry's fields give (ValueError/KeyError/TypeError when malformed)."""
    return leaf_hash(canonical_entry_bytes({k: entry[k] for k in ENTRY_FIELDS}))


def check_frozen(
    entries: Sequence[Mapping[str, Any]],
    note: str,
    proofs: Mapping[str, Sequence[str]],
    public_key: Ed25519PublicKey,
    origin: str,
) -> tuple[SignedCheckpoint | None, list[str]]:
    """The checkpoint and what is wrong (empty: every entry proven) with a frozen record.

    ``proofs`` maps each seq (as text, the way JSON keeps keys) to its hex proof.
    """
    try:
        cp = open_checkpoint(note, public_key, origin)
    except CheckpointError as exc:
        return None, [f"the checkpoint does not verify: {exc}"]
    problems: list[str] = []
    for entry in entries:
        seq = entry.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            problems.append("an entry has no integer seq")
            continue
        try:
            leaf = frozen_leaf(entry)
        except (KeyError, TypeError, ValueError):
            problems.append(f"entry {seq} is malformed")
            continue
        if entry.get("entry_hash") != leaf.hex():
            problems.append(f"entry {seq} does not match its recorded hash")
            continue
        try:
            proof = [bytes.fromhex(h) for h in proofs[str(seq)]]
            verify_inclusion(seq - 1, cp.size, leaf, proof, cp.root)
        except (KeyError, TypeError, ValueError, ProofError):
            problems.append(f"entry {seq} is not proven under the checkpoint of size {cp.size}")
    return cp, problems
