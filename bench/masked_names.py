"""What the customer list's masked names cost a page of the list, measured side by side.

    .venv/bin/python bench/masked_names.py                 # 2,000 archives in a SQLite vault
    .venv/bin/python bench/masked_names.py --database-url postgresql+psycopg://...

A page of 50 (audited, as ``GET /customers`` runs it) is listed alternately with
the masked names opened (``MaskedNames.open_many``) and with that step replaced
by one that opens nothing, so both run on the same rows, caches and machine
load; the backfill of every archive (``archive-vault upgrade``) is timed too.
"""

from __future__ import annotations

import argparse
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


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1e3:.2f} ms"


def run(n: int, rounds: int, workdir: Path, url: str) -> None:
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
    print(f"{n:,} archives on {vault.engine.dialect.name}")
    print(f"list of 50, audited, with masked names:    {_ms(timed['with'])}")
    print(f"list of 50, audited, without masked names: {_ms(timed['without'])}")
    print(f"opening 50 masked names alone:             {_ms(alone)}")
    print(f"backfill of {filled:,} archives:  {took:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archives", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--database-url", default="", help="an empty schema; SQLite if none")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    try:
        run(args.archives, args.rounds, workdir, args.database_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
