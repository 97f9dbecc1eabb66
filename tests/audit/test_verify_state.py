"""`audit verify --state`: a tail cut together with its checkpoints is still caught."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def _cli(*args: str, data: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_state_file_catches_a_tail_cut_with_its_checkpoints(tmp_path: Path) -> None:
    data, state = tmp_path / "var", tmp_path / "auditor-state.json"
    assert _cli("init", "--demo", data=data).returncode == 0
    assert _cli("seed", "--customers", "5", data=data).returncode == 0
    first = _cli("audit", "verify", "--state", str(state), data=data)
    assert first.returncode == 0, first.stderr
    assert state.exists()
    assert _cli("seed", "--customers", "5", data=data).returncode == 0
    grown = _cli("audit", "verify", "--state", str(state), data=data)
    assert grown.returncode == 0, grown.stderr  # the log grew consistently
    kept = state.read_text()
    # An attacker with the file removes the newest entries and every checkpoint covering them.
    conn = sqlite3.connect(data / "vault.db")
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DELETE FROM audit_entry WHERE seq > 2")
    conn.execute("DELETE FROM audit_checkpoint WHERE tree_size > 2")
    conn.commit()
    conn.close()
    # Without the state the cut looks whole: entries 1..2 and the checkpoints left all agree.
    alone = _cli("audit", "verify", data=data)
    assert alone.returncode == 0, alone.stderr
    assert "OK: 2 entries" in alone.stdout, alone.stdout
    cut = _cli("audit", "verify", "--state", str(state), data=data)
    assert cut.returncode == 1 and "FAILED" in cut.stderr
    assert "fewer than" in " ".join(cut.stderr.split()), cut.stderr
    assert state.read_text() == kept  # a failed run never advances the state
