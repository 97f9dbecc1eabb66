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

Speed: a log of ``PARALLEL_FROM`` entries or more is split into seq ranges
checked by one worker process per core, each reading its own range from the
database, the seams and signed roots joined in order (``audit.verify_ranges``);
the checkpoint signatures are checked meanwhile. A smaller log is read here in
one pass. Either way rows are streamed through the raw driver cursor in batches
(no ORM objects, no per-row type processing) and the root is folded from
compact ranges, so memory stays O(log n) whatever the log's length. Both paths
give the same Report.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from audit.chain import ENTRY_HASH, MAC, PREV_HASH, ROWS_WITH_MAC, entry_batches
from audit.checkpoint import CheckpointError, SignedCheckpoint, open_checkpoint
from audit.codec import canonical_from_row
from audit.mac import EntryMac
from audit.models import checkpoint_table, entry_table
from audit.stored import as_bytes
from audit.verify import ChainChecker, Problem, Report
from audit.verify_ranges import (
    MAX_LISTED,
    UNPARSEABLE,
    Joined,
    Source,
    default_workers,
    forged_problem,
    join,
    run_ranges,
    seq_problem,
)

BATCH = 20_000
PARALLEL_FROM = 20_000  # entries; below this one process is quicker than starting workers
RANGES_PER_WORKER = 16  # short ranges: no core idles long for the other's last one
MAX_UNCHECKED_SIZES = 100_000  # checkpoint rows whose sizes go to the workers unverified
_REASON_CHARS = 200


def _checkpoint_rows(engine: Engine) -> list[Any]:
    stmt = sa.select(
        checkpoint_table.c.tree_size, checkpoint_table.c.root_hash, checkpoint_table.c.note
    ).order_by(checkpoint_table.c.tree_size)
    with engine.connect() as conn:
        return list(conn.execute(stmt).all())


def _open_checkpoints(
    rows: Sequence[Any], public_key: Ed25519PublicKey, origin: str
) -> tuple[list[SignedCheckpoint], list[Problem]]:
    """The valid checkpoints (one per size), and a problem for every row that is not.

    A row is trusted only when its note verifies against the log's key and its
    columns agree with the note. Any other row was written by someone without
    the key (anyone who may INSERT can add one): it is reported and skipped,
    so it can neither pass for the latest checkpoint nor stop verification.
    """
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
    # On SQLite a tampered seq may be text, which sorts after every number.
    return value if type(value) is int else 0


