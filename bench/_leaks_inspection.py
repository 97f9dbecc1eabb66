"""Benchmark of the inspection (Art 14): how long opening every ciphertext takes.

    .venv/bin/python bench/_leaks_inspection.py            # 2,000 and 100,000 archives
    .venv/bin/python bench/_leaks_inspection.py --quick    # 2,000 (the demo size)
    .venv/bin/python bench/_leaks_inspection.py --json

For each size: the content walk alone (``vault.integrity``: unwrap every DEK,
open every manifest and group, compare with the manifest), the whole
inspection (walk, audit log verification, findings, signing, storing), and the
baseline measured in the same run: reading the same ciphertext rows with no
decryption at all, so the ratio is what the cryptography and checks add to the
I/O. ``bench/leaks.py`` combines ``run`` with the other parts' rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from audit.events import Actor
from foundation.clock import utcnow
from foundation.settings import Settings
from policies.inspection import Inspections
from vault.importer import import_file
from vault.integrity import StoreWalk
from vault.models import Archive, ContentHistory, SealedGroup, table_of
from vault.seed import SyntheticArchives
from vault.store import ArchiveStore
from vault.vault import init_vault

ACTOR = Actor("bench", "system")


def _plain_scan(engine: sa.Engine, batch: int) -> tuple[float, float]:
    """The same rows, the same batching, nothing opened: the I/O floor (wall, CPU)."""
    a, c, h = table_of(Archive), table_of(SealedGroup), table_of(ContentHistory)
    t0, c0 = time.perf_counter(), time.process_time()
    last = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(a.c.id, a.c.wrapped_dek, a.c.manifest)
                .where(a.c.id > last)
                .order_by(a.c.id)
                .limit(batch)
            ).all()
            if not rows:
                break
            ids = [r[0] for r in rows]
            for table in (c, h):
                sum(
                    len(r[1])
                    for r in conn.execute(
                        sa.select(table.c.archive_id, table.c.ciphertext).where(
                            table.c.archive_id.in_(ids)
                        )
                    )
                )
            last = ids[-1]
    return time.perf_counter() - t0, time.process_time() - c0


def measure(n: int, workdir: Path) -> list[dict[str, Any]]:
    settings = Settings(data_dir=workdir / f"var{n}", expected_archives=max(n, 1000))
    vault = init_vault(settings)
    store = ArchiveStore(vault)
    source = workdir / f"archives{n}.jsonl"
    with source.open("w", encoding="utf-8") as fh:
        for row in SyntheticArchives(seed=7).many(n):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    assert import_file(store, source, owner=None, actor=ACTOR).imported == n
    service = Inspections(store=store, audit=store.audit, clock=utcnow)  # type: ignore[arg-type]
    plain_s, plain_cpu = _plain_scan(vault.engine, service.batch)
    t0, c0 = time.perf_counter(), time.process_time()
    check = StoreWalk(vault.engine, store.envelope, batch=service.batch).run()
    walk_s, walk_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert check.ok and check.archives == n
    t0 = time.perf_counter()
    row = service.run(ACTOR)
    full_s = time.perf_counter() - t0
    assert json.loads(row.report)["body"]["integrity_ok"]
    opened = sum(t.ok for t in check.kinds.values())
    label = f"{n:,} archives"
    return [
        {
            "name": f"inspection: content walk, {label} ({opened:,} ciphertexts)",
            "value": round(walk_s, 2),
            "unit": "s",
            "baseline": round(plain_s, 2),
            "ratio": round(walk_s / plain_s, 2) if plain_s else None,
        },
        {
            "name": f"inspection: content walk CPU time, {label}",
            "value": round(walk_cpu, 2),
            "unit": "s",
            "baseline": round(plain_cpu, 2),
            "ratio": round(walk_cpu / plain_cpu, 2) if plain_cpu else None,
        },
        {"name": f"inspection: whole run, {label}", "value": round(full_s, 2), "unit": "s"},
        {
            "name": f"inspection: archives per second, {label}",
            "value": round(n / walk_s),
            "unit": "archives/s",
        },
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows for ``bench/leaks.py``: 2,000 archives (quick), and 100,000 in the full run."""
    sizes = [2000] if quick else [2000, 100_000]
    workdir = Path(tempfile.mkdtemp(prefix="vault-bench-inspect-"))
    try:
        return [row for n in sizes for row in measure(n, workdir)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 archives only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rows = run(args.quick)
    if args.json:
        print(json.dumps({"inspection": rows}))
        return
    for row in rows:
        extra = f" (baseline {row['baseline']} s, {row['ratio']}×)" if "baseline" in row else ""
        print(f"{row['name']}: {row['value']} {row['unit']}{extra}")


if __name__ == "__main__":
    main()
