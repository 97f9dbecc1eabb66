"""A restored backup re-applies every destruction recorded in the (newer) audit log."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from audit.events import Actor
from foundation.db import checkpoint_sqlite
from foundation.settings import Settings
from vault.store import ArchiveStore
from vault.vault import open_vault


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


def test_destructions_are_reapplied_after_a_restore(tmp_path: Path) -> None:
    data = tmp_path / "var"
    assert _cli("init", "--demo", data=data).returncode == 0
    assert _cli("seed", "--customers", "4", data=data).returncode == 0
    backup = tmp_path / "backup.db"
    vault = open_vault(Settings(data_dir=data))

    checkpoint_sqlite(vault.engine)
    vault.engine.dispose()
    shutil.copy(data / "vault.db", backup)

    vault = open_vault(Settings(data_dir=data))
    store = ArchiveStore(vault)
    store.lifecycle.destroy(
        "KH-2026-000002", actor=Actor("chen.jing", "information_officer"), reason="保管期满"
    )
    vault.engine.dispose()
    bundle = tmp_path / "audit.json"
    assert _cli("audit", "export", "--out", str(bundle), data=data).returncode == 0

    for suffix in ("", "-wal", "-shm"):  # the restore: yesterday's database comes back
        Path(str(data / "vault.db") + suffix).unlink(missing_ok=True)
    shutil.copy(backup, data / "vault.db")
    restored = open_vault(Settings(data_dir=data))
    assert ArchiveStore(restored).reader.meta("KH-2026-000002").status == "active"
    restored.engine.dispose()

    forged = tmp_path / "forged.json"
    forged.write_text(bundle.read_text().replace("KH-2026-000002", "KH-2026-000003"))
    refused = _cli("reapply-destructions", str(forged), data=data)
    assert refused.returncode == 1 and "does not verify" in refused.stderr

    done = _cli("reapply-destructions", str(bundle), data=data)
    assert done.returncode == 0, done.stderr
    assert "re-destroyed 1 archive" in done.stdout and "KH-2026-000002" in done.stdout
    after = ArchiveStore(open_vault(Settings(data_dir=data)))
    assert after.reader.meta("KH-2026-000002").status == "destroyed"
    assert after.reader.meta("KH-2026-000003").status == "active"
    again = _cli("reapply-destructions", str(bundle), data=data)
    assert "re-destroyed 0 archive" in again.stdout and "1 already destroyed" in again.stdout
