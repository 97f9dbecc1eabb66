"""Each kind of tampering, done directly in the database past the guards, is found and located.

The attacker here has the database but not the signing key: they can rewrite
rows and even recompute stored hashes, but cannot sign a new checkpoint.
"""

from __future__ import annotations

import io

import pytest

from audit.codec import canonical_for_columns
from audit.errors import AuditWriteFailed
from audit.log import AuditLog
from audit.merkle import leaf_hash
from audit.stored import OUTCOME_CODES, time_micros

from .conftest import append_n


def _problem(log: AuditLog) -> tuple[str, int | None]:
    report = log.verify()
    assert not report.ok
    assert report.problem is not None
    return report.problem.kind, report.problem.seq


def test_untouched_log_verifies(filled: AuditLog) -> None:
    report = filled.verify()
    assert report.ok and report.entries == 20 and report.checkpoints == 2


def test_edited_entry(filled: AuditLog, tamper) -> None:
    tamper(filled.engine, "UPDATE audit_entry SET actor = 'mallory' WHERE seq = 5")
    assert _problem(filled) == ("edited", 5)


def test_edited_json_column(filled: AuditLog, tamper) -> None:
    tamper(filled.engine, "UPDATE audit_entry SET archives = '[\"KH-99999\"' WHERE seq = 6")
    assert _problem(filled) == ("edited", 6)


def test_edited_entry_with_recomputed_hash(filled: AuditLog, tamper) -> None:
    with filled.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT * FROM audit_entry WHERE seq = 5").mappings().one()
    cols = dict(row)
    cols["actor"] = "mallory"
    new_hash = leaf_hash(canonical_for_columns(cols))
    tamper(
        filled.engine,
        "UPDATE audit_entry SET actor = 'mallory', entry_hash = :h WHERE seq = 5",
        h=new_hash,
    )
    assert _problem(filled) == ("edited", 5)


def test_deleted_entry(filled: AuditLog, tamper) -> None:
    tamper(filled.engine, "DELETE FROM audit_entry WHERE seq = 9")
    assert _problem(filled) == ("missing", 9)


def test_deleted_entry_with_renumbered_tail(filled: AuditLog, tamper) -> None:
    tamper(
        filled.engine,
        "DELETE FROM audit_entry WHERE seq = 9",
        "UPDATE audit_entry SET seq = seq + 1000 WHERE seq > 9",
        "UPDATE audit_entry SET seq = seq - 1001 WHERE seq > 1000",
    )
    assert _problem(filled) == ("replaced", 9)


def test_reordered_pair(filled: AuditLog, tamper) -> None:
    tamper(
        filled.engine,
        "UPDATE audit_entry SET seq = 1000 WHERE seq = 11",
        "UPDATE audit_entry SET seq = 11 WHERE seq = 12",
        "UPDATE audit_entry SET seq = 12 WHERE seq = 1000",
    )
    kind, seq = _problem(filled)
    assert seq == 11 and kind in ("replaced", "edited")


def test_inserted_entry_with_valid_hashes(filled: AuditLog, tamper) -> None:
    """A forged entry 4 linked to entry 3, the tail renumbered: found at 4."""
    with filled.engine.connect() as conn:
        three = conn.exec_driver_sql("SELECT * FROM audit_entry WHERE seq = 3").mappings().one()
    forged = dict(three)
    forged.update(seq=4, actor="mallory", prev_hash=three["entry_hash"])
    forged["entry_hash"] = leaf_hash(canonical_for_columns(forged))
    tamper(
        filled.engine,
        "UPDATE audit_entry SET seq = seq + 1000 WHERE seq >= 4",
        "UPDATE audit_entry SET seq = seq - 999 WHERE seq > 1000",
        "INSERT INTO audit_entry (seq, time, actor, actor_role, action, outcome, archives, "
        "groups, grant_id, purpose, reason, client, detail, prev_hash, entry_hash) VALUES "
        "(:seq, :time, :actor, :actor_role, :action, :outcome, :archives, :groups, :grant_id, "
        ":purpose, :reason, :client, :detail, :prev_hash, :entry_hash)",
        **forged,
    )
    assert _problem(filled) == ("inserted", 4)


