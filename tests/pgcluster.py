"""A private, throwaway PostgreSQL cluster that a test may crash: start, SIGKILL, restart, stop.

Tests of what survives a database crash cannot use the shared server of
``VAULT_TEST_DATABASE_URL``: other test runs use it, and killing it would crash
them too. ``PgCluster`` runs its own ``initdb``/``postgres`` from Debian's
binaries in a temporary directory, on 127.0.0.1 at a free port, with its Unix
socket in that directory and trust authentication, and with the durability
settings left on (``fsync``, ``synchronous_commit``, ``full_page_writes``): a
commit the server acknowledged must survive ``kill()``.

``initdb`` and ``postgres`` refuse to run as root, so under root they run as
the ``postgres`` account and the directory is handed to it. The directory is
made with ``tempfile`` under the system's temporary directory rather than under
pytest's ``tmp_path``: the latter's parents are private to root, so the
``postgres`` account could not reach a data directory there.

``kill()`` mimics a crash of the database machine's processes: SIGKILL to the
postmaster, then to every process left in its process group (the backends,
the WAL writer, the checkpointer), so none of them writes another byte.
``restart()`` starts the server again on the same data directory, which runs
crash recovery before it accepts connections.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

PG_BIN_ENV = "VAULT_TEST_PG_BIN"
REQUIRE_ENV = "VAULT_REQUIRE_PG_CLUSTER"  # set by CI: a missing server fails, never skips
START_TIMEOUT = 60.0


def _major(bin_dir: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in bin_dir.parent.name.split("."))
    except ValueError:
        return ()


DEFAULT_PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major, reverse=True)


def find_bin_dir() -> Path | None:
    """Where ``initdb``, ``postgres`` live: ``$VAULT_TEST_PG_BIN`` or Debian's newest; None if absent."""
    candidates = [Path(os.environ[PG_BIN_ENV])] if os.environ.get(PG_BIN_ENV) else DEFAULT_PG_BINS
    for bin_dir in candidates:
        if all((bin_dir / name).is_file() for name in ("initdb", "postgres")):
            return bin_dir
    return None


def unavailable_reason() -> str | None:
    """Why a private cluster cannot run here (for ``pytest.skip``), or None when it can."""
    if find_bin_dir() is None:
        return (
            "no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin "
            f"or ${PG_BIN_ENV}"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' account to run initdb as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One private cluster; use ``running_cluster()`` so that it is always cleaned up."""

    def __init__(self, *, bin_dir: Path | None = None, extra: dict[str, str] | None = None) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL binaries")
        self.bin_dir = found
        self.extra = dict(extra or {})
        self.root = Path(tempfile.mkdtemp(prefix="vault-pgcluster-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self._account: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._account = pwd.getpwnam("postgres")
            os.chown(self.root, self._account.pw_uid, self._account.pw_gid)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database, as the superuser."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """The running postmaster's pid."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def _run_as_owner(self) -> dict[str, Any]:
        if self._account is None:
            return {}
        return {
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
        }

    def _env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env["HOME"] = str(self.root)
        return env

    def start(self) -> None:
        """Create the cluster (first call) and start its server; returns once it accepts."""
        if not self.data.exists():
            self.sockets.mkdir()
            if self._account is not None:
                os.chown(self.sockets, self._account.pw_uid, self._account.pw_gid)
            done = subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    f"--pgdata={self.data}",
                    "--username=postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    # initdb's own final fsync of the new files: irrelevant to a process
                    # crash and slow on a busy disk. The server below keeps fsync on.
                    "--no-sync",
                ],
                capture_output=True,
                check=False,
                cwd=self.root,
                env=self._env(),
                **self._run_as_owner(),
            )
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{done.stdout!r}\n{done.stderr!r}")
        self._spawn()

    def _spawn(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.sockets),
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "max_connections": "60",
            "shared_buffers": "32MB",
            "logging_collector": "off",
            **self.extra,
        }
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        log = self.log_path.open("ab")
        try:
            # Its own session: the postmaster leads a process group holding all its children.
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._env(),
                start_new_session=True,
                **self._run_as_owner(),
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start-up:\n{self.log_tail()}")
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                    connect_timeout=2,
                ) as conn:  # fmt: skip
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections ({last}):\n{self.log_tail()}")

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster, then everything left in its group."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # the session leader: its pid is the group's id
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self._wait_group_gone(pgid)
        self.proc = None
        self.kills += 1

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
        """Until no live process is left in the group (so none holds the shared memory)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.02)
        raise RuntimeError(f"processes of the killed cluster (group {pgid}) are still running")

    def restart(self) -> None:
        """Start the server again on the same data directory (crash recovery runs first)."""
        if self.pid is not None:
            raise RuntimeError("the cluster is still running; kill() or stop() it first")
        self._spawn()

    def stop(self) -> None:
        """Fast shutdown (SIGINT), or SIGKILL after a grace period; then remove everything."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.kill()
            if self.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    """Whether a process other than a zombie is still in the group (zombies hold no memory)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            return True
    return False


@contextlib.contextmanager
def running_cluster(
    *, bin_dir: Path | None = None, extra: dict[str, str] | None = None
) -> Iterator[PgCluster]:
    """A started cluster, stopped and removed afterwards whatever happened."""
    cluster = PgCluster(bin_dir=bin_dir, extra=extra)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
