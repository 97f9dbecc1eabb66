"""The stored log verified in seq ranges, one process per core, the seams joined in order.

``audit.verify_db`` splits ``1..head`` into ranges; each range is read and
checked by a worker process with its own connection (rows never travel through
a pipe), and ``join`` folds the results in seq order into exactly the Report the
single-process path (``ChainChecker``) gives, findings worded and located alike.

What a worker checks in its range, as ``ChainChecker`` does: every entry is
re-hashed from its columns and compared with its stored hash; from the second
row on, each row's seq follows the one before and its ``prev_hash`` is the
previous row's recomputed leaf; every entry's MAC (with the key). What only
the join can check, because it needs what came before the range:

* the range's first row: its seq follows the previous range's last entry, and
  its ``prev_hash`` is that entry's leaf (the seam);
* every signed checkpoint whose size falls in the range: the worker records
  the range's compact range (the roots of the aligned perfect subtrees covering
  ``first..size``) at that size; the join appends those subtrees to the tree of
  every entry before the range and compares the root with the signed one.

A finding in a range makes everything after it irrelevant, as in a sequential
pass: the join stops at the first finding in seq order, and counts only the
MAC failures of entries before it.

A worker imports nothing beyond this module's imports and the database driver.

A SQLite worker process reads its rows through APSW, not the standard
``sqlite3`` module: fetching the sixteen columns of an entry costs about half
as much there (1.7 µs instead of 3.5 µs per entry on the benchmark's machine),
which is a quarter of the whole check. Only a worker process does: APSW
carries its own copy of SQLite, and two copies in one process that both hold
the file open can drop each other's POSIX locks when one closes it. A forked
worker holds no lock of the parent's copy (locks are not inherited), and
touches the file through APSW alone. A range checked in this process keeps to
``sqlite3``.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import multiprocessing
import os
import sqlite3
import sys
from bisect import bisect_left
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from typing import Any

from audit.checkpoint import SignedCheckpoint
from audit.codec import canonical_from_row, leaves_from_rows
from audit.mac import EntryMac, MacKey
from audit.merkle import ZERO_HASH, CompactRange
from audit.stored import as_bytes
from audit.verify import (
    Problem,
    checkpoint_problem,
    edited_problem,
    link_problem,
    sequence_problem,
    truncated_problem,
)

MAX_LISTED = 100  # entries whose MAC fails, listed one by one; the rest are counted
BATCH = 5000
UNPARSEABLE = b"\xff unparseable row"
_COLUMNS = (
    "seq, time, actor, actor_role, action, outcome, archives, groups, grant_id, purpose, "
    "reason, client, detail, prev_hash, entry_hash, mac"
)
_sha256 = hashlib.sha256
# A row's columns by position, taken a whole batch at a time (``map`` runs in C).
_SEQ, _PREV, _STORED, _MAC = itemgetter(0), itemgetter(13), itemgetter(14), itemgetter(15)


def seq_problem(n: int, seq: Any) -> Problem:
    """Entry ``n`` was expected; ``seq`` came (a seq that is not an integer is malformed)."""
    if type(seq) is not int:
        return Problem("malformed", f"the row after entry {n - 1} has no integer seq", n)
    return sequence_problem(n, seq)


def forged_problem(seq: int) -> Problem:
    return Problem(
        "forged",
        "its MAC does not verify: written or altered without the vault's audit MAC key",
        seq,
    )


@dataclass(frozen=True)
class Source:
    """Where a worker reads the log: a SQLite file, or PostgreSQL connect arguments."""

    dialect: str  # "sqlite" | "postgresql"
    path: str = ""
    connect_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    search_path: str | None = None
    mac_key: MacKey | None = field(default=None, repr=False)


@dataclass
class RangeResult:
    """What a range contributes to the join (``first_seq_taken`` is False: no row in range)."""

    first_seq: Any = None
    first_seq_taken: bool = False
    first_prev: bytes = b""
    first_intact: bool = False
    rows: int = 0  # the first row and every later one that passed the checks in range
    last: bytes = ZERO_HASH
    before_last: bytes | None = None
    nodes: list[bytes] = field(default_factory=list)  # subtrees covering the rows taken
    # (size, subtrees covering first..size, MAC failures before size) per checkpoint size
    snapshots: list[tuple[int, list[bytes], int]] = field(default_factory=list)
    forged: list[int] = field(default_factory=list)  # the first MAX_LISTED, by seq
    forged_count: int = 0
    problem: Problem | None = None  # the first finding after the first row


# -- one range ------------------------------------------------------------------------


def _range_sql(dialect: str, lo: int | None, hi: int | None) -> tuple[str, tuple[int, ...]]:
    mark = "?" if dialect == "sqlite" else "%s"
    where: list[str] = []
    params: list[int] = []
    if lo is not None:
        where.append(f"seq > {mark}")
        params.append(lo)
    if hi is not None:
        where.append(f"seq <= {mark}")
        params.append(hi)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {_COLUMNS} FROM audit_entry{clause} ORDER BY seq"  # noqa: S608 - constants
    return sql, tuple(params)


def _apsw() -> Any:
    """APSW when installed (a dependency; an environment not reinstalled since keeps sqlite3)."""
    try:
        import apsw  # only a SQLite worker process reads through it
    except ImportError:  # pragma: no cover - installed with the project
        return None
    return apsw


def _apsw_batches(apsw: Any, path: str, sql: str, params: tuple[int, ...]) -> Any:
    """The rows of ``sql`` in batches, read through APSW (see the module docstring)."""
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOMUTEX)
    try:
        conn.set_busy_timeout(30_000)
        conn.execute("PRAGMA query_only=ON")
        rows = conn.execute(sql, params)
        while chunk := list(islice(rows, BATCH)):
            yield chunk
    finally:
        conn.close()


def _batches(source: Source, lo: int | None, hi: int | None) -> Any:
    """Yield batches of rows of the range, from a connection of this process's own."""
    sql, params = _range_sql(source.dialect, lo, hi)
    apsw = _apsw() if source.dialect == "sqlite" and _WORKER.get("own_process") else None
    if apsw is not None:
        yield from _apsw_batches(apsw, source.path, sql, params)
        return
    if source.dialect == "sqlite":
        conn = sqlite3.connect(source.path, timeout=30)
        try:
            conn.execute("PRAGMA query_only=ON")
            cur = conn.execute(sql, params)
            while chunk := cur.fetchmany(BATCH):
                yield chunk
        finally:
            conn.close()
        return
    import psycopg  # only a PostgreSQL worker needs the driver imported

    with psycopg.connect(**source.connect_kwargs) as pg:
        pg.read_only = True
        if source.search_path is not None:
            pg.execute("SELECT set_config('search_path', %s, false)", (source.search_path,))
        # A named (server-side) cursor streams; binary transfer skips hex-decoding bytea.
        with pg.cursor(name="audit_verify_range", binary=True) as server:
            server.itersize = BATCH
            server.execute(sql, params)
            while rows := server.fetchmany(BATCH):
                yield rows
        pg.rollback()


