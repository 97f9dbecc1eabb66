"""What the customer list's masked names cost a page of the list, measured side by side.

    .venv/bin/python bench/masked_names.py                 # 2,000 archives in a SQLite vault
    .venv/bin/python bench/masked_names.py --quick         # 500 archives, under a minute
    .venv/bin/python bench/masked_names.py --json          # one JSON object instead of the table
    .venv/bin/python bench/masked_names.py --database-url postgresql+psycopg://...

A page of 50 (audited, as ``GET /customers`` runs it) is listed alternately with
the masked names opened (``MaskedNames.open_many``) and with that step replaced
by one that opens nothing, so both run on the same rows, caches and machine
load; the backfill of every archive (``archive-vault upgrade``) is timed too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the project, not bench/ (whose audit.py would shadow the package)

from audit.events import Actor  # noqa: E402
from foundation.settings import Settings  # noqa: E402
from vault.importer import bulk_insert  # noqa: E402
from vault.masked_names import backfill  # noqa: E402
from vault.seed import SyntheticArchives  # noqa: E402
from vault.store import ArchiveStore  # noqa: E402
from vault.vault import init_vault  # noqa: E402

ACTOR = Actor("bench", "system")


def run(n: int, rounds: int, workdir: Path, url: str) -> dict[str, Any]:
    settings = Settings(data_dir=workdir, **({"database_url": url} if url else {}))
    vault = init_vault(settings)
    store = ArchiveStore(vault)
    gen = SyntheticArchives(seed=3, schema=store.schema)
    bulk_insert(store, gen.records(store.filing.prepare, n), actor=ACTOR, total=n, source="seed")
    real = store.masked_names.open_many

    def nothing(rows: Any) -> dict[str, str | None]:
        return {no: None for no, _ in rows}

    timed: dict[str, list[float]] = {"with": [], "without": []}
    for i in range(rounds):
        order = [("with", real), ("without", nothing)]
        for label, opener in order if i % 2 else order[::-1]:
            store.masked_names.open_many = opener  # type: ignore[method-assign]
            start = time.perf_counter()
            store.archives.list(actor=ACTOR, limit=50, offset=(i * 50) % max(1, n - 50))
            timed[label].append(time.perf_counter() - start)
    store.masked_names.open_many = real  # type: ignore[method-assign]
    with vault.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT archive_no, masked_name_ct FROM archive ORDER BY id LIMIT 50")
        ).all()
    alone = []
    for _ in range(rounds):
        start = time.perf_counter()
        real([(no, bytes(ct)) for no, ct in rows])
        alone.append(time.perf_counter() - start)
    with vault.engine.begin() as conn:
        conn.execute(sa.text("UPDATE archive SET masked_name_ct = NULL"))
    start = time.perf_counter()
    filled, _failed = backfill(store)
    took = time.perf_counter() - start
    with_ms = statistics.median(timed["with"]) * 1000
    without_ms = statistics.median(timed["without"]) * 1000
    return {
        "archives": n,
        "database": vault.engine.dialect.name,
        "list_with_ms": round(with_ms, 3),
        "list_without_ms": round(without_ms, 3),
        "ratio": round(with_ms / without_ms, 3),
        "open_50_ms": round(statistics.median(alone) * 1000, 3),
        "backfill_s": round(took, 2),
        "backfilled": filled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archives", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--database-url", default="", help="an empty schema; SQLite if none")
    parser.add_argument("--quick", action="store_true", help="500 archives, 100 rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.quick:
        args.archives, args.rounds = min(args.archives, 500), min(args.rounds, 100)
    workdir = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    try:
        result = run(args.archives, args.rounds, workdir, args.database_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Masked names, {result['archives']:,} archives on {result['database']}")
    for column in ("measure", "figure", "baseline in the same run", "ratio"):
        table.add_column(column)
    table.add_row(
        "list of 50, audited, with masked names",
        f"{result['list_with_ms']:.3f} ms",
        f"{result['list_without_ms']:.3f} ms without",
        f"{result['ratio']:.2f}×",
    )
    table.add_row("opening 50 masked names alone", f"{result['open_50_ms']:.3f} ms", "", "")
    table.add_row(
        f"backfill of {result['backfilled']:,} archives", f"{result['backfill_s']:.2f} s", "", ""
    )
    Console().print(table)


if __name__ == "__main__":
    main()
