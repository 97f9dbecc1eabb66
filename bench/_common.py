"""What the HTTP benchmarks share: loopback ports, a run's own database, server processes.

bench/api.py and bench/soak.py both start servers on 127.0.0.1, wait for them,
read their CPU from /proc and stop them; on PostgreSQL both work in a database
of their own that is dropped at the end, failed runs included.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (never a fixed one: the
    machine is shared, and a fixed port may be another run's server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until ``url`` answers below 500; fails at once if the server process exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def app_role_of(database: str) -> str:
    """The application role ``init`` creates for a database named like the runs' own
    (lower-case letters, digits and ``_``): ``<database>_app`` (``vault.migrate``)."""
    return f"{database[:59]}_app"


@contextmanager
def database(url: str, prefix: str = "bench_api") -> Iterator[str]:
    """A fresh PostgreSQL database beside ``url``'s for this run, dropped at the end; SQLite: ''.

    ``init`` creates a cluster-wide role named after the database; it is dropped
    with it, since nothing else can use a role named after a random database.
    """
    if not url:
        yield ""
        return
    if not url.startswith("postgresql"):
        raise ValueError("--database-url must be a postgresql+psycopg:// URL")
    name = f"{prefix}_{secrets.token_hex(4)}"
    role = app_role_of(name)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        admin.dispose()


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from /proc; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid: int) -> list[int]:
    """The direct children of a process (every thread's), from /proc; [] if it is gone."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of a server process and every process under it (uvicorn's workers)."""
    return proc_cpu(pid) + sum(tree_cpu(c) for c in children(pid))


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each (a graceful stop), then SIGKILL whatever is left after 10 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
