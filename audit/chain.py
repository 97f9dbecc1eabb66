"""The hash chain as stored: entries re-read in seq order and re-hashed from their columns.

Nothing stored is trusted. ``rehash`` recomputes each leaf from the entry's
canonical bytes and checks the sequence, the link to the previous entry, the
stored hash and (given the key) the MAC, raising at the first entry that does
not hold; the signer uses it to extend a checkpoint and the proofs to build
the tree. ``entry_batches`` streams whole-log reads (database verification,
bundle export) straight from the driver, where a million rows must pass in
seconds.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from audit.codec import ENTRY_COLUMNS, canonical_from_row, leaves_from_rows
from audit.errors import AuditIntegrityError
from audit.mac import EntryMac
from audit.merkle import ZERO_HASH, MerkleTree, leaf_hash
from audit.models import entry_table
from audit.stored import as_bytes

ROWS_WITH_MAC = (*ENTRY_COLUMNS, entry_table.c.mac)
# Positions in a row of ROWS_WITH_MAC (ENTRY_COLUMNS ends with prev_hash, entry_hash).
PREV_HASH, ENTRY_HASH, MAC = 13, 14, 15


# The columns as stored (integer time and codes), which the batched leaf path reads
# without converting each row; ``canonical_from_row`` takes either form.
_STORED_WITH_MAC = tuple(
    sa.type_coerce(
        c, c.type.impl_instance if isinstance(c.type, sa.types.TypeDecorator) else c.type
    ).label(c.key)
    for c in ROWS_WITH_MAC
)
_BATCH = 5000


def _whole(
    rows: Sequence[Sequence[Any]], first: int, prev_leaf: bytes, mac: EntryMac | None
) -> list[bytes] | None:
    """The leaves of ``rows`` when every one holds (seq, link, stored hash, MAC); else None.

    What the row-by-row rules check, list-wide: the verifier's batched leaf path
    and one MAC loop, instead of a canonical form and a MAC call per entry.
    """
    if [row[0] for row in rows] != list(range(first, first + len(rows))):
        return None
    try:
        leaves = leaves_from_rows(rows)
    except (ValueError, TypeError):
        return None
    prevs = [as_bytes(row[PREV_HASH]) for row in rows]
    if prevs[0] != prev_leaf or prevs[1:] != leaves[:-1]:
        return None
    if [as_bytes(row[ENTRY_HASH]) for row in rows] != leaves:
        return None
    if mac is not None and mac.failures(first, prevs, leaves, [row[MAC] for row in rows]):
        return None
    return leaves


def rehash(
    conn: Connection,
    first: int,
    last: int,
    prev_leaf: bytes,
    *,
    mac: EntryMac | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Recompute leaves first..last from content, checking sequence and chain as it goes.

    With ``mac``, every entry that must carry a MAC is checked too: nothing
    is signed over an entry written or rewritten without the MAC key.
    """
    expected = first
    stmt = (
        sa.select(*_STORED_WITH_MAC)
        .where(entry_table.c.seq >= first, entry_table.c.seq <= last)
        .order_by(entry_table.c.seq)
    )
    for chunk in conn.execute(stmt.execution_options(yield_per=_BATCH)).partitions():
        rows = [tuple(row) for row in chunk]
        leaves = _whole(rows, expected, prev_leaf, mac)
        if leaves is not None:  # every row holds: the usual case, checked list-wide
            yield from zip(range(expected, expected + len(rows)), leaves, strict=True)
            expected += len(rows)
            prev_leaf = leaves[-1]
            continue
        for row in rows:  # one does not: find which, and why
            seq = int(row[0])
            if seq != expected:
                raise AuditIntegrityError(f"audit entry {expected} is missing", seq=expected)
            try:
                leaf = leaf_hash(canonical_from_row(row))
            except ValueError:
                raise AuditIntegrityError(f"audit entry {seq} is malformed", seq=seq) from None
            if as_bytes(row[PREV_HASH]) != prev_leaf:
                raise AuditIntegrityError(
                    f"audit entry {seq} does not link to entry {seq - 1}", seq=seq
                )
            if as_bytes(row[ENTRY_HASH]) != leaf:
                raise AuditIntegrityError(
                    f"audit entry {seq} does not match its stored hash", seq=seq
                )
            if (
                mac is not None
                and mac.required(seq)
                and not mac.check(seq, prev_leaf, leaf, row[MAC])
            ):
                raise AuditIntegrityError(
                    f"audit entry {seq} carries no valid MAC: it was written or altered "
                    "without the vault's audit MAC key; refusing to sign over it "
                    "(run `archive-vault audit verify`)",
                    seq=seq,
                )
            prev_leaf = leaf
            expected += 1
            yield seq, leaf
    if expected != last + 1:
        raise AuditIntegrityError(f"audit entry {expected} is missing", seq=expected)


def tree(engine: Engine, size: int) -> MerkleTree:
    """The Merkle tree of entries 1..size, recomputed and chain-checked (for proofs)."""
    with engine.connect() as conn:
        leaves = [leaf for _seq, leaf in rehash(conn, 1, size, ZERO_HASH)]
    if len(leaves) != size:  # pragma: no cover - rehash raises on a missing entry first
        raise AuditIntegrityError(f"the log holds fewer than {size} entries")
    return MerkleTree(leaves)


def entry_batches(
    engine: Engine, batch: int, columns: Sequence[Any] = ENTRY_COLUMNS
) -> Generator[Sequence[Sequence[Any]], None, None]:
    """Batches of entry rows in seq order straight from the driver; close it when done.

    No ORM objects and no per-row type processing, so a million entries pass in
    seconds (``audit.verify_db``, ``audit.bundle``).
    """
    stmt = sa.select(*columns).order_by(entry_table.c.seq)
    sql = str(stmt.compile(dialect=engine.dialect))
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        if engine.dialect.name == "postgresql":
            # A named (server-side) cursor streams instead of loading all rows at once;
            # binary transfer skips hex-decoding the two bytea columns of every row.
            batch = min(batch, 5000)
            cur = driver.cursor(name="audit_verify", binary=True)
            cur.itersize = batch
        else:
            cur = driver.cursor()
        cur.execute(sql)
        while True:
            chunk = cur.fetchmany(batch)
            if not chunk:
                break
            yield chunk
        cur.close()
    finally:
        raw.rollback()
        raw.close()
