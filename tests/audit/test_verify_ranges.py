"""The log verified in seq ranges (worker processes, seams joined) finds what one pass finds.

Every test compares the ranged verifier, with several range counts and once
with real worker processes, against the single-process path on the same
database, and checks where the finding is. The log has 45 entries and
checkpoints at 7, 11, 12, 30 and 45; with 4 ranges the seams fall after
entries 11, 22 and 33 (a checkpoint at the last entry of a range, one at the
first entry of the next).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit import verify_db, verify_ranges
from audit.codec import canonical_for_columns
from audit.log import AuditLog
from audit.merkle import leaf_hash
from audit.verify import Report, verify_bundle
from audit.verify_db import verify_database
from foundation.db import make_engine

from .conftest import _unguarded, append_n

N = 45
CHECKPOINTS = (7, 11, 12, 30, 45)
RANGE_COUNTS = (2, 3, 4, 7, 45, 60)
_COLUMNS = (
    "seq, time, actor, actor_role, action, outcome, archives, groups, grant_id, purpose, "
    "reason, client, detail, prev_hash, entry_hash, mac"
)


@pytest.fixture
def built(log: AuditLog) -> AuditLog:
    done = 0
    for size in CHECKPOINTS:
        append_n(log, size - done, start=done)
        done = size
        assert log.checkpoint() is not None
    return log


def _verify(log: AuditLog, engine: sa.Engine | None = None, **kw: Any) -> Report:
    return verify_database(
        engine or log.engine,
        public_key=log.public_key,
        origin=log.origin,
        mac=log.entry_mac(),
        **kw,
    )


def _same_everywhere(log: AuditLog, engine: sa.Engine | None = None) -> Report:
    """The single-process Report, after checking every ranged run gives it too."""
    serial = _verify(log, engine, workers=1)
    for ranges in RANGE_COUNTS:
        assert _verify(log, engine, workers=1, ranges=ranges) == serial, ranges
    assert _verify(log, engine, workers=2, ranges=4) == serial, "worker processes"
    batch, verify_ranges.BATCH = verify_ranges.BATCH, 4  # batch seams inside each range
    try:
        assert _verify(log, engine, workers=1, ranges=3) == serial, "small batches"
    finally:
        verify_ranges.BATCH = batch
    return serial


def _found(report: Report) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in report.all_problems()]


def _rows(engine: sa.Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM audit_entry ORDER BY seq"))
        return {r["seq"]: dict(r) for r in rows.mappings()}


def _sql(engine: sa.Engine, *statements: str, **params: Any) -> None:
    with _unguarded(engine) as conn:
        for sql in statements:
            conn.execute(sa.text(sql), params)


def _renumber(engine: sa.Engine, first: int, by: int) -> None:
    """Shift entries first.. by ``by`` (through a high range: seq is the primary key)."""
    _sql(
        engine,
        "UPDATE audit_entry SET seq = seq + 100000 WHERE seq >= :first",
        f"UPDATE audit_entry SET seq = seq - 100000 + {by} WHERE seq >= 100000",
        first=first,
    )


def _rewrite_from(engine: sa.Engine, seq: int) -> None:
    """Edit entry ``seq`` and recompute the chain after it (no MAC key, no signing key)."""
    rows = _rows(engine)
    prev = rows[seq - 1]["entry_hash"]
    with _unguarded(engine) as conn:
        for s in range(seq, max(rows) + 1):
            row = rows[s]
            if s == seq:
                row["actor"] = "mallory"
            row["prev_hash"] = prev
            row["entry_hash"] = prev = leaf_hash(canonical_for_columns(row))
            conn.execute(
                sa.text(
                    "UPDATE audit_entry SET actor = :actor, prev_hash = :prev_hash, "
                    "entry_hash = :entry_hash WHERE seq = :seq"
                ),
                row,
            )


def test_clean_log(built: AuditLog) -> None:
    report = _same_everywhere(built)
    assert report.ok and report.entries == N and report.checkpoints == len(CHECKPOINTS)


@pytest.mark.parametrize("seq", [1, 6, 11, 12, 22, 23, 34, 45])
def test_edited_entry_in_any_range(built: AuditLog, seq: int) -> None:
    _sql(built.engine, "UPDATE audit_entry SET purpose = 'other' WHERE seq = :s", s=seq)
    assert _found(_same_everywhere(built))[0] == ("edited", seq)


@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        (22, [("edited", 22), ("forged", 22)]),  # the last entry of a range
        (23, [("edited", 23), ("forged", 23)]),  # the first
        (11, [("checkpoint", 8)]),  # signed at 11: the root no longer matches
        (12, [("checkpoint", 12)]),
    ],
)
def test_edited_entry_with_its_hash_recomputed(
    built: AuditLog, seq: int, expected: list[tuple[str, int]]
) -> None:
    row = _rows(built.engine)[seq]
    row["actor"] = "mallory"
    _sql(
        built.engine,
        "UPDATE audit_entry SET actor = 'mallory', entry_hash = :h WHERE seq = :s",
        h=leaf_hash(canonical_for_columns(row)),
        s=seq,
    )
    assert _found(_same_everywhere(built)) == expected


@pytest.mark.parametrize("seq", [1, 11, 12, 23, 44])
def test_deleted_entry(built: AuditLog, seq: int) -> None:
    _sql(built.engine, "DELETE FROM audit_entry WHERE seq = :s", s=seq)
    assert _found(_same_everywhere(built))[0] == ("missing", seq)


def test_deleted_range_leaves_a_range_empty(built: AuditLog) -> None:
    _sql(built.engine, "DELETE FROM audit_entry WHERE seq BETWEEN 12 AND 22")
    assert _found(_same_everywhere(built)) == [("missing", 12)]


def test_deleted_entry_with_the_tail_renumbered(built: AuditLog) -> None:
    _sql(built.engine, "DELETE FROM audit_entry WHERE seq = 12")
    _renumber(built.engine, 13, -1)
    assert _found(_same_everywhere(built))[0] == ("replaced", 12)


@pytest.mark.parametrize("first", [11, 22, 5])
def test_reordered_pair(built: AuditLog, first: int) -> None:
    """Entries ``first`` and ``first + 1`` swapped: across a seam at 11 and 22."""
    _sql(
        built.engine,
        "UPDATE audit_entry SET seq = 100000 WHERE seq = :a",
        "UPDATE audit_entry SET seq = :a WHERE seq = :b",
        "UPDATE audit_entry SET seq = :b WHERE seq = 100000",
        a=first,
        b=first + 1,
    )
    kind, seq = _found(_same_everywhere(built))[0]
    assert seq == first and kind in ("replaced", "edited")


def test_inserted_entry_at_a_seam(built: AuditLog) -> None:
    """A correctly hashed entry 12 linked to 11, the tail renumbered: found at 12."""
    rows = _rows(built.engine)
    forged = dict(rows[11], seq=12, actor="ghost", prev_hash=rows[11]["entry_hash"], mac=None)
    forged["entry_hash"] = leaf_hash(canonical_for_columns(forged))
    _renumber(built.engine, 12, 1)
    params = ", ".join(f":{c.strip()}" for c in _COLUMNS.split(","))
    _sql(built.engine, f"INSERT INTO audit_entry ({_COLUMNS}) VALUES ({params})", **forged)
    assert _found(_same_everywhere(built))[0][1] == 12


@pytest.mark.parametrize("seqs", [[5], [5, 12, 30], [11, 12, 45]])
def test_bad_mac_anywhere(built: AuditLog, seqs: list[int]) -> None:
    for s in seqs:
        _sql(built.engine, "UPDATE audit_entry SET mac = :m WHERE seq = :s", m=b"\x01" * 32, s=s)
    assert _found(_same_everywhere(built)) == [("forged", s) for s in seqs]


def test_mac_failures_after_the_first_bad_entry_are_not_counted(built: AuditLog) -> None:
    for s in (5, 20, 40):
        _sql(built.engine, "UPDATE audit_entry SET mac = NULL WHERE seq = :s", s=s)
    _sql(built.engine, "UPDATE audit_entry SET purpose = 'x' WHERE seq = 25")
    assert _found(_same_everywhere(built)) == [("forged", 5), ("forged", 20), ("edited", 25)]


def test_truncated_tail_after_a_checkpoint(built: AuditLog) -> None:
    _sql(built.engine, "DELETE FROM audit_entry WHERE seq > 40")
    report = _same_everywhere(built)
    assert _found(report) == [("truncated", 41)] and report.entries == 40


@pytest.mark.parametrize("seq", [13, 25, 31])
def test_rewritten_chain_against_the_signed_root(built: AuditLog, seq: int) -> None:
    """Hashes recomputed from ``seq`` on: the next signed root no longer matches."""
    _rewrite_from(built.engine, seq)
    report = _same_everywhere(built)
    first_bad = next(size for size in CHECKPOINTS if size >= seq)
    matched = max(size for size in CHECKPOINTS if size < seq)
    assert report.problem is not None
    assert ("checkpoint", matched + 1) in _found(report)
    assert report.entries == first_bad
    # The rewritten entries before that checkpoint fail their MAC; none after it is counted.
    assert [s for k, s in _found(report) if k == "forged"] == list(range(seq, first_bad))


def test_more_ranges_than_entries_and_an_empty_log(log: AuditLog) -> None:
    assert _same_everywhere(log).entries == 0
    append_n(log, 3)
    assert _same_everywhere(log).ok


def test_large_log_uses_worker_processes(built: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = verify_db.run_ranges

    def spy(*args: Any, **kw: Any) -> Any:
        calls.append(kw["workers"])
        return real(*args, **kw)

    monkeypatch.setattr(verify_db, "run_ranges", spy)
    monkeypatch.setattr(verify_db, "PARALLEL_FROM", 40)
    assert _verify(built, workers=2).ok
    assert calls == [2]
    monkeypatch.setattr(verify_db, "PARALLEL_FROM", 46)
    assert _verify(built, workers=2).ok
    assert calls == [2]  # below the threshold: one process


def test_progress_reaches_the_total(built: AuditLog) -> None:
    seen: list[tuple[int, int]] = []
    _verify(built, workers=2, ranges=4, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (N, N)


# -- random damage, SQLite copies of one log ------------------------------------------------

_DAMAGE = st.lists(
    st.tuples(
        st.sampled_from(["edit", "delete", "swap", "mac", "truncate", "json", "link"]),
        st.integers(1, N),
    ),
    min_size=0,
    max_size=3,
)


def _stored_rows(path: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT * FROM audit_entry ORDER BY seq").fetchall()


def _damage(path: Path, ops: list[tuple[str, int]]) -> None:
    conn = sqlite3.connect(path)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    for op, seq in ops:
        if op == "edit":
            conn.execute("UPDATE audit_entry SET reason = 'edited' WHERE seq = ?", (seq,))
        elif op == "delete":
            conn.execute("DELETE FROM audit_entry WHERE seq = ?", (seq,))
        elif op == "swap":
            conn.execute("UPDATE audit_entry SET seq = -1 WHERE seq = ?", (seq,))
            conn.execute("UPDATE audit_entry SET seq = ? WHERE seq = ?", (seq, seq + 1))
            conn.execute("UPDATE audit_entry SET seq = ? WHERE seq = -1", (seq + 1,))
        elif op == "mac":
            conn.execute("UPDATE audit_entry SET mac = zeroblob(32) WHERE seq = ?", (seq,))
        elif op == "truncate":
            conn.execute("DELETE FROM audit_entry WHERE seq >= ?", (seq,))
        elif op == "json":
            conn.execute("UPDATE audit_entry SET detail = '{\"a\": 1}' WHERE seq = ?", (seq,))
        else:
            conn.execute("UPDATE audit_entry SET prev_hash = zeroblob(32) WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=_DAMAGE, ranges=st.integers(1, 12))
@example(ops=[("swap", N), ("edit", N), ("swap", N)], ranges=1)  # damage that cancels out
def test_random_damage_same_report(
    built: AuditLog, tmp_path: Path, ops: list[tuple[str, int]], ranges: int
) -> None:
    source = Path(str(built.engine.url.database))
    copy = tmp_path / f"copy-{abs(hash((tuple(ops), ranges)))}.db"
    with sqlite3.connect(source) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    try:
        before = _stored_rows(copy)
        _damage(copy, ops)
        engine = make_engine(f"sqlite:///{copy}")
        try:
            serial = _verify(built, engine, workers=1)
            assert _verify(built, engine, workers=1, ranges=ranges) == serial
            # Damage that cancels out (the last entry moved past the end, "edited" where no
            # row stands, and moved back) leaves the log as it was: nothing to report.
            changed = _stored_rows(copy) != before
            if changed and {op for op, _seq in ops} & {"edit", "delete", "json", "mac", "truncate"}:
                assert not serial.ok
            if not changed:
                assert serial.ok
        finally:
            engine.dispose()
    finally:
        for p in tmp_path.glob(copy.name + "*"):
            p.unlink()


def test_bundle_still_verifies_offline(built: AuditLog) -> None:
    out = StringIO()
    built.export_bundle(out)
    assert verify_bundle(json.loads(out.getvalue())).ok
    assert _same_everywhere(built).root == verify_bundle(json.loads(out.getvalue())).root
