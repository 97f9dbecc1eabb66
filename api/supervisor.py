"""The master of ``serve --workers N``: uvicorn's supervisor, telling when a worker dies.

uvicorn's supervisor replaces a worker that died or hung, logging only "Child
process [pid] died" at info level, without how it died. A worker killed by the
kernel's OOM killer or by SIGKILL is an event an operator must see: this
supervisor logs an error line naming the pid and the signal (or exit status).

It also keeps prometheus-client's multiprocess directory honest: a worker's
live gauges are dropped when it exits (``mark_process_dead``), or a killed
worker's in-flight count would stay in every later scrape. The directory is
private (0700), made fresh by each ``serve`` and removed when it stops.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path
from socket import socket

from prometheus_client import multiprocess
from uvicorn import Config
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

log = logging.getLogger("archive_vault.serve")
PREFIX = "metrics-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metrics_dir(data_dir: Path) -> Path:
    """A fresh, private directory for this ``serve``'s metric files, under ``run/``.

    Directories a ``serve`` left behind when it was killed (its pid is gone) are
    removed first; one of a ``serve`` still running on the same data directory
    is left alone.
    """
    run = data_dir / "run"
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    run.chmod(0o700)
    for old in run.glob(PREFIX + "*"):
        pid = old.name.removeprefix(PREFIX)
        if not pid.isdigit() or int(pid) == os.getpid() or not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = run / f"{PREFIX}{os.getpid()}"
    path.mkdir(mode=0o700)
    return path


def how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


class WatchedMultiprocess(Multiprocess):
    def __init__(self, config: Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self._reported: set[int] = set()

    def _gone(self, process: Process, *, unexpected: bool) -> None:
        pid = process.pid
        if pid is None or pid in self._reported:
            return
        self._reported.add(pid)
        if unexpected:
            ended = how_it_ended(process.exitcode)
            log.error(
                "worker %d died (%s); a new worker is started",
                pid,
                ended,
                extra={"pid": pid, "signal": ended, "exitcode": process.exitcode},
            )
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(pid)

    def keep_subprocess_alive(self) -> None:
        before = list(self.processes)
        super().keep_subprocess_alive()
        for process in before:
            if process not in self.processes or process.exitcode is not None:
                self._gone(process, unexpected=not self.should_exit.is_set())

    def restart_all(self) -> None:
        before = list(self.processes)
        super().restart_all()
        for process in before:
            if process not in self.processes:
                self._gone(process, unexpected=False)

    def join_all(self) -> None:
        super().join_all()
        for process in self.processes:
            self._gone(process, unexpected=False)


def run_workers(config: Config) -> None:
    """What ``uvicorn.run`` does for several workers, with the watching supervisor."""
    sock = config.bind_socket()
    try:
        WatchedMultiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
