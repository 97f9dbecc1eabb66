"""Workers of ``serve --workers 2`` stop when their master is killed, instead of serving on."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from api.serving import exit_with_master
from tests.served import served_cli, vault_env


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit may wait for a reaper that never comes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_process_without_a_master_is_not_watched() -> None:
    assert exit_with_master() is False  # the test process is nobody's worker


def test_workers_stop_when_the_master_is_killed(vault) -> None:
    if vault.engine.dialect.name != "postgresql" or not Path("/proc/self/task").is_dir():
        pytest.skip("several workers need PostgreSQL (and /proc to find them)")

    def two_workers(master: subprocess.Popen[bytes]) -> bool:
        return len([p for p in _children(master.pid) if _running(p)]) >= 2

    data_dir = vault.settings.data_dir
    with served_cli(
        data_dir, "--workers", "2", env=vault_env(vault), ready=two_workers, timeout=180
    ) as served:
        master = served.proc
        workers = [p for p in _children(master.pid) if _running(p)]
        time.sleep(2)  # both workers have run the app factory by now
        os.kill(master.pid, signal.SIGKILL)
        master.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_running(p) for p in workers):
            time.sleep(0.2)
        assert not any(_running(p) for p in workers), "workers kept running without a master"
        with pytest.raises(httpx.HTTPError):
            httpx.get(served.base + "/healthz", timeout=2)
