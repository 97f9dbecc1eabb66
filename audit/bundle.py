"""Export of the audit log as a self-contained bundle for offline verification.

A bundle is one JSON object (format ``archive-vault-audit-bundle/1``):

``origin``, ``public_key_pem``, ``verifier_key``
    which log and which key; an auditor should pin the key they received
    separately (``--pubkey``) rather than trust the copy in the bundle.
``entries``
    every entry with its canonical fields and stored ``entry_hash``.
``checkpoints``
    every valid signed checkpoint note, one per size (the signature is the
    authority; rows that are not this log's checkpoints are left out, and
    ``audit verify`` reports them).
``consistency_proofs``
    RFC 9162 proofs between consecutive checkpoints and from every checkpoint
    to the newest, so an auditor holding any earlier checkpoint can check
    that the newest extends it without trusting the entries.
``inclusion_proofs``
    for the entries asked for with ``prove``, against the newest checkpoint
    that covers them.

Entries are streamed to the output; only the 32-byte leaf hashes are held in
memory, to build the proofs. The leaves are recomputed from content, so a
bundle of a tampered database fails verification instead of hiding it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from typing import Any, TextIO

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from audit.chain import entry_batches
from audit.checkpoint import CheckpointError, open_checkpoint, public_key_pem, verifier_key
from audit.codec import canonical_from_row, entry_dict_from_row
from audit.errors import AuditQueryError
from audit.merkle import MerkleTree, leaf_hash
from audit.models import checkpoint_table
from audit.verify import BUNDLE_FORMAT


def export_bundle(
    engine: Engine,
    out: TextIO,
    *,
    origin: str,
    public_key: Ed25519PublicKey,
    prove: Sequence[int] = (),
) -> dict[str, int]:
    """Write the bundle to ``out``; returns counts for the caller to report."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(checkpoint_table.c.tree_size, checkpoint_table.c.note).order_by(
                checkpoint_table.c.tree_size
            )
        ).all()
    notes: list[tuple[int, str]] = []
    for size, note in rows:
        if notes and notes[-1][0] == size:
            continue  # a copy of an exported checkpoint (or a fork, which `audit verify` names)
        if isinstance(note, str) and _authentic(note, public_key, origin, size):
            notes.append((int(size), note))
    header: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "origin": origin,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "public_key_pem": public_key_pem(public_key),
        "verifier_key": verifier_key(origin, public_key),
        "checkpoints": [{"size": size, "note": note} for size, note in notes],
    }
    head = json.dumps(header, ensure_ascii=False)
    out.write(head[:-1] + ',"entries":[')
    leaves: list[bytes] = []
    with closing(entry_batches(engine, 20_000)) as batches:
        for chunk in batches:
            for row in chunk:
                entry = entry_dict_from_row(row)
                try:
                    leaves.append(leaf_hash(canonical_from_row(row)))
                except (ValueError, TypeError):
                    leaves.append(bytes(32))  # unparseable: the verifier reports it
                out.write(("," if len(leaves) > 1 else "") + json.dumps(entry, ensure_ascii=False))
    out.write("]")

    tree = MerkleTree(leaves)
    sizes = [size for size, _note in notes if size <= tree.size]
    pairs: set[tuple[int, int]] = set()
    if sizes:
        newest = sizes[-1]
        pairs.update(itertools.pairwise(sizes))
        pairs.update((s, newest) for s in sizes[:-1])
    consistency = [
        {"size1": a, "size2": b, "proof": [h.hex() for h in tree.consistency_proof(a, b)]}
        for a, b in sorted(pairs)
    ]
    inclusion = []
    for seq in prove:
        if not sizes or not 1 <= seq <= sizes[-1]:
            raise AuditQueryError(f"entry {seq} is not covered by a signed checkpoint yet")
        size = sizes[-1]
        inclusion.append(
            {
                "seq": seq,
                "size": size,
                "leaf_hash": tree.leaf(seq - 1).hex(),
                "proof": [h.hex() for h in tree.inclusion_proof(seq - 1, size)],
            }
        )
    out.write(',"consistency_proofs":' + json.dumps(consistency))
    out.write(',"inclusion_proofs":' + json.dumps(inclusion) + "}\n")
    return {
        "entries": len(leaves),
        "checkpoints": len(notes),
        "consistency_proofs": len(consistency),
        "inclusion_proofs": len(inclusion),
    }


def _authentic(note: str, key: Ed25519PublicKey, origin: str, size: int) -> bool:
    try:
        return open_checkpoint(note, key, origin).size == size
    except (CheckpointError, ValueError, TypeError):
        return False
