"""Leak detection's cost on the read path, against the same read without the rules.

    python bench/_leaks_detection.py [--quick] [--json]

The lead's ``bench/leaks.py`` calls ``run(quick)``. One SQLite vault, one
salesperson and their clients, a few decoys among other archives. Both sides
are ``policies.access.ArchiveReads.read`` (the unit of work behind
``GET /customers/{no}`` and the fast path: principal, decision, decrypt, audit
entry, durable commit) over the same store and policy engine; the "rules on"
side carries the decoy check (one counter read in the read's transaction and a
set lookup), the "off" side does not. Reads alternate one by one, so drift hits both sides alike.
The volume, off-hours, secret and departing rules add nothing to a read: they
run in the minute's sweep, whose throughput is shown for information, with
the cost of a read that touches a decoy (its case saved, the handlers told).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table
from sqlmodel import Session, col, select

from api.services import Services
from audit.events import Actor
from foundation.db import transaction
from foundation.settings import Settings
from policies.access import ArchiveReads, Credentials
from policies.decision import Principal
from policies.directory import add_user
from vault.importer import bulk_insert
from vault.models import Archive
from vault.seed import SyntheticArchives
from vault.vault import init_vault

GOAL = 1.1
DECOYS = 10


def _prepare(workdir: Path, archives: int) -> tuple[Services, list[str], list[str]]:
    vault = init_vault(Settings(data_dir=workdir / "var"))
    with transaction(vault.engine) as session:
        add_user(session, username="zhang.wei", roles=["salesperson"], department="销售一部")
        add_user(
            session,
            username="zhao.lei",
            roles=["info_supervisor"],
            department="客户服务部",
            clearance="top_secret",
        )
    services = Services.build(vault)
    gen = SyntheticArchives(seed=7, owners=(("zhang.wei", "销售一部"),))
    rows = (
        services.store.filing.prepare({**r, "classification": "internal", "custodian": None})
        for r in gen.many(archives)
    )
    bulk_insert(
        services.store, rows, actor=Actor("bench", "system"), total=archives, source="bench"
    )
    with Session(vault.engine) as session:
        numbers = list(session.exec(select(Archive.archive_no).order_by(col(Archive.id))))
    supervisor = Principal("zhao.lei", frozenset({"info_supervisor"}), "客户服务部", "top_secret")
    decoys = numbers[-DECOYS:]
    with transaction(vault.engine) as session:
        for no in decoys:
            services.decoys.mark(
                session, supervisor, Actor("zhao.lei", "info_supervisor"), no, services.clock()
            )
    return services, numbers[:-DECOYS], decoys


def _round(reads: ArchiveReads, who: Credentials, numbers: list[str]) -> float:
    start = time.perf_counter()
    for no in numbers:
        reads.read(who, no, ("contact",))
    return (time.perf_counter() - start) / len(numbers)


def run(quick: bool) -> list[dict[str, Any]]:
    archives, per_round, rounds = (300, 100, 8) if quick else (2000, 300, 20)
    # On tmpfs when there is one: without the fsync of each commit the read is several
    # times cheaper, so the check's share of it is larger (the harsher comparison).
    shm = Path("/dev/shm")
    workdir = Path(tempfile.mkdtemp(prefix="bench-detection-", dir=shm if shm.is_dir() else None))
    try:
        services, numbers, decoys = _prepare(workdir, archives)
        who = Credentials("zhang.wei")
        on = services.reads
        off = ArchiveReads(services.store, services.policy, services.clock)
        assert on.decoys is not None and off.decoys is None
        sample = numbers[:per_round]
        _round(on, who, sample[:20])
        _round(off, who, sample[:20])
        # Alternated read by read (the order flipping each time), so load and drift
        # fall on both sides alike; the medians of single reads are compared.
        on_t: list[float] = []
        off_t: list[float] = []
        for i in range(rounds):
            for j, no in enumerate(sample):
                pair = ((on, on_t), (off, off_t)) if (i + j) % 2 else ((off, off_t), (on, on_t))
                for reads, times in pair:
                    start = time.perf_counter()
                    reads.read(who, no, ("contact",))
                    times.append(time.perf_counter() - start)
        t_on, t_off = statistics.median(on_t), statistics.median(off_t)
        decoy_reads = [_round(on, who, [d]) for d in decoys]
        start = time.perf_counter()
        swept = services.detect()
        sweep_s = time.perf_counter() - start
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = t_on / t_off
    return [
        {
            "name": "audited read with detection (decoy check)",
            "value": round(t_on * 1e6, 1),
            "unit": "µs",
            "baseline": round(t_off * 1e6, 1),
            "baseline_name": "the same read without the rules",
            "ratio": round(ratio, 3),
            "goal": f"≤ {GOAL}×",
            "ok": ratio <= GOAL,
        },
        {
            "name": "read of a decoy (case saved, then the handlers told)",
            "value": round(statistics.median(decoy_reads) * 1e6, 1),
            "unit": "µs",
            "ratio": round(statistics.median(decoy_reads) / t_off, 2),
        },
        {
            "name": "detection sweep over the run's audit entries",
            "value": round(swept.entries / sweep_s) if sweep_s else 0,
            "unit": "entries/s",
            "entries": swept.entries,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="finish within a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rows = run(args.quick)
    if args.json:
        print(json.dumps({"detection": rows}, ensure_ascii=False))
        return
    table = Table(title="leak detection on the read path")
    for column in ("measure", "value", "baseline", "ratio"):
        table.add_column(column)
    for r in rows:
        base = f"{r['baseline']} {r['unit']}" if "baseline" in r else ""
        table.add_row(r["name"], f"{r['value']} {r['unit']}", base, str(r.get("ratio", "")))
    Console().print(table)


if __name__ == "__main__":
    main()
