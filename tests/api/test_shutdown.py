"""A stop is bounded: ``serve --graceful-timeout`` cuts what a slow client has not finished."""

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

from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(vault) -> dict[str, str]:
    env = {**os.environ, "VAULT_DATA_DIR": str(vault.settings.data_dir), "PYTHONPATH": str(ROOT)}
    if vault.engine.dialect.name == "postgresql":
        with vault.engine.connect() as conn:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        env["VAULT_DATABASE_URL"] = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        env["VAULT_DATABASE_URL"] = vault.engine.url.render_as_string(hide_password=False)
    return env


def _stop_with_a_slow_upload_in_flight(vault, *options: str) -> float:
    """Seconds from SIGTERM to exit while a client is part-way through sending a body."""
    port = _free_port()
    cmd = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), *options]
    proc = subprocess.Popen(
        cmd, env=_env(vault), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail("serve exited before it served")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the served vault did not come up")
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(
                b"POST /auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 100000\r\n\r\nusername="
            )
            time.sleep(0.5)  # the request is in flight, its body far from complete
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                return float("inf")
            return time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_slow_upload_holds_a_stop_no_longer_than_the_graceful_timeout(vault) -> None:
    took = _stop_with_a_slow_upload_in_flight(vault, "--graceful-timeout", "2")
    assert took < 20, f"the stop took {took:.1f} s with a 2 s graceful timeout"


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_graceful_timeout_that_is_not_a_count_of_seconds_is_refused(vault, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--graceful-timeout", value],
        env=_env(vault),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--graceful-timeout" in proc.stderr and "Traceback" not in proc.stderr
