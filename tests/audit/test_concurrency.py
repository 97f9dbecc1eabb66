"""Parallel writers still produce one linear, gapless chain that verifies."""

from __future__ import annotations

import threading

from audit.log import AuditLog
from foundation.db import transaction

from .conftest import make_event

WRITERS = 4
APPENDS = 50


def _write(log: AuditLog, writer: int, errors: list[BaseException]) -> None:
    try:
        for i in range(APPENDS):
            with transaction(log.engine) as session:
                log.append(session, make_event(writer * 1000 + i))
    except Exception as exc:  # noqa: BLE001 - re-raised as a failure in the main thread
        errors.append(exc)


def test_parallel_writers_make_one_gapless_chain(vault, clock) -> None:
    """4 writers × 50 appends, each on its own connection, with auto-checkpoints racing too."""

    class S:
        audit_checkpoint_every_entries = 25
        audit_checkpoint_every_seconds = 3600.0

    vault.engine.pool.dispose()
    logs = [AuditLog(engine=vault.engine, keys=vault.keys, settings=S()) for _ in range(WRITERS)]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_write, args=(logs[w], w, errors)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    log = logs[0]
    assert log.head() == WRITERS * APPENDS
    log.checkpoint_if_new()
    report = log.verify()
    assert report.ok, report.summary()
    assert report.entries == WRITERS * APPENDS
    actors = {r.archives[0] for r in log.query(limit=1000)}
    assert len(actors) == WRITERS * APPENDS  # nothing lost, nothing duplicated
