"""Verification of the audit log as stored in the database.

Nothing stored is trusted: every entry is re-hashed from its columns, the
chain and the Merkle root are recomputed, every checkpoint's note signature is
checked, and the roots they sign are compared with the recomputed tree at
their sizes. The log being shorter than the newest signed checkpoint is a
truncated tail. The rules that locate the first bad entry are those of
``audit.verify.ChainChecker``, shared with the offline verifier.

What only the vault can check, because only it holds the key file: every
entry's MAC (``audit.mac``), so a rewrite of the unsigned tail with every hash
recomputed, or a correctly hashed entry inserted by the application's role,
is named. A checkpoint row that is not this log's is reported and skipped.

Speed (a million entries in well under ten seconds): rows are streamed through
the raw driver cursor in batches (no ORM objects, no per-row type processing),
and the root is folded incrementally from a compact range, so memory stays
O(log n) whatever the log's length.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from contextlib import closing

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from audit.chain import ENTRY_HASH, MAC, PREV_HASH, ROWS_WITH_MAC, entry_batches
from audit.checkpoint import CheckpointError, SignedCheckpoint, open_checkpoint
from audit.codec import canonical_from_row
from audit.mac import EntryMac
from audit.models import checkpoint_table, entry_table
from audit.verify import ChainChecker, Problem, Report

BATCH = 20_000
MAX_LISTED = 100  # entries whose MAC fails, listed one by one; the rest are counted
_REASON_CHARS = 200


def _checkpoints(
    engine: Engine, public_key: Ed25519PublicKey, origin: str
) -> tuple[list[SignedCheckpoint], list[Problem]]:
    """The valid checkpoints (one per size), and a problem for every row that is not.

    A row is trusted only when its note verifies against the log's key and its
    columns agree with the note. Any other row was written by someone without
    the key (anyone who may INSERT can add one): it is reported and skipped,
    so it can neither pass for the latest checkpoint nor stop verification.
    """
    stmt = sa.select(
        checkpoint_table.c.tree_size, checkpoint_table.c.root_hash, checkpoint_table.c.note
    ).order_by(checkpoint_table.c.tree_size)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    valid: dict[int, SignedCheckpoint] = {}
    rejected: list[Problem] = []
    for size, root, note in rows:
        try:
            cp = open_checkpoint(note, public_key, origin)
        except (CheckpointError, ValueError, TypeError) as exc:
            reason = str(exc)[:_REASON_CHARS]
            rejected.append(
                Problem(
                    "checkpoint",
                    f"checkpoint row for size {size} is not a checkpoint of this log "
                    f"({reason}); skipped",
                )
            )
            continue
        if cp.size != size or not hmac.compare_digest(cp.root, bytes(root or b"")):
            rejected.append(
                Problem(
                    "checkpoint",
                    f"checkpoint row for size {size} disagrees with its signed note "
                    f"(size {cp.size}); skipped",
                )
            )
            continue
        seen = valid.get(cp.size)
        if seen is None:
            valid[cp.size] = cp
        elif not hmac.compare_digest(seen.root, cp.root):
            rejected.append(
                Problem(
                    "checkpoint",
                    f"two different roots are signed for size {cp.size}: the log key "
                    "signed a fork (was it used outside this vault?)",
                )
            )
    return sorted(valid.values(), key=lambda c: c.size), rejected


def head_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.max(entry_table.c.seq))).scalar()
    return int(value or 0)


def verify_database(
    engine: Engine,
    *,
    public_key: Ed25519PublicKey,
    origin: str,
    progress: Callable[[int, int], None] | None = None,
    batch: int = BATCH,
    mac: EntryMac | None = None,
) -> Report:
    """Verify every stored entry and checkpoint; the Report names the first bad entry.

    With ``mac`` (the key file's audit MAC key) every entry from its
    ``from_seq`` on must carry a valid MAC. An entry whose MAC fails does not
    stop the chain check: every such entry is reported (the first
    ``MAX_LISTED`` by seq), as is every checkpoint row that was skipped.
    """
    checkpoints, rejected = _checkpoints(engine, public_key, origin)
    total = head_seq(engine)
    checker = ChainChecker(checkpoints)
    add = checker.add
    check = mac.check if mac is not None else None
    from_seq = mac.from_seq if mac is not None else 0
    forged: list[Problem] = []
    forged_count = 0
    done = 0
    with closing(entry_batches(engine, batch, ROWS_WITH_MAC)) as batches:
        for chunk in batches:
            for row in chunk:
                try:
                    canonical = canonical_from_row(row)
                except (ValueError, TypeError):
                    # A JSON column no longer parses: bytes that cannot match the stored
                    # hash let the checker classify and locate it like any other edit.
                    canonical = b"\xff unparseable row"
                prev, stored = bytes(row[PREV_HASH]), bytes(row[ENTRY_HASH])
                if not add(row[0], canonical, prev, stored):
                    break
                # The checker accepted the entry, so ``stored`` is its recomputed leaf.
                if (
                    check is not None
                    and row[0] >= from_seq
                    and not check(row[0], prev, stored, row[MAC])
                ):
                    forged_count += 1
                    if len(forged) < MAX_LISTED:
                        forged.append(
                            Problem(
                                "forged",
                                "its MAC does not verify: written or altered without the "
                                "vault's audit MAC key",
                                row[0],
                            )
                        )
            done += len(chunk)
            if progress is not None:
                progress(min(done, total), total)
            if checker.problem is not None:
                break
    report = checker.finish()
    found = forged + ([report.problem] if report.problem is not None else [])
    # By entry; at one entry the chain's finding (what was done) before the MAC's.
    found.sort(key=lambda p: (p.seq if p.seq is not None else total + 2, p.kind == "forged"))
    report.problems = found + rejected
    report.problem = report.problems[0] if report.problems else None
    report.ok = not report.problems
    if mac is None:
        report.notes.append("entry MACs not checked: this key file has no audit MAC key")
    else:
        unmaced = min(report.entries, from_seq - 1)
        if unmaced > 0:
            report.notes.append(
                f"entries 1..{unmaced} were written before this vault had its audit MAC key: "
                "they carry no MAC (the chain and the signed checkpoints still cover them)"
            )
        if report.entries > unmaced:
            report.notes.append(f"MACs checked for entries {unmaced + 1}..{report.entries}")
        if forged_count > len(forged):
            report.notes.append(
                f"{forged_count} entries in all fail their MAC; the first {len(forged)} are listed"
            )
    return report
