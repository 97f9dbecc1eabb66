"""Workers of ``serve --workers 2`` stop when their master is killed, instead of serving on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.serving import exit_with_master
from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    with vault.engine.connect() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    port = _free_port()
    env = {
        **os.environ,
        "VAULT_DATA_DIR": str(vault.settings.data_dir),
        "VAULT_DATABASE_URL": f"{PG_URL}?options=-csearch_path%3D{schema}",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(port)]
    master = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    workers: list[int] = []
    try:
        for _ in range(1200):
            workers = [p for p in _children(master.pid) if _running(p)]
            try:
                up = httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            if up and len(workers) >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the served vault did not come up with two workers")
        time.sleep(2)  # both workers have run the app factory by now
        os.kill(master.pid, signal.SIGKILL)
        master.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_running(p) for p in workers):
            time.sleep(0.2)
        assert not any(_running(p) for p in workers), "workers kept running without a master"
        with pytest.raises(httpx.HTTPError):
            httpx.get(base + "/healthz", timeout=2)
    finally:
        if master.poll() is None:
            master.kill()
        for p in workers:
            if _running(p):
                os.kill(p, signal.SIGKILL)
