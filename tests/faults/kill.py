"""Run the CLI (or the service) until a held point, kill it there with SIGKILL, look after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.served import ROOT

CLI = (sys.executable, "-m", "cli.main")
HELD_CLI = (sys.executable, "-m", "tests.faults.hold")


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``archive-vault ARGS``; with ``check``, it must succeed and print no traceback."""
    proc = subprocess.run(
        [*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, f"{args[:2]}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    return proc


def held_env(env: dict[str, str], marker: Path, target: str, **more: str) -> dict[str, str]:
    """``env`` for ``tests.faults.hold``: stop at ``target``, say so in ``marker``."""
    return {**env, "FAULT_HOLD": target, "FAULT_HOLD_FILE": str(marker), **more}


def wait_for(marker: Path, proc: subprocess.Popen[bytes] | None, timeout: float = 120) -> int:
    """The pid of the process that reached the held point (written into ``marker``)."""
    deadline = time.monotonic() + timeout
    while not (marker.exists() and marker.read_text().strip()):
        if proc is not None and proc.poll() is not None:
            said = proc.stderr.read()[-2000:] if proc.stderr else ""
            pytest.fail(f"the process ended (exit {proc.returncode}) before the held point: {said}")
        if time.monotonic() > deadline:
            pytest.fail(f"the held point was not reached within {timeout:.0f}s")
        time.sleep(0.05)
    return int(marker.read_text())


def kill_at_hold(env: dict[str, str], marker: Path, *args: str) -> None:
    """Run ``archive-vault ARGS`` under the hold in ``env`` and SIGKILL it there."""
    proc = subprocess.Popen(
        [*HELD_CLI, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(marker, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL


def kill_pid(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def audit_verifies(env: dict[str, str]) -> None:
    """``audit verify`` finds the log whole (exit 0, ``OK:``)."""
    out = cli(env, "audit", "verify")
    assert "OK:" in out.stdout, out.stdout


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path
