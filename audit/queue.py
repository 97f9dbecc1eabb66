"""The append queue and its sequencer: durable at the request's commit, chained later.

On PostgreSQL a request no longer takes the chain's lock. Its transaction
inserts the entry into ``audit_queue`` with a MAC over every column
(``EntryMac.queued``) and commits: the entry is durable before any plaintext
leaves, and concurrent requests commit side by side, their fsyncs grouped by
the database. One sequencer at a time, holding the append lock only inside its
own short transaction, takes the queued entries in queue order, gives each its
``seq``, ``prev_hash``, leaf hash and chain MAC in ``audit_entry``, indexes
its archives, and deletes the queued rows, all in one transaction: an entry is
always in exactly one of the two tables. This is how Trillian and Tessera
separate durable admission from sequencing.

Who sequences: every worker's signer tick (``AuditLog.sign_pending``), the
minute's sweep, and every reader of the log (queries, proofs, bundles, the
head), which integrate first so that what they read includes every committed
entry. An entry that must know its seq at once (``append_sequenced``) is
chained directly after integrating the queue, in its caller's transaction.

What write access to the database alone cannot do: a queued row without a
valid MAC is never integrated and is reported by ``audit verify``; a queued
row can be deleted only once an entry with its whole content stands in the
chain (a statement-level trigger checks every deleted row against
``audit_entry``, ``audit.guards``), and an entry inserted there without the
chain MAC is named as forged. A queued entry waiting longer than
``audit_queue_alarm_seconds`` (the sequencer stopped) is reported by ``audit
verify`` as well.

The queued MAC binds a row's columns, not the row: the application's role can
read a queued row and insert a copy of it, MAC and all, at any time and under
any id. An entry equal in every column (its time to the microsecond) to one
already chained, or to one chained earlier in the same pass, is therefore that
entry admitted twice: it is never chained, it is left where it is, and ``audit
verify`` reports it as replayed. Two honest entries are never equal in every
column: the queue holds one entry per account and microsecond (a unique index),
and an append the database refuses for that is stamped a microsecond later
(``enqueue``); a copy of a row still waiting is refused the same way.

SQLite has one writer at a time anyway: there the append chains directly and
the queue stays empty.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from audit.codec import (
    MAX_ENTRY_BYTES,
    canonical_for_columns,
    format_time,
    leaves_from_rows,
    parse_time,
)
from audit.errors import AuditWriteFailed
from audit.locks import APPEND_LOCK, Handle, lock_and_read_head, read_head, try_lock
from audit.mac import EntryMac
from audit.merkle import ZERO_HASH, leaf_hash
from audit.models import archive_ref_table, entry_table, queue_table
from audit.stored import as_bytes, as_stored
from foundation.rawsql import Raw, raw_begin

# The columns an event sets, in the order the queued MAC binds them.
FIELDS = (
    "time",
    "actor",
    "actor_role",
    "action",
    "outcome",
    "archives",
    "groups",
    "grant_id",
    "purpose",
    "reason",
    "client",
    "detail",
)
BATCH = 2000  # entries per sequencing transaction: short lock hold, few round trips
_SLACK = 1024  # the canonical form's keys and punctuation around the column texts

# No RETURNING; nothing inserted when the account already has an entry queued at this
# microsecond (the unique index on actor and time): the append stamps it again.
_ENQUEUE = Raw(
    postgresql.insert(queue_table).inline().on_conflict_do_nothing(),
    column_keys=[*FIELDS, "mac"],
    prepared="audit_enqueue",
)
_RESTAMPS = 64  # a microsecond each: more would mean rows planted ahead, not a collision
_MICROSECOND = timedelta(microseconds=1)
_FIRST = -(2**63)  # below every id: a row the application's role numbered itself is seen too


def same_entry(chained: sa.FromClause, queued: sa.FromClause) -> sa.ColumnElement[bool]:
    """A chained entry equal to a queued one in every column an event sets.

    Found through the (actor, time) index: ``action + 0`` keeps the planner off
    the action index, which holds most of the log (see ``audit.guards``).
    """
    conditions: list[sa.ColumnElement[bool]] = []
    for name in FIELDS:
        e, q = chained.c[name], queued.c[name]
        if name == "action":
            conditions.append(
                sa.type_coerce(e, sa.Integer) + sa.literal_column("0")
                == sa.type_coerce(q, sa.Integer)
            )
        elif e.nullable:
            conditions.append(e.is_not_distinct_from(q))
        else:
            conditions.append(e == q)
    return sa.and_(*conditions)


_CHAINED = entry_table.alias("chained")
# Per queued row: whether its entry already stands in the chain (a copy admitted again).
ALREADY_CHAINED = sa.exists().where(same_entry(_CHAINED, queue_table)).label("already_chained")
_TAKE = Raw(
    sa.select(
        queue_table.c.id, *(queue_table.c[f] for f in FIELDS), queue_table.c.mac, ALREADY_CHAINED
    )
    .where(queue_table.c.id > sa.bindparam("after"))
    .order_by(queue_table.c.id)
    .limit(sa.bindparam("n"))
)
_CHAIN = Raw(entry_table.insert(), column_keys=[c.key for c in entry_table.columns])
# The archive index is beside the log and the application's role may insert into it:
# a row it put there first is the very row the sequencer writes, never a reason to stop.
_REFS = Raw(
    postgresql.insert(archive_ref_table).on_conflict_do_nothing(),
    column_keys=["archive_no", "seq"],
)
# A sequencing batch sends only what it computed: the queue ids in order, and the
# prev hashes, leaves and MACs each as one string of 32-byte values (the n-th id's
# at offset 32(n-1)); the columns an entry's leaf covers are copied from its queued
# row by the database itself. With the archive index rows as two arrays, a batch
# of 2,000 is two inserts instead of two sets of 2,000 parameter sets.
# What the leaf was computed over is what the sequencer read from the same rows
# under the append lock, and a queued row cannot change (``audit.guards``); the
# count of rows inserted is checked all the same.
_QUEUED_COLUMNS = ", ".join(FIELDS)
_CHAIN_FROM_QUEUE = Raw(
    sa.text(
        f"INSERT INTO audit_entry (seq, {_QUEUED_COLUMNS}, prev_hash, entry_hash, mac) "  # noqa: S608 - constants
        f"SELECT :first + u.n - 1, {', '.join(f'q.{f}' for f in FIELDS)}, "
        "substring(CAST(:prevs AS BYTEA) FROM CAST(u.n AS INTEGER) * 32 - 31 FOR 32), "
        "substring(CAST(:leaves AS BYTEA) FROM CAST(u.n AS INTEGER) * 32 - 31 FOR 32), "
        "substring(CAST(:macs AS BYTEA) FROM CAST(u.n AS INTEGER) * 32 - 31 FOR 32) "
        "FROM unnest(CAST(:ids AS BIGINT[])) WITH ORDINALITY AS u(id, n) "
        "JOIN audit_queue q ON q.id = u.id"
    ).bindparams(
        sa.bindparam("prevs", type_=sa.LargeBinary),
        sa.bindparam("leaves", type_=sa.LargeBinary),
        sa.bindparam("macs", type_=sa.LargeBinary),
    )
)
_REFS_ARRAYS = Raw(
    sa.text(
        "INSERT INTO audit_archive_ref (archive_no, seq) "
        "SELECT * FROM unnest(CAST(:nos AS VARCHAR[]), CAST(:seqs AS BIGINT[])) "
        "ON CONFLICT DO NOTHING"
    )
)
_DONE = Raw(sa.text("DELETE FROM audit_queue WHERE id = ANY(:ids)"))
_DONE_ONE = Raw(queue_table.delete().where(queue_table.c.id == sa.bindparam("id")))


def uses_queue(dialect_name: str) -> bool:
    """Whether appends on this database go through the queue (PostgreSQL) or chain directly."""
    return dialect_name == "postgresql"


def enqueue(handle: Handle, columns: dict[str, Any], mac: EntryMac | None) -> None:
    """Insert a validated entry (``event_fields`` plus ``time``) into the queue. No lock.

    Two honest entries equal in every column (one account's identical requests
    stamped in the same microsecond by two workers) would be one entry and a
    replayed copy to the sequencer, which chains only the first. The queue holds
    one entry per account and microsecond, so the second is refused by the
    database and stamped a microsecond later here, with its MAC computed again.
    """
    size = sum(len(v) for v in (columns[f] for f in FIELDS) if v is not None)
    if size > MAX_ENTRY_BYTES - _SLACK:
        raise AuditWriteFailed(f"audit entry is larger than {MAX_ENTRY_BYTES} bytes")
    for _ in range(_RESTAMPS):
        columns["mac"] = None if mac is None else mac.queued([columns[f] for f in FIELDS])
        if _ENQUEUE.execute(handle, columns) == 1:
            return
        columns["time"] = format_time(parse_time(columns["time"]) + _MICROSECOND)
    _written(0)


def _written(rows: int) -> None:
    """One row, or the append fails: a rule or trigger (the table's owner's, or a SQLite
    file writer's) can make an INSERT succeed having written nothing, and no verification
    can see an entry that never existed. (The sequencer's batch needs no count: the queue's
    guard refuses to let its rows go unless their entries stand in the chain.)"""
    if rows != 1:
        raise AuditWriteFailed("audit entry could not be written (the database stored no row)")


@dataclass
class Integrated:
    """What one sequencing pass did: entries chained, the new head, rows it refused."""

    count: int = 0
    head: tuple[int, bytes] | None = None
    refused: list[int] = field(default_factory=list)  # queue ids whose MAC does not hold
    replayed: list[int] = field(default_factory=list)  # queue ids of entries already chained
    looked_at: int = 0  # rows read (a batch that read fewer than BATCH was the last)
    busy: bool = False  # another sequencer held the lock and this one did not wait


def chain_entry(
    handle: Handle, columns: dict[str, Any], head: tuple[int, bytes] | None, mac: EntryMac | None
) -> tuple[int, bytes]:
    """Give one entry its place after ``head`` and insert it; the new head. Lock held."""
    seq, prev = (1, ZERO_HASH) if head is None else (head[0] + 1, head[1])
    columns["seq"] = seq
    columns["prev_hash"] = prev
    columns["entry_hash"] = leaf = leaf_hash(canonical_for_columns(columns))
    columns["mac"] = None if mac is None else mac.compute(seq, prev, leaf)
    _written(_CHAIN.execute(handle, columns))
    refs = [{"archive_no": no, "seq": seq} for no in dict.fromkeys(_archives(columns["archives"]))]
    if len(refs) == 1:
        _REFS.execute(handle, refs[0])
    elif refs:
        _REFS.execute_many(handle, refs)
    return seq, leaf


def _archives(text: str) -> list[str]:
    value = json.loads(text)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


_ARCHIVES = FIELDS.index("archives")


def _leaf(seq: int, values: Sequence[Any], prev: bytes) -> bytes:
    """The leaf hash of a queued entry placed at ``seq`` after ``prev``.

    Through the verifier's batched row path (``leaves_from_rows``), which builds
    the same canonical bytes as ``canonical_for_columns`` without parsing and
    re-serialising the JSON columns, and falls back to the general path for any
    row it does not recognise.
    """
    if sum(len(v) for v in values if type(v) is str) > MAX_ENTRY_BYTES - _SLACK:
        raise AuditWriteFailed(f"audit entry is larger than {MAX_ENTRY_BYTES} bytes")
    time, action, outcome = as_stored(values[0], values[3], values[4])
    row = (seq, time, *values[1:3], action, outcome, *values[5:], prev)
    return leaves_from_rows((row,))[0]


def integrate_locked(
    handle: Handle,
    head: tuple[int, bytes] | None,
    mac: EntryMac | None,
    *,
    limit: int = BATCH,
    after: int = _FIRST,
) -> tuple[Integrated, int]:
    """Chain up to ``limit`` queued entries after ``head``; the caller holds the append lock.

    Returns what was done and the last queue id looked at (where the next batch
    starts). A row whose queued MAC fails is left where it is and named; so is
    a copy of an entry already chained (see the module docstring).
    """
    done = Integrated(head=head)
    rows = _TAKE.all(handle, {"after": after, "n": limit})
    done.looked_at = len(rows)
    ids: list[int] = []
    prevs: list[bytes] = []
    leaves: list[bytes] = []
    macs: list[bytes] = []
    ref_nos: list[str] = []
    ref_seqs: list[int] = []
    taken: set[tuple[Any, ...]] = set()
    seq, prev = (0, ZERO_HASH) if head is None else head
    first = seq + 1
    check = None if mac is None else mac.check_queued
    for row in rows:
        values = row[1:-2]
        if check is not None and not check(values, row[-2]):
            done.refused.append(int(row[0]))
            continue
        if row[-1] or values in taken:
            done.replayed.append(int(row[0]))
            continue
        try:
            leaf = _leaf(seq + 1, values, prev)
            archives = dict.fromkeys(_archives(values[_ARCHIVES]))
        except (AuditWriteFailed, ValueError, TypeError, KeyError):
            done.refused.append(int(row[0]))
            continue
        seq += 1
        taken.add(values)
        ids.append(int(row[0]))
        ref_nos.extend(archives)
        ref_seqs.extend([seq] * len(archives))
        prevs.append(prev)
        leaves.append(leaf)
        if mac is not None:
            macs.append(mac.compute(seq, prev, leaf))
        prev = leaf
    if ids:
        batch = {
            "first": first,
            "ids": ids,
            "prevs": b"".join(prevs),
            "leaves": b"".join(leaves),
            "macs": b"".join(macs) if mac is not None else None,
        }
        if _CHAIN_FROM_QUEUE.execute(handle, batch) != len(ids):
            raise AuditWriteFailed("audit queue rows vanished while being sequenced")
        if ref_nos:
            _REFS_ARRAYS.execute(handle, {"nos": ref_nos, "seqs": ref_seqs})
        if len(ids) == 1:
            _DONE_ONE.execute(handle, {"id": ids[0]})
        else:
            _DONE.execute(handle, {"ids": ids})
        done.count = len(ids)
        done.head = (seq, prev)
    last = int(rows[-1][0]) if rows else after
    return done, last


def integrate_all_locked(
    handle: Handle, head: tuple[int, bytes] | None, mac: EntryMac | None
) -> Integrated:
    """Every queued entry, in the caller's transaction (``append_sequenced``)."""
    total = Integrated(head=head)
    after = _FIRST
    while True:
        done, after = integrate_locked(handle, total.head, mac, after=after)
        total.count += done.count
        total.head = done.head
        total.refused += done.refused
        total.replayed += done.replayed
        if done.looked_at < BATCH:
            return total


def integrate(engine: Engine, mac_of: Any, *, wait: bool = True) -> Integrated:
    """Sequence every committed queued entry, a batch per short transaction.

    ``mac_of`` gives the MAC key under the lock (the key file may have just
    gained one). Waits for another sequencer rather than skipping: a caller
    that integrates before reading must see every entry committed before it.
    ``wait=False`` is for a caller that only keeps the queue short (the signing
    cadence after a commit): if another sequencer holds the lock it is doing
    this very work, and the caller goes on (``Integrated.busy``) instead of
    holding its request up behind it.
    """
    total = Integrated()
    if not uses_queue(engine.dialect.name):
        return total
    after = _FIRST
    while True:
        with raw_begin(engine) as tx:
            if wait:
                head = lock_and_read_head(tx)
            elif try_lock(tx, APPEND_LOCK):
                head = read_head(tx)
            else:
                total.busy = True
                return total
            done, after = integrate_locked(tx, head, mac_of(), after=after)
        total.count += done.count
        total.head = done.head or total.head
        total.refused += done.refused
        total.replayed += done.replayed
        if done.looked_at < BATCH:
            return total


@dataclass(frozen=True)
class QueueState:
    """The queue as ``audit verify`` finds it."""

    waiting: int
    oldest: datetime | None  # the oldest entry whose MAC holds and that is not a copy
    forged: int  # rows whose MAC does not hold
    forged_ids: tuple[int, ...]  # the first few of them
    replayed: int = 0  # rows whose MAC holds, copies of an entry chained or queued before
    replayed_ids: tuple[int, ...] = ()  # the first few of them


_FORGED_LISTED = 20


def inspect_queue(engine: Engine, mac: EntryMac | None) -> QueueState:
    """Check every queued entry's MAC and find the oldest; reads, never sequences.

    A row whose entry is already chained, or that repeats an earlier queued row
    (by MAC, which binds every column), is a copy: counted apart, and never the
    oldest (a copy keeps its original's time, however long ago that was).
    """
    stmt = sa.select(
        queue_table.c.id, *(queue_table.c[f] for f in FIELDS), queue_table.c.mac, ALREADY_CHAINED
    )
    waiting = 0
    oldest: str | None = None
    forged: list[int] = []
    bad = 0
    copies: list[int] = []
    copied = 0
    seen: set[Any] = set()
    with engine.connect() as conn:
        for row in conn.execute(stmt.order_by(queue_table.c.id).execution_options(yield_per=5000)):
            waiting += 1
            values: Sequence[Any] = list(row[1:-2])
            if mac is not None and not mac.check_queued(values, row[-2]):
                bad += 1
                if len(forged) < _FORGED_LISTED:
                    forged.append(int(row[0]))
                continue
            key = as_bytes(row[-2]) or tuple(values)
            if row[-1] or key in seen:
                copied += 1
                if len(copies) < _FORGED_LISTED:
                    copies.append(int(row[0]))
                continue
            seen.add(key)
            if isinstance(values[0], str) and (oldest is None or values[0] < oldest):
                oldest = values[0]
    when = None
    if oldest is not None:
        try:
            when = parse_time(oldest)
        except ValueError:
            when = None
    return QueueState(waiting, when, bad, tuple(forged), copied, tuple(copies))
