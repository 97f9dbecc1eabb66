"""``archive-vault serve`` as a subprocess of a test: started, awaited, stopped.

Tests that need the real service (its process model, signals, sockets, its own
connections to the database) start it here rather than each with its own copy of
the start-wait-stop code. The service runs in a session of its own, so that
stopping it also stops its workers, even when the test killed the master.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parent.parent
CLI = (sys.executable, "-m", "cli.main")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_schema_url(schema: str, **params: str) -> str:
    """The test server's URL with ``schema`` as the search path (and libpq ``params``)."""
    sep = "&" if "?" in PG_URL else "?"
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}{extra}"


def vault_env(vault: Any, **extra: str) -> dict[str, str]:
    """The environment in which the CLI opens ``vault``: its data dir and its database
    (the SQLite file, or the test's PostgreSQL schema), plus ``extra`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env["VAULT_DATA_DIR"] = str(vault.settings.data_dir)
    env["PYTHONPATH"] = str(ROOT)
    if vault.engine.dialect.name == "postgresql":
        with vault.engine.connect() as conn:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        env["VAULT_DATABASE_URL"] = pg_schema_url(schema)
    else:
        env["VAULT_DATABASE_URL"] = vault.engine.url.render_as_string(hide_password=False)
    env.update(extra)
    return env


@dataclass
class Served:
    base: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """What the service wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (a graceful stop), then SIGKILL of the service's whole session."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # Workers outlive a master the test killed; the session holds only the service's processes.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def served_cli(
    data_dir: Path | str,
    *options: str,
    env: dict[str, str],
    command: Sequence[str] = CLI,
    cwd: Path | str = ROOT,
    log: Path | None = None,
    ready: Callable[[subprocess.Popen[bytes]], bool] | None = None,
    timeout: float = 120,
) -> Iterator[Served]:
    """Serve the vault in ``data_dir`` on a free port of 127.0.0.1 until the block ends.

    Yields once ``/healthz`` answers 200 (and ``ready(proc)`` holds, when given); fails
    the test with the service's output if it exits or never comes up. The block may
    signal or kill the process itself; whatever is left of it is stopped afterwards.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = log or Path(data_dir).parent / f"serve-{port}.log"
    cmd = [*command, "serve", "--port", str(port), "--data-dir", str(data_dir), *options]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = Served(base, port, proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}: {served.output()[-3000:]}")
            try:
                up = httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                up = False
            if up and (ready is None or ready(proc)):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the served vault did not come up: {served.output()[-3000:]}")
            time.sleep(0.1)
        yield served
    finally:
        stop(proc)
