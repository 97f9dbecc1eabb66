"""Run ``archive-vault`` with one function made to stop the process where a kill should land.

``python -m tests.faults.hold ARGS…`` is ``archive-vault ARGS…``, except that the first
(or the ``FAULT_HOLD_AT``-th) call of ``FAULT_HOLD`` (``module:Qualified.name``, several separated by commas) whose
arguments' text contains ``FAULT_HOLD_MATCH`` (when set) runs to its end, then the
process writes the file ``FAULT_HOLD_FILE`` and sleeps until it is killed. With
``FAULT_HOLD_WHEN=before`` it stops before the call instead. The test waits for the
file and sends SIGKILL: the kill lands at a known point (inside a transaction, between
two commits), never wherever a timer happened to fall.

With ``FAULT_SQLITE_PAGES`` (a file's path), every SQLite connection the program takes
from its pool is first limited to as many pages as the file says (``PRAGMA
max_page_count``; an empty file: no limit): a write that needs the database to grow
past it fails with SQLITE_FULL, as on a full disk, and the test frees "space" again
by emptying the file.
"""

from __future__ import annotations

import functools
import importlib
import os
import runpy
import sys
import threading
import time
from pathlib import Path
from typing import Any

_HELD = threading.Event()


def _hold() -> None:
    if _HELD.is_set():
        time.sleep(3600)
    _HELD.set()
    path = Path(os.environ["FAULT_HOLD_FILE"])
    path.write_text(str(os.getpid()))
    time.sleep(3600)


def _wrap(target: str) -> None:
    module_name, _, qualname = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = qualname.split(".")
    for part in parents:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    match = os.environ.get("FAULT_HOLD_MATCH", "")
    at = int(os.environ.get("FAULT_HOLD_AT", "1"))
    calls = [0]
    before = os.environ.get("FAULT_HOLD_WHEN", "after") == "before"

    @functools.wraps(real)
    def held(*args: Any, **kwargs: Any) -> Any:
        if not match or match in f"{args!r} {kwargs!r}":
            calls[0] += 1
        hit = calls[0] == at
        if hit and before:
            _hold()
        result = real(*args, **kwargs)
        if hit:
            _hold()
        return result

    setattr(owner, name, held)


def _limit_sqlite_pages(path: Path) -> None:
    import sqlalchemy as sa

    import foundation.db

    real = foundation.db.make_engine

    def make_engine(url: str, **kw: Any) -> sa.Engine:
        engine = real(url, **kw)
        if engine.dialect.name == "sqlite":

            @sa.event.listens_for(engine, "checkout")
            def _pages(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
                text = path.read_text().strip()
                dbapi_conn.execute(f"PRAGMA max_page_count={int(text) if text else 2**31 - 2}")

        return engine

    foundation.db.make_engine = make_engine


def main() -> None:
    if os.environ.get("FAULT_SQLITE_PAGES"):
        _limit_sqlite_pages(Path(os.environ["FAULT_SQLITE_PAGES"]))
    for target in filter(None, os.environ.get("FAULT_HOLD", "").split(",")):
        _wrap(target.strip())
    sys.argv = ["archive-vault", *sys.argv[1:]]
    runpy.run_module("cli.main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
