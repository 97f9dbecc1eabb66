"""A stop is bounded: ``serve --graceful-timeout`` cuts what a slow client has not finished."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.served import ROOT, served_cli, vault_env


def _stop_with_a_slow_upload_in_flight(vault, *options: str) -> float:
    """Seconds from SIGTERM to exit while a client is part-way through sending a body."""
    data_dir = vault.settings.data_dir
    with (
        served_cli(data_dir, *options, env=vault_env(vault)) as served,
        socket.create_connection(("127.0.0.1", served.port)) as slow,
    ):
        slow.sendall(
            b"POST /auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100000\r\n\r\nusername="
        )
        time.sleep(0.5)  # the request is in flight, its body far from complete
        start = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        try:
            served.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return float("inf")
        return time.monotonic() - start


def test_a_slow_upload_holds_a_stop_no_longer_than_the_graceful_timeout(vault) -> None:
    took = _stop_with_a_slow_upload_in_flight(vault, "--graceful-timeout", "2")
    assert took < 20, f"the stop took {took:.1f} s with a 2 s graceful timeout"


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_graceful_timeout_that_is_not_a_count_of_seconds_is_refused(vault, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--graceful-timeout", value],
        env=vault_env(vault),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--graceful-timeout" in proc.stderr and "Traceback" not in proc.stderr