def check_range(
    source: Source,
    lo: int | None,
    hi: int | None,
    checkpoint_sizes: frozenset[int],
    tick: Callable[[int], None] | None = None,
) -> RangeResult:
    """Check the entries with lo < seq <= hi (no bound where None); see the module docstring.

    The cyclic garbage collector is paused meanwhile: a range creates millions of
    short-lived tuples, strings and hashes, none of them in a cycle (reference
    counting frees each batch), so its passes over them find nothing (they were
    about 1% of the instructions a range executes).
    """
    checker = _RangeChecker(checkpoint_sizes, source.mac_key)
    collecting = gc.isenabled()
    gc.disable()
    try:
        for chunk in _batches(source, lo, hi):
            if not checker.out.first_seq_taken:
                checker.careful(chunk[:1])
                rest = chunk[1:]
            else:
                rest = chunk
            if rest and not checker.done and not checker.whole(rest):
                checker.careful(rest)
            if tick is not None:
                tick(len(chunk))
            if checker.done:
                break
    finally:
        if collecting:
            gc.enable()
    return checker.result()


class _RangeChecker:
    """The running state of one range: the rules of ``ChainChecker`` from its second row on."""

    def __init__(self, checkpoint_sizes: frozenset[int], mac_key: MacKey | None) -> None:
        self.out = RangeResult()
        self.sizes = sorted(checkpoint_sizes)
        self.mac = EntryMac(mac_key) if mac_key is not None else None
        self.n = 0  # the seq the next row must carry
        self.b = 0  # leaf index of the range's first entry
        self.last = ZERO_HASH
        self.before_last: bytes | None = None
        self.rows = 0
        self.forged_count = 0
        self.done = False

    def result(self) -> RangeResult:
        out = self.out
        out.rows, out.last, out.before_last = self.rows, self.last, self.before_last
        out.forged_count = self.forged_count
        return out

    def whole(self, chunk: Sequence[Sequence[Any]]) -> bool:
        """Take a whole batch when every row holds (the usual case), with list-wide checks.

        False, having taken nothing, when any row does not: ``careful`` then finds
        which and why.
        """
        n, k = self.n, len(chunk)
        if list(map(_SEQ, chunk)) != list(range(n, n + k)):
            return False
        try:
            leaves = leaves_from_rows(chunk)
        except (ValueError, TypeError):
            return False
        prevs = list(map(_PREV, chunk))
        if list(map(_STORED, chunk)) != leaves or prevs[0] != self.last or prevs[1:] != leaves[:-1]:
            return False
        self._take(leaves, prevs, list(map(_MAC, chunk)))
        return True

    def careful(self, chunk: Sequence[Sequence[Any]]) -> None:
        """Row by row, stopping at the first that breaks a rule (the range's finding)."""
        out = self.out
        for row in chunk:
            seq = row[0]
            n = self.n
            if self.rows and (seq != n or type(seq) is not int):
                out.problem = seq_problem(n, seq)
                self.done = True
                return
            try:
                canonical = canonical_from_row(row)
            except (ValueError, TypeError):
                # A JSON column no longer parses: bytes that cannot match the stored
                # hash let the rules classify and locate it like any other edit.
                canonical = UNPARSEABLE
            leaf = _sha256(b"\x00" + canonical).digest()
            prev, stored = as_bytes(row[13]), as_bytes(row[14])
            if not self.rows:
                # The seam row: only the join knows what it must follow.
                out.first_seq_taken = True
                out.first_seq, out.first_prev = seq, prev
                out.first_intact = leaf == stored
                if type(seq) is not int or seq < 1 or not out.first_intact:
                    self.rows = 1
                    self.done = True
                    return
                self.n, self.b = seq, seq - 1
            elif prev != self.last:
                out.problem = link_problem(n, prev, self.before_last, leaf == stored)
                self.done = True
                return
            elif leaf != stored:
                out.problem = edited_problem(n)
                self.done = True
                return
            self._take([leaf], [prev], [row[15]])

    def _take(self, leaves: list[bytes], prevs: list[bytes], macs: list[Any]) -> None:
        """Entries self.n.. hold: fold their leaves into the range's subtrees, check MACs."""
        n0 = self.n
        bad = self.mac.failures(n0, prevs, leaves, macs) if self.mac is not None else []
        sizes = self.sizes
        nodes, b = self.out.nodes, self.b
        # Fold the leaves in segments ending at checkpoint sizes: each size needs a snapshot.
        start, end = n0 - 1, n0 - 1 + len(leaves)  # leaf positions start..end-1
        i = bisect_left(sizes, n0)
        while start < end:
            at_size = i < len(sizes) and sizes[i] <= end
            cut = sizes[i] if at_size else end
            fold(nodes, b, start, leaves[start - n0 + 1 : cut - n0 + 1])
            if at_size:
                before = self.forged_count + bisect_left(bad, cut)
                self.out.snapshots.append((cut, list(nodes), before))
                i += 1
            start = cut
        forged = self.out.forged
        forged += bad[: max(0, MAX_LISTED - len(forged))]
        self.forged_count += len(bad)
        if len(leaves) >= 2:
            self.before_last = leaves[-2]
        else:
            self.before_last = self.last if self.rows else prevs[0]
        self.last = leaves[-1]
        self.rows += len(leaves)
        self.n = n0 + len(leaves)


