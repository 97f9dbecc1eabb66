"""Leak evidence queries over a large audit log: the indexes against what they replace.

    .venv/bin/python bench/_leaks_evidence.py [--quick] [--json]
    VAULT_TEST_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/_leaks_evidence.py

``run(quick)`` gives the rows ``bench/leaks.py`` combines. The log is bulk-loaded
(1,000,000 entries, ``--quick`` 100,000: the rows say which) with the shape of a
busy vault: 50 accounts, 100,000 archives, one entry a second, every entry's
archive in ``audit_archive_ref`` as the appender writes it. Hashes are
placeholders: only the queries are timed, not proofs.

* account: every entry of one account in a one-hour window
  (``audit.evidence.by_account``, on ``ix_audit_entry_actor_time``), against the
  same query with that index dropped inside a rolled-back transaction (the
  planner's best of the single-column actor and time indexes the log already
  had: an account's window was never a JSON scan, so expect a ratio near 1);
* archive: every access to one archive over the whole log
  (``audit.evidence.by_archives``, through ``audit_archive_ref``), against the
  JSON-text ``LIKE`` scan the audit search by archive used before.

Each figure is the median of several runs; the ratio is baseline / indexed.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audit import evidence  # noqa: E402
from audit.codec import ENTRY_COLUMNS, format_time  # noqa: E402
from audit.guards import install_guards  # noqa: E402
from audit.models import archive_ref_table, entry_table  # noqa: E402
from foundation.db import make_engine  # noqa: E402

FULL_N = 1_000_000
QUICK_N = 100_000
ACCOUNTS = 50
ARCHIVES = 100_000
START = datetime(2025, 1, 1, tzinfo=UTC)
REPEAT = 5


@contextmanager
def _database(url: str) -> Iterator[sa.Engine]:
    """A throwaway database: a temp SQLite file, or a fresh schema dropped afterwards."""
    if not url:
        with tempfile.TemporaryDirectory(prefix="leak-evidence-bench-") as tmp:
            engine = make_engine(f"sqlite:///{tmp}/bench.db")
            try:
                yield engine
            finally:
                engine.dispose()
        return
    schema = "bench_" + secrets.token_hex(4)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = make_engine(url, pg_schema=schema)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def _fill(engine: sa.Engine, n: int) -> None:
    placeholder = bytes(32)
    entries: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for i in range(n):
            no = f"KH-2025-{(i * 7919) % ARCHIVES:06d}"
            entries.append(
                {
                    "seq": i + 1,
                    "time": format_time(START + timedelta(seconds=i)),
                    "actor": f"user{i % ACCOUNTS:03d}",
                    "actor_role": "salesperson",
                    "action": "archive:read",
                    "outcome": "allowed",
                    "archives": json.dumps([no]),
                    "groups": '["contact","identity"]',
                    "grant_id": f"G-{i % 977:010d}",
                    "purpose": "customer_service",
                    "reason": None,
                    "client": "10.0.0.1",
                    "detail": "{}",
                    "prev_hash": placeholder,
                    "entry_hash": placeholder,
                    "mac": None,
                }
            )
            refs.append({"archive_no": no, "seq": i + 1})
            if len(entries) >= 20_000:
                conn.execute(entry_table.insert(), entries)
                conn.execute(archive_ref_table.insert(), refs)
                entries, refs = [], []
        if entries:
            conn.execute(entry_table.insert(), entries)
            conn.execute(archive_ref_table.insert(), refs)
        conn.exec_driver_sql("ANALYZE")


def _median_ms(fn: Callable[[], int]) -> tuple[float, int]:
    fn()  # warm the cache: both sides are measured warm
    times, count = [], 0
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        count = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), count


def _json_scan(conn: sa.Connection, archive: str) -> int:
    """The audit search by archive as it was: a LIKE over every entry's JSON text."""
    token = json.dumps(archive, ensure_ascii=False)
    escaped = token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    stmt = sa.select(*ENTRY_COLUMNS).where(entry_table.c.archives.like(f"%{escaped}%", escape="\\"))
    return len(conn.execute(stmt.order_by(entry_table.c.seq)).all())


def run(quick: bool) -> list[dict[str, Any]]:
    url = os.environ.get("VAULT_TEST_DATABASE_URL", "")
    n = QUICK_N if quick else FULL_N
    scale = f"{n:,} entries" + (" (--quick)" if quick else "")
    with _database(url) as engine:
        install_guards(engine)
        t0 = time.perf_counter()
        _fill(engine, n)
        fill_s = time.perf_counter() - t0
        middle = START + timedelta(seconds=n // 2)
        since, until = middle, middle + timedelta(hours=1)
        archive = "KH-2025-004242"
        with engine.connect() as conn:
            account_ms, account_rows = _median_ms(
                lambda: len(evidence.by_account(conn, "user007", since, until, n, 5001))
            )
            archive_ms, archive_rows = _median_ms(
                lambda: len(
                    evidence.by_archives(
                        conn, [archive], START, START + timedelta(days=400), n, 5001
                    )
                )
            )
            scan_ms, scan_rows = _median_ms(lambda: _json_scan(conn, archive))
        with engine.connect() as conn:
            trans = conn.begin()
            conn.exec_driver_sql("DROP INDEX ix_audit_entry_actor_time")
            # The actor index the composite replaced (migration 0020), back for the baseline.
            conn.exec_driver_sql("CREATE INDEX ix_audit_entry_actor ON audit_entry (actor)")
            old_ms, old_rows = _median_ms(
                lambda: len(evidence.by_account(conn, "user007", since, until, n, 5001))
            )
            trans.rollback()
    if (account_rows, archive_rows) != (old_rows, scan_rows):
        raise SystemExit("the indexed and the baseline queries disagree")
    db = engine.dialect.name
    return [
        {
            "name": f"evidence, one account, 1 h window ({scale}, {db})",
            "value": round(account_ms, 3),
            "unit": "ms",
            "rows": account_rows,
            "baseline": f"old actor and time indexes only: {old_ms:.3f} ms",
            "ratio": round(old_ms / account_ms, 1) if account_ms else None,
        },
        {
            "name": f"evidence, one archive, whole log ({scale}, {db})",
            "value": round(archive_ms, 3),
            "unit": "ms",
            "rows": archive_rows,
            "baseline": f"JSON-text LIKE scan: {scan_ms:.1f} ms",
            "ratio": round(scan_ms / archive_ms, 1) if archive_ms else None,
        },
        {
            "name": f"bulk load of the log and its archive index ({scale}, {db})",
            "value": round(fill_s, 1),
            "unit": "s",
        },
    ]


def main() -> None:
    quick = "--quick" in sys.argv
    rows = run(quick)
    if "--json" in sys.argv:
        print(json.dumps({"evidence": rows}, ensure_ascii=False))
        return
    for row in rows:
        ratio = f"  ×{row['ratio']} vs {row['baseline']}" if row.get("ratio") else ""
        print(f"{row['name']:<62}{row['value']:>12} {row['unit']}{ratio}")


if __name__ == "__main__":
    main()