def test_inserted_entry_without_valid_hash(filled: AuditLog, tamper) -> None:
    tamper(
        filled.engine,
        "UPDATE audit_entry SET seq = seq + 1000 WHERE seq >= 4",
        "UPDATE audit_entry SET seq = seq - 999 WHERE seq > 1000",
        "INSERT INTO audit_entry SELECT 4, time, 'mallory', actor_role, action, outcome, "
        "archives, groups, grant_id, purpose, reason, client, detail, prev_hash, entry_hash, "
        "mac FROM audit_entry WHERE seq = 5",
    )
    _kind, seq = _problem(filled)
    assert seq == 4


def test_truncated_tail(filled: AuditLog, tamper) -> None:
    tamper(filled.engine, "DELETE FROM audit_entry WHERE seq > 14")
    kind, seq = _problem(filled)
    assert (kind, seq) == ("truncated", 15)
    assert "20" in filled.verify().problem.message


def test_tail_rewritten_with_consistent_hashes_is_caught_by_the_checkpoint(
    filled: AuditLog, tamper
) -> None:
    """Rewrite 10..20 and every hash after: only the signed root at 20 can tell."""
    with filled.engine.connect() as conn:
        rows = [
            dict(r)
            for r in conn.exec_driver_sql(
                "SELECT * FROM audit_entry WHERE seq >= 9 ORDER BY seq"
            ).mappings()
        ]
    prev = rows[0]["entry_hash"]
    updates = []
    for row in rows[1:]:
        row.update(actor="mallory", prev_hash=prev)
        row["entry_hash"] = prev = leaf_hash(canonical_for_columns(row))
        updates.append(row)
    for row in updates:
        tamper(
            filled.engine,
            "UPDATE audit_entry SET actor = :actor, prev_hash = :prev_hash, "
            "entry_hash = :entry_hash WHERE seq = :seq",
            **row,
        )
    kind, seq = _problem(filled)
    assert (kind, seq) == ("checkpoint", 9)  # located to the range after the last good checkpoint


def test_forged_checkpoint_is_rejected(filled: AuditLog, tamper) -> None:
    tamper(filled.engine, "UPDATE audit_checkpoint SET note = replace(note, '\n20\n', '\n21\n')")
    kind, _ = _problem(filled)
    assert kind == "checkpoint"


@pytest.mark.parametrize("column", ["time", "purpose", "client", "outcome", "prev_hash"])
def test_every_hashed_column_is_covered(filled: AuditLog, tamper, column: str) -> None:
    value = {
        "time": str(time_micros("2020-01-01T00:00:00.000000Z")),  # as stored (audit.stored)
        "purpose": "'other'",
        "client": "'10.9.9.9'",
        "outcome": str(OUTCOME_CODES["denied"]),
        "prev_hash": "entry_hash",
    }[column]
    tamper(filled.engine, f"UPDATE audit_entry SET {column} = {value} WHERE seq = 7")
    _kind, seq = _problem(filled)
    assert seq == 7


# An integer this large, given to bytes(), would ask for exabytes of zeros.
_HUGE = 9_000_000_000_000_000_000


@pytest.mark.parametrize("column", ["prev_hash", "entry_hash"])
def test_an_integer_in_a_hash_column_is_an_edit_not_a_memory_error(
    filled: AuditLog, tamper, column: str
) -> None:
    """A SQLite column holds whatever is written into it: a hash replaced by a huge
    integer is located as an edit by both verifiers and the bundle export, never
    turned into an allocation of that many bytes."""
    if filled.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's bytea column holds only bytes")
    tamper(filled.engine, f"UPDATE audit_entry SET {column} = {_HUGE} WHERE seq = 7")
    _kind, seq = _problem(filled)
    assert seq in (7, 8)  # a bad prev_hash is seen at 7; a bad stored hash breaks 8's link
    ranges = filled.verify(workers=2)
    assert not ranges.ok and ranges.problem is not None and ranges.problem.seq == seq
    bundle = io.StringIO()
    filled.export_bundle(bundle)  # exported as found, for the offline verifier to name
    assert '"seq":7' in bundle.getvalue().replace(" ", "")


def test_an_integer_for_the_newest_hash_stops_appends(filled: AuditLog, tamper) -> None:
    """Nothing is chained after a head whose hash is not a hash."""
    if filled.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's bytea column holds only bytes")
    tamper(filled.engine, f"UPDATE audit_entry SET entry_hash = {_HUGE} WHERE seq = 20")
    with pytest.raises(AuditWriteFailed, match="holds no valid hash"):
        append_n(filled, 1, start=20)
    assert filled.head() == 20
    _kind, seq = _problem(filled)
    assert seq == 20
