"""Operators' commands keep working after junk checkpoint rows and forged entries are added.

Played on the embedded SQLite vault, where INSERT needs no privilege at all;
the same rows added as PostgreSQL's application role are in test_mac.py and
tests/api/test_audit_served.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from audit.codec import canonical_for_columns, format_time
from audit.merkle import leaf_hash


def _cli(*args: str, data: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=180,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _head(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT max(seq) FROM audit_entry").fetchone()[0]


def _add_junk_checkpoints(db: Path, sizes: list[int]) -> None:
    conn = sqlite3.connect(db)
    for i, size in enumerate(sizes):
        conn.execute(
            "INSERT INTO audit_checkpoint (note_hash, tree_size, root_hash, signed_at, note, "
            "frontier) VALUES (?, ?, ?, '2026-01-01T00:00:00.000000Z', ?, 'junk')",
            (bytes([i + 1]) * 32, size, bytes(32), f"not a note {i}"),
        )
    conn.commit()
    conn.close()


def _forge_read(db: Path) -> int:
    """A correctly hashed and linked read by a user who does not exist, without a MAC."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    head = dict(conn.execute("SELECT * FROM audit_entry ORDER BY seq DESC LIMIT 1").fetchone())
    row = dict(
        head,
        seq=head["seq"] + 1,
        time=format_time(datetime.now(UTC)),
        actor="ghost.user",
        actor_role="salesperson",
        action="archive:read",
        outcome="allowed",
        archives=json.dumps(["KH-2026-000001"]),
        groups=json.dumps(["contact"]),
        detail="{}",
        prev_hash=head["entry_hash"],
        mac=None,
    )
    row["entry_hash"] = leaf_hash(canonical_for_columns(row))
    names = ", ".join(row)
    conn.execute(
        f"INSERT INTO audit_entry ({names}) VALUES ({', '.join('?' for _ in row)})",
        list(row.values()),
    )
    conn.commit()
    conn.close()
    return int(row["seq"])


def test_junk_checkpoints_then_a_forged_entry_commands_keep_working(tmp_path: Path) -> None:
    data = tmp_path / "var"
    db = data / "vault.db"
    first = _cli("demo", "--no-serve", "--customers", "3", data=data)
    assert first.returncode == 0, first.stderr
    head = _head(db)
    _add_junk_checkpoints(db, [head + 1, head + 2, head + 3, 10**9])

    signed = _cli("audit", "checkpoint", data=data)
    assert signed.returncode == 0, signed.stderr
    added = _cli(  # activated by a one-time reset: the demo has a supervisor
        "user",
        "add",
        "new.sales",
        "--role",
        "salesperson",
        data=data,
    )
    assert added.returncode == 0, added.stderr
    assert "warning" not in added.stderr
    again = _cli("demo", "--no-serve", "--customers", "3", data=data)
    assert again.returncode == 0, again.stderr

    verified = _cli("audit", "verify", data=data)
    assert verified.returncode == 1
    failed = [line for line in verified.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 4 and all("skipped" in line for line in failed), verified.stderr
    assert "entry " not in verified.stderr  # no entry is blamed for the junk

    forged = _forge_read(db)
    verified = _cli("audit", "verify", data=data)
    assert verified.returncode == 1
    failed = [line for line in verified.stderr.splitlines() if line.startswith("FAILED")]
    assert failed[0].startswith(f"FAILED entry {forged}: its MAC does not verify"), failed
    assert len(failed) == 5 and "ghost.user" not in verified.stderr

    refused = _cli("audit", "checkpoint", data=data)
    assert refused.returncode == 2
    assert f"audit entry {forged} carries no valid MAC" in " ".join(refused.stderr.split())
    later = _cli(
        "user",
        "add",
        "later.sales",
        "--role",
        "salesperson",
        data=data,
    )
    assert later.returncode == 0, later.stderr  # the user is added; the operator is warned
    assert "not signed" in later.stderr and f"entry {forged}" in later.stderr