def fold(nodes: list[bytes], b: int, start: int, run: list[bytes]) -> None:
    """Append leaves at positions start.. to ``nodes``, the subtrees of a range beginning at b.

    ``nodes`` are the roots of the aligned perfect subtrees covering leaves
    b..start-1, left to right: a node merges with its left sibling only while
    that sibling lies wholly inside the range. The new leaves are paired level
    by level, one list of hashes per level, rather than leaf by leaf: the same
    subtrees with fewer interpreted steps per leaf. At each level the run may
    first take the stack's top as its left sibling (which is then complete,
    inside the range, and on top), or find its first node's sibling outside the
    range (the node is final); its last node, when unpaired, waits for a right
    sibling that has not been read yet.
    """
    sha, one = _sha256, b"\x01"
    finals: list[bytes] = []  # left to right, at rising heights
    waiting: list[bytes] = []  # right to left, at rising heights
    s, h = start, 0  # run[0] is the node of index s at height h
    while run:
        if s & 1:
            if (s - 1) << h >= b:
                run = [nodes.pop(), *run]
                s -= 1
            else:
                finals.append(run[0])
                run = run[1:]
                s += 1
        if len(run) & 1:
            waiting.append(run[-1])
            run = run[:-1]
        pairs = zip(run[0::2], run[1::2], strict=True)
        run = [sha(one + left + right).digest() for left, right in pairs]
        s >>= 1
        h += 1
    nodes += finals
    nodes += reversed(waiting)


