"""After a soak: every response that returned content has its audit entry, and the log verifies.

Two checks of different strength:

* The Python flows' reads and exports are checked exactly: the allowed
  ``archive:read`` entries of their reader in the run's window are exactly the
  recorded (reader, archive) reads, as a multiset, and the allowed
  ``archive:export`` entries of their exporter exactly the recorded exports
  (request id from the entry's detail, archive numbers). Nothing else reads or
  exports as those accounts during the window.
* For the wrk-driven kinds, wrk counts responses, not which archive each
  named, so the check is a count: the allowed entries of the kind's action by
  the kind's accounts in the window must number at least the 2xx responses wrk
  counted. At least, not exactly: a response is sent only after its entry is
  committed, so every counted 2xx has its entry; but when wrk's time is up it
  closes its connections with requests still in flight, whose entries were
  (or are then) committed although wrk never counted their answers. Fewer
  entries than counted responses would mean content went out unaudited.

Only identifiers and counts are read from the log, never content (the log holds
none).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from audit.models import entry_table
from bench._soak_flows import EXPORTERS, READERS, Record


@dataclass(frozen=True)
class Expect:
    """A wrk-driven kind: its audit action, the accounts it ran as, the 2xx wrk counted."""

    kind: str
    action: str
    actors: tuple[str, ...]
    ok_2xx: int


def _window(since: datetime, until: datetime) -> list[Any]:
    t = entry_table.c
    return [t.time >= since, t.time < until, t.outcome == "allowed"]


def entry_counts(engine: sa.Engine, since: datetime, until: datetime) -> Counter[tuple[str, str]]:
    """Allowed entries in [since, until) by (actor, action)."""
    t = entry_table.c
    stmt = (
        sa.select(t.actor, t.action, sa.func.count())
        .where(*_window(since, until))
        .group_by(t.actor, t.action)
    )
    with engine.connect() as conn:
        return Counter({(str(a), str(b)): int(n) for a, b, n in conn.execute(stmt)})


def _rows(
    engine: sa.Engine, since: datetime, until: datetime, action: str, actors: tuple[str, ...]
) -> list[tuple[str, list[str], dict[str, Any]]]:
    t = entry_table.c
    stmt = sa.select(t.actor, t.archives, t.detail).where(
        *_window(since, until), t.action == action, t.actor.in_(actors)
    )
    with engine.connect() as conn:
        return [
            (str(a), list(json.loads(archives or "[]")), dict(json.loads(detail or "{}")))
            for a, archives, detail in conn.execute(stmt)
        ]


def check(
    engine: sa.Engine, since: datetime, until: datetime, record: Record, expects: list[Expect]
) -> dict[str, Any]:
    """The two checks above; ``missing`` counts responses without their entry."""
    counts = entry_counts(engine, since, until)
    kinds = []
    missing = 0
    for e in expects:
        found = sum(counts[(actor, e.action)] for actor in e.actors)
        short = max(0, e.ok_2xx - found)
        missing += short
        kinds.append(
            {
                "kind": e.kind,
                "action": e.action,
                "responses_2xx": e.ok_2xx,
                "entries": found,
                "missing": short,
            }
        )
    read_rows = _rows(engine, since, until, "archive:read", READERS)
    reads = Counter((actor, no) for actor, archives, _ in read_rows for no in archives)
    expected_reads = Counter(record.reads)
    export_rows = _rows(engine, since, until, "archive:export", EXPORTERS)
    exports = Counter(
        (actor, str(detail.get("request")), tuple(sorted(archives)))
        for actor, archives, detail in export_rows
    )
    expected_exports = Counter((x.actor, x.request, x.archives) for x in record.exports)
    flow_missing = sum((expected_reads - reads).values()) + sum(
        (expected_exports - exports).values()
    )
    unexpected = sum((reads - expected_reads).values()) + sum((exports - expected_exports).values())
    return {
        "kinds": kinds,
        "flow_reads": len(record.reads),
        "flow_exports": len(record.exports),
        "flow_missing": flow_missing,
        "flow_unexpected": unexpected,
        "missing": missing + flow_missing,
        "ok": missing + flow_missing + unexpected == 0,
    }


def verify(cli: list[str], data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """``archive-vault audit verify`` on the run's vault: its exit status and last line."""
    done = subprocess.run(
        [*cli, "audit", "verify", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [x.strip() for x in (done.stdout + done.stderr).splitlines() if x.strip()]
    return {"ok": done.returncode == 0, "summary": lines[0] if lines else ""}