def verify_database(
    engine: Engine,
    *,
    public_key: Ed25519PublicKey,
    origin: str,
    progress: Callable[[int, int], None] | None = None,
    batch: int = BATCH,
    mac: EntryMac | None = None,
    workers: int | None = None,
    ranges: int | None = None,
) -> Report:
    """Verify every stored entry and checkpoint; the Report names the first bad entry.

    With ``mac`` (the key file's audit MAC key) every entry from its
    ``from_seq`` on must carry a valid MAC. An entry whose MAC fails does not
    stop the chain check: every such entry is reported (the first
    ``MAX_LISTED`` by seq), as is every checkpoint row that was skipped.

    A log of ``PARALLEL_FROM`` entries or more is checked in seq ranges by
    ``workers`` processes (default: one per core; ``audit.verify_ranges``);
    a smaller one, or ``workers=1``, in this process, entry by entry.
    ``ranges`` forces the ranged path with that many ranges (tests).
    The Report is the same either way.
    """
    rows = _checkpoint_rows(engine)
    total = head_seq(engine)
    n_workers = default_workers() if workers is None else workers
    source = _source(engine, mac) if ranges is not None or n_workers > 1 else None
    if source is not None and (ranges is not None or total >= PARALLEL_FROM):
        opened: list[tuple[list[SignedCheckpoint], list[Problem]]] = []

        def open_all() -> None:
            if not opened:
                opened.append(_open_checkpoints(rows, public_key, origin))

        # The workers take a snapshot at every size a checkpoint row claims, so the
        # signatures are checked while they run; only signed sizes are compared.
        sizes = frozenset(r[0] for r in rows if type(r[0]) is int and r[0] > 0)
        if len(sizes) > MAX_UNCHECKED_SIZES:  # rows nobody signed: do not let them cost memory
            open_all()
            sizes = frozenset(cp.size for cp in opened[0][0] if cp.size > 0)
        count = max(1, min(ranges or n_workers * RANGES_PER_WORKER, total))
        cuts = [total * i // count for i in range(1, count)]
        bounds = list(zip([None, *cuts], [*cuts, None], strict=True))

        def report_progress(done: int) -> None:
            if progress is not None:
                progress(min(done, total), total)

        results = run_ranges(
            source,
            bounds,
            sizes,
            workers=n_workers,
            progress=report_progress,
            while_waiting=open_all,
        )
        open_all()
        checkpoints, rejected = opened[0]
        chain = join(results, checkpoints)
    else:
        checkpoints, rejected = _open_checkpoints(rows, public_key, origin)
        chain = _verify_serial(engine, checkpoints, total, batch, mac, progress=progress)
    latest = checkpoints[-1] if checkpoints else None
    report = Report(
        ok=chain.problem is None,
        entries=chain.entries,
        checkpoints=len(checkpoints),
        root=chain.root,
        latest_checkpoint=latest,
        problem=chain.problem,
    )
    forged = [forged_problem(seq) for seq in chain.forged]
    found = forged + ([report.problem] if report.problem is not None else [])
    # By entry; at one entry the chain's finding (what was done) before the MAC's.
    found.sort(key=lambda p: (p.seq if p.seq is not None else total + 2, p.kind == "forged"))
    report.problems = found + rejected
    report.problem = report.problems[0] if report.problems else None
    report.ok = not report.problems
    if mac is None:
        report.notes.append("entry MACs not checked: this key file has no audit MAC key")
    else:
        from_seq = mac.from_seq
        unmaced = min(report.entries, from_seq - 1)
        if unmaced > 0:
            report.notes.append(
                f"entries 1..{unmaced} were written before this vault had its audit MAC key: "
                "they carry no MAC (the chain and the signed checkpoints still cover them)"
            )
        if report.entries > unmaced:
            report.notes.append(f"MACs checked for entries {unmaced + 1}..{report.entries}")
        if chain.forged_count > len(forged):
            report.notes.append(
                f"{chain.forged_count} entries in all fail their MAC; "
                f"the first {len(forged)} are listed"
            )
    return report


def _verify_serial(
    engine: Engine,
    checkpoints: list[SignedCheckpoint],
    total: int,
    batch: int,
    mac: EntryMac | None,
    *,
    progress: Callable[[int, int], None] | None,
) -> Joined:
    """One pass in seq order through ``ChainChecker``: the reference the ranged path matches."""
    checker = ChainChecker(checkpoints)
    add = checker.add
    check = mac.check if mac is not None else None
    from_seq = mac.from_seq if mac is not None else 0
    forged: list[int] = []
    forged_count = 0
    done = 0
    problem: Problem | None = None
    with closing(entry_batches(engine, batch, ROWS_WITH_MAC)) as batches:
        for chunk in batches:
            for row in chunk:
                seq = row[0]
                if type(seq) is not int:
                    problem = seq_problem(checker.count + 1, seq)
                    break
                try:
                    canonical = canonical_from_row(row)
                except (ValueError, TypeError):
                    # A JSON column no longer parses: bytes that cannot match the stored
                    # hash let the checker classify and locate it like any other edit.
                    canonical = UNPARSEABLE
                prev, stored = as_bytes(row[PREV_HASH]), as_bytes(row[ENTRY_HASH])
                if not add(seq, canonical, prev, stored):
                    break
                # The checker accepted the entry, so ``stored`` is its recomputed leaf.
                if check is not None and seq >= from_seq and not check(seq, prev, stored, row[MAC]):
                    forged_count += 1
                    if len(forged) < MAX_LISTED:
                        forged.append(seq)
            done += len(chunk)
            if progress is not None:
                progress(min(done, total), total)
            if checker.problem is not None or problem is not None:
                break
    report = checker.finish() if problem is None else None
    if report is not None:
        problem = report.problem
    return Joined(checker.count, checker.range.root(), problem, forged, forged_count)


def _source(engine: Engine, mac: EntryMac | None) -> Source | None:
    """How a worker process reaches this database, or None when it cannot (in-memory SQLite).

    A PostgreSQL worker connects with the engine's own connect arguments and
    the session's search_path; a log with a NULL seq (possible only on SQLite,
    where the primary key allows it) is left to the single-process path.
    """
    key = mac.key if mac is not None else None
    if key is not None and key.key is None:
        return None  # an HSM-held MAC key cannot be handed to worker processes
    url = engine.url
    if engine.dialect.name == "sqlite":
        path = url.database or ""
        if not path or path == ":memory:" or path.startswith("file:") or not Path(path).is_file():
            return None
        with engine.connect() as conn:
            has_null = conn.execute(
                sa.select(entry_table.c.seq).where(entry_table.c.seq.is_(None)).limit(1)
            ).first()
        if has_null is not None:
            return None
        return Source("sqlite", path=path, mac_key=key)
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        _args, kwargs = engine.dialect.create_connect_args(url)
        with engine.connect() as conn:
            search_path = conn.exec_driver_sql("SELECT current_setting('search_path')").scalar()
        return Source(
            "postgresql", connect_kwargs=dict(kwargs), search_path=str(search_path), mac_key=key
        )
    return None