# -- joining ranges -----------------------------------------------------------------------


def subtree_heights(begin: int, end: int) -> list[int]:
    """Heights of the aligned perfect subtrees covering leaves begin..end-1, left to right.

    These are the subtrees ``check_range`` keeps: each as large as its alignment
    and the range's bounds allow.
    """
    out: list[int] = []
    pos = begin
    while pos < end:
        h = (pos & -pos).bit_length() - 1 if pos else (end - pos).bit_length()
        while pos + (1 << h) > end:
            h -= 1
        out.append(h)
        pos += 1 << h
    return out


@dataclass
class Joined:
    """The chain's verdict over all ranges, and the MAC failures before its first finding."""

    entries: int
    root: bytes
    problem: Problem | None
    forged: list[int]
    forged_count: int


def join(results: Sequence[RangeResult], checkpoints: Sequence[SignedCheckpoint]) -> Joined:
    """Fold range results in seq order into what a single sequential pass finds."""
    by_size = {cp.size: cp for cp in checkpoints if cp.size > 0}
    tree = CompactRange()
    count, matched = 0, 0
    last: bytes = ZERO_HASH
    before_last: bytes | None = None
    forged: list[int] = []
    forged_count = 0
    problem: Problem | None = None
    for res in results:
        if not res.first_seq_taken:
            continue  # no row in this range: a gap shows at the next row, or at the end
        n = count + 1
        if res.first_seq != n or type(res.first_seq) is not int:
            problem = seq_problem(n, res.first_seq)
            break
        if res.first_prev != last:
            problem = link_problem(n, res.first_prev, before_last, res.first_intact)
            break
        if not res.first_intact:
            problem = edited_problem(n)
            break
        for size, nodes, forged_before in res.snapshots:
            cp = by_size.get(size)
            if cp is None:
                continue  # a size claimed by a checkpoint row that is not signed
            at = _grow(tree, count, size, nodes)
            if not hmac.compare_digest(at.root(), cp.root):
                problem = checkpoint_problem(matched, size)
                forged += [s for s in res.forged if s < size]
                forged_count += forged_before
                return Joined(size, at.root(), problem, forged[:MAX_LISTED], forged_count)
            matched = size
        tree = _grow(tree, count, count + res.rows, res.nodes)
        forged += res.forged
        forged_count += res.forged_count
        before_last = res.before_last
        last = res.last
        count += res.rows
        if res.problem is not None:
            problem = res.problem
            break
    checked = {size for res in results for size, _n, _f in res.snapshots}
    if any(size <= count and size not in checked for size in by_size):
        # Every signed size a range reached must have been compared: never pass unchecked.
        raise AssertionError("a signed checkpoint was not compared")  # pragma: no cover
    if problem is None:
        unreached = [size for size in by_size if size > count]
        if unreached:
            problem = truncated_problem(count, max(unreached))
    return Joined(count, tree.root(), problem, forged[:MAX_LISTED], forged_count)


def _grow(tree: CompactRange, begin: int, end: int, nodes: Sequence[bytes]) -> CompactRange:
    """``tree`` (leaves 0..begin-1) extended by a range's subtrees covering begin..end-1."""
    heights = subtree_heights(begin, end)
    if tree.size != begin or len(heights) != len(nodes):
        raise AssertionError("range subtrees do not fit the tree")  # pragma: no cover
    stack = tree.hashes
    size = begin
    for h, node in zip(heights, nodes, strict=True):
        stack.append(node)
        carry = size >> h
        while carry & 1:
            right = stack.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + right).digest()
            carry >>= 1
        size += 1 << h
    return CompactRange(size, stack)


# -- running ranges in processes --------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(source: Source, counters: Any) -> None:
    _WORKER["source"], _WORKER["counters"] = source, counters
    _WORKER["own_process"] = True  # a process of the pool: SQLite is read through APSW


def _run_in_worker(
    index: int, lo: int | None, hi: int | None, sizes: frozenset[int]
) -> RangeResult:
    counters = _WORKER["counters"]

    def tick(rows: int) -> None:
        counters[index] += rows

    return check_range(_WORKER["source"], lo, hi, sizes, tick)


def _context() -> Any:
    """Fork where it is the platform's default (Linux): the workers start in milliseconds.

    A worker touches only this module, the database driver and hashing; it opens
    its own connection and never uses one inherited from the parent. Elsewhere
    the workers are spawned.
    """
    if sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")  # pragma: no cover - not Linux


def run_ranges(
    source: Source,
    bounds: Sequence[tuple[int | None, int | None]],
    checkpoint_sizes: frozenset[int],
    *,
    workers: int,
    progress: Callable[[int], None] | None = None,
    while_waiting: Callable[[], None] | None = None,
) -> list[RangeResult]:
    """Check every range, in ``workers`` processes (in this process when ``workers`` <= 1).

    ``while_waiting`` runs in this process once the workers have their ranges.
    """
    if workers <= 1:
        if while_waiting is not None:
            while_waiting()
        done = 0
        results = []
        for lo, hi in bounds:

            def tick(rows: int) -> None:
                nonlocal done
                done += rows
                if progress is not None:
                    progress(done)

            results.append(check_range(source, lo, hi, checkpoint_sizes, tick))
        return results
    ctx = _context()
    counters = ctx.Array("q", len(bounds), lock=False)
    with ProcessPoolExecutor(
        max_workers=min(workers, len(bounds)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(source, counters),
    ) as pool:
        futures: list[Future[RangeResult]] = [
            pool.submit(_run_in_worker, i, lo, hi, checkpoint_sizes)
            for i, (lo, hi) in enumerate(bounds)
        ]
        if while_waiting is not None:
            while_waiting()
        pending: set[Future[RangeResult]] = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if progress is not None:
                progress(sum(counters))
        return [f.result() for f in futures]


def default_workers() -> int:
    return os.cpu_count() or 1
