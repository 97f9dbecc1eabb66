"""Audit log benchmark: durable append rate vs a bare INSERT, verification time, bytes per entry.

    .venv/bin/python bench/audit.py            # full: verifies 1,000,000 entries
    .venv/bin/python bench/audit.py --quick    # under a minute: 100,000, extrapolated
    .venv/bin/python bench/audit.py --json     # one JSON object instead of the table
    .venv/bin/python bench/audit.py --workers 1   # verify in one process
    .venv/bin/python bench/audit.py --db /tmp/audit-1m.db   # keep the filled log, reuse it
    VAULT_TEST_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/audit.py

Both sides of the append comparison run in the same database, one after the
other, each row committed on its own (SQLite: WAL + synchronous=FULL, so each
commit is an fsync; PostgreSQL: synchronous_commit as configured). The bare
INSERT writes a row of the same columns and sizes (the MAC included) into an
unguarded, unindexed table, with no lock, head read, hashing or MAC: the floor
an audit append is measured against. Verification is the real
``verify_database`` (re-hash, chain, every entry's MAC, compact-range root,
checkpoint signatures; one worker process per core unless ``--workers``) over
entries bulk-loaded with a correct chain, MACs, their archive index rows (as
the appender writes them) and one checkpoint per 1,000 entries. Its baseline,
measured in the same run right after it: SHA-256 over the same bytes (every
entry's canonical bytes, rebuilt from the stored rows and held in memory, hashed
as one stream on one core). Leaf-hashing them one call per
entry is shown too. The ratio verify / SHA-256 is what to compare between runs
and machines; the absolute time follows the machine's load.

Bytes per entry count every audit table and index (the entries, the archive
index beside them, the checkpoints), each listed with its share. ``--db FILE``
(SQLite) fills the log into FILE, with its key file next to it (mode 0600), and
on later runs reuses both instead of filling again; the file holds no customer
content, only the benchmark's synthetic entries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audit.chain import ROWS_WITH_MAC, entry_batches  # noqa: E402
from audit.checkpoint import sign_checkpoint  # noqa: E402
from audit.codec import (  # noqa: E402
    canonical_for_columns,
    canonical_from_row,
    event_fields,
    format_time,
)
from audit.events import Actor, AuditAction, AuditEvent  # noqa: E402
from audit.guards import install_guards  # noqa: E402
from audit.log import AuditLog  # noqa: E402
from audit.mac import EntryMac  # noqa: E402
from audit.merkle import ZERO_HASH, CompactRange, leaf_hash  # noqa: E402
from audit.models import archive_ref_table, checkpoint_table, entry_table  # noqa: E402
from audit.signer import note_hash  # noqa: E402
from audit.verify_db import verify_database  # noqa: E402
from foundation.db import checkpoint_sqlite, make_engine  # noqa: E402
from vault.keys import Keyring, create_key_file, load_key_file  # noqa: E402

TARGET_RATIO = 0.5
TARGET_VERIFY_S = 3.0  # on this machine, for 1,000,000 entries
TARGET_VERIFY_VS_SHA = 15.0  # verify time / SHA-256 time of the same bytes, same run
TARGET_BYTES_PER_ENTRY = {"sqlite": 353, "postgresql": 370}  # not above the figures before
AUDIT_TABLES = ("audit_entry", "audit_archive_ref", "audit_checkpoint")
FULL_N = 1_000_000
SHA_CHUNK = 50_000


class _Settings:
    audit_checkpoint_every_entries = 1000
    audit_checkpoint_every_seconds = 300.0


def sample_event(i: int) -> AuditEvent:
    """A typical read entry: one archive, two field groups, a grant and a purpose."""
    return AuditEvent(
        action=AuditAction.READ,
        actor=Actor(f"user{i % 50:03d}", "salesperson", f"10.0.{i % 256}.{i % 200}"),
        archives=(f"KH-2024-{i % 100000:06d}",),
        groups=("contact", "identity"),
        grant_id=f"grant-{i % 977}",
        purpose="client follow-up",
        detail={"fields": 4},
    )


@contextmanager
def database(url: str | None) -> Iterator[sa.Engine]:
    """A throwaway database: a temp SQLite file, or a fresh schema dropped afterwards."""
    if not url:
        with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
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


def bare_table(metadata: sa.MetaData) -> sa.Table:
    cols = [sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False)]
    for c in entry_table.columns:
        if c.name != "seq":
            cols.append(sa.Column(c.name, c.type, nullable=c.nullable))
    return sa.Table("bench_bare_insert", metadata, *cols)


def measure_append(engine: sa.Engine, keys: Keyring, n: int) -> dict[str, float]:
    log = AuditLog(engine=engine, keys=keys, settings=_Settings())
    bare = bare_table(sa.MetaData())
    bare.metadata.create_all(engine)
    # Same-sized bare rows: the columns an append would write, precomputed.
    rows = []
    prev = ZERO_HASH
    mac = EntryMac(keys.audit_mac_key())
    for i in range(n):
        cols = event_fields(sample_event(i))
        cols.update(seq=i + 1, time=format_time(datetime.now(UTC)), prev_hash=prev)
        leaf = leaf_hash(canonical_for_columns(cols))
        cols["mac"] = mac.compute(i + 1, prev, leaf)
        cols["entry_hash"] = prev = leaf
        rows.append(cols)
    insert = bare.insert()

    def run_bare() -> float:
        t0 = time.perf_counter()
        for row in rows:
            with Session(engine) as s:
                s.connection().execute(insert, row)
                s.commit()
        return time.perf_counter() - t0

    def run_audit() -> float:
        t0 = time.perf_counter()
        for i in range(n):
            with Session(engine) as s:
                log.append(s, sample_event(i))
                s.commit()
        return time.perf_counter() - t0

    # Interleave halves so disk/cache drift affects both sides alike.
    half = n // 2
    rows_all, rows = rows, rows[:half]
    t_bare = run_bare()
    rows = rows_all[half:]
    t_audit = run_audit()
    t_bare += run_bare()
    return {
        "append_per_s": n / t_audit,
        "bare_insert_per_s": n / t_bare,
        "ratio": (n / t_audit) / (n / t_bare),
    }


def bulk_fill(engine: sa.Engine, keys: Keyring, n: int, origin: str) -> None:
    """Load n valid entries (correct chain, a signed checkpoint per 1,000) without append's cost."""
    key = keys.audit_signing_key()
    mac = EntryMac(keys.audit_mac_key())
    rng = CompactRange()
    prev = ZERO_HASH
    start = datetime(2025, 1, 1, tzinfo=UTC)
    batch: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    cps: list[dict[str, Any]] = []

    with engine.begin() as conn:
        for i in range(n):
            event = sample_event(i)
            cols = event_fields(event)
            cols.update(
                seq=i + 1, time=format_time(start + timedelta(milliseconds=i)), prev_hash=prev
            )
            leaf = leaf_hash(canonical_for_columns(cols))
            cols["mac"] = mac.compute(i + 1, prev, leaf)
            cols["entry_hash"] = prev = leaf
            rng.append(prev)
            batch.append(cols)
            refs.extend({"archive_no": no, "seq": i + 1} for no in dict.fromkeys(event.archives))
            if rng.size % 1000 == 0 or rng.size == n:
                cp = sign_checkpoint(key, origin, rng.size, rng.root(), 1_735_689_600 + i)
                cps.append(
                    {
                        "note_hash": note_hash(cp.note),
                        "tree_size": cp.size,
                        "root_hash": cp.root,
                        "signed_at": format_time(start),
                        "note": cp.note,
                        "frontier": json.dumps([h.hex() for h in rng.hashes]),
                    }
                )
            if len(batch) >= 10_000:
                conn.execute(entry_table.insert(), batch)
                conn.execute(archive_ref_table.insert(), refs)
                batch, refs = [], []
        if batch:
            conn.execute(entry_table.insert(), batch)
        if refs:
            conn.execute(archive_ref_table.insert(), refs)
        if cps:
            conn.execute(checkpoint_table.insert(), cps)
    settle(engine)


def settle(engine: sa.Engine) -> None:
    """Leave the filled log as months of appends would have: SQLite's WAL folded into the
    file, PostgreSQL's tables vacuumed.

    A million entries loaded in one transaction leave a 300 MB write-ahead log (SQLite
    folds it back only at a checkpoint no reader blocks) or a million rows whose
    visibility the first scan must settle and write back (PostgreSQL). A vault's own log
    is checkpointed every thousand pages and vacuumed by autovacuum as it grows, so
    timing verification over either would measure the bulk load, not the verifier:
    read through that WAL here, a million entries took half as long again.
    """
    if engine.dialect.name == "sqlite":
        if not checkpoint_sqlite(engine):
            raise SystemExit("the filled log's WAL could not be checkpointed (a reader holds it)")
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in AUDIT_TABLES:
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")


def measure_sha256(engine: sa.Engine) -> dict[str, float]:
    """SHA-256 over every entry's canonical bytes, as one stream and one call per entry.

    The bytes are rebuilt from the stored rows a chunk at a time (not timed), so
    only the hashing is measured, on one core.
    """
    stream = hashlib.sha256()
    stream_s = per_entry_s = stream_cpu = 0.0
    total = 0
    sha = hashlib.sha256

    def timed(chunk: list[bytes]) -> None:
        nonlocal stream_s, per_entry_s, stream_cpu, total
        c0 = time.process_time()
        t0 = time.perf_counter()
        for data in chunk:
            stream.update(data)
        t1 = time.perf_counter()
        stream_cpu += time.process_time() - c0
        for data in chunk:
            sha(b"\x00" + data).digest()
        per_entry_s += time.perf_counter() - t1
        stream_s += t1 - t0
        total += sum(map(len, chunk))

    chunk: list[bytes] = []
    batches = entry_batches(engine, SHA_CHUNK, ROWS_WITH_MAC)
    try:
        for rows in batches:
            chunk.extend(canonical_from_row(row) for row in rows)
            if len(chunk) >= SHA_CHUNK:
                timed(chunk)
                chunk = []
    finally:
        batches.close()
    if chunk:
        timed(chunk)
    return {
        "sha256_s": stream_s,
        "sha256_cpu_s": stream_cpu,
        "sha256_per_entry_s": per_entry_s,
        "hashed_bytes": total,
    }


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the verify workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def storage(engine: sa.Engine, n: int) -> dict[str, float]:
    """Bytes per entry of each audit table and index (SQLite: dbstat; PostgreSQL: sizes)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT d.name, SUM(d.pgsize) FROM dbstat d "
                "JOIN sqlite_schema s ON s.name = d.name "
                f"WHERE s.tbl_name IN {AUDIT_TABLES} GROUP BY d.name"
            ).all()
        else:
            rows = conn.exec_driver_sql(
                "SELECT c.relname, CASE c.relkind WHEN 'r' THEN pg_table_size(c.oid) "
                "ELSE pg_total_relation_size(c.oid) END FROM pg_class c "
                "JOIN pg_namespace ns ON ns.oid = c.relnamespace AND ns.nspname = current_schema() "
                "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
                "LEFT JOIN pg_class t ON t.oid = i.indrelid "
                f"WHERE COALESCE(t.relname, c.relname) IN {AUDIT_TABLES} "
                "AND c.relkind IN ('r', 'i')"
            ).all()
    if not n:
        return {}
    return {str(name): float(size) / n for name, size in sorted(rows, key=lambda r: -r[1])}


@contextmanager
def verify_log(url: str, n: int, path: str | None) -> Iterator[tuple[sa.Engine, Keyring, float]]:
    """A log of n bulk-filled entries and its keys, and the seconds the fill took (0: reused)."""
    if path is None:
        with database(url) as engine:
            install_guards(engine)
            keys = Keyring.generate()
            t0 = time.perf_counter()
            bulk_fill(engine, keys, n, f"archive-vault/audit/{keys.vault_id}")
            yield engine, keys, time.perf_counter() - t0
        return
    if url:
        raise SystemExit("--db keeps a SQLite file; it cannot be combined with PostgreSQL")
    db = Path(path).resolve()
    key_file = db.with_name(db.name + ".keys.json")
    engine = make_engine(f"sqlite:///{db}")
    try:
        if db.exists() and key_file.exists():
            keys = load_key_file(key_file)
            with engine.connect() as conn:
                have = conn.exec_driver_sql("SELECT count(*) FROM audit_entry").scalar()
            if have != n:
                raise SystemExit(f"{db} holds {have} entries, not {n}: remove it or pass --entries")
            yield engine, keys, 0.0
            return
        if db.exists() or key_file.exists():
            raise SystemExit(f"{db} or its key file exists without the other: remove both")
        keys = create_key_file(key_file)
        install_guards(engine)
        t0 = time.perf_counter()
        bulk_fill(engine, keys, n, f"archive-vault/audit/{keys.vault_id}")
        yield engine, keys, time.perf_counter() - t0
    finally:
        engine.dispose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or os.environ.get("VAULT_TEST_DATABASE_URL", "")
    n_append = args.appends or (300 if args.quick else 2000)
    n_verify = args.entries or (100_000 if args.quick else FULL_N)
    result: dict[str, Any] = {"database": "postgresql" if url else "sqlite", "quick": args.quick}
    with database(url) as engine:
        install_guards(engine)
        result.update(measure_append(engine, Keyring.generate(), n_append))
        result["appends_measured"] = n_append
    with verify_log(url, n_verify, args.db) as (engine, keys, fill_s):
        result["fill_s"] = fill_s
        origin = f"archive-vault/audit/{keys.vault_id}"
        log = AuditLog(engine=engine, keys=keys, settings=_Settings())
        workers = args.workers or os.cpu_count() or 1
        load_before = os.getloadavg()[0]
        cpu0 = _cpu()
        t0 = time.perf_counter()
        report = verify_database(
            engine, public_key=log.public_key, origin=origin, mac=log.entry_mac(), workers=workers
        )
        elapsed = time.perf_counter() - t0
        result["verify_cpu_s"] = _cpu() - cpu0
        result["load_average_at_verify"] = load_before
        if not report.ok:
            raise SystemExit(f"benchmark log failed verification: {report.summary()}")
        result.update(measure_sha256(engine))
        result["verify_workers"] = workers
        result["verified_entries"] = n_verify
        result["verify_s"] = elapsed
        result["verify_per_entry_us"] = elapsed / n_verify * 1e6
        result["verify_cpu_per_entry_us"] = result["verify_cpu_s"] / n_verify * 1e6
        result["verify_1m_s"] = elapsed * FULL_N / n_verify
        result["verify_1m_extrapolated"] = n_verify != FULL_N
        result["verify_vs_sha256"] = elapsed / result["sha256_s"]
        # What the ratio would be with every worker on a core of its own: CPU seconds spread
        # over the workers, against the CPU seconds of the hashing (load drops out of both).
        result["verify_vs_sha256_cpu"] = result["verify_cpu_s"] / workers / result["sha256_cpu_s"]
        parts = storage(engine, n_verify)
        result["storage_bytes_per_entry"] = parts
        result["bytes_per_entry"] = sum(parts.values()) if parts else None
    bpe_target = TARGET_BYTES_PER_ENTRY[result["database"]]
    result["verify_1m_within_3s"] = result["verify_1m_s"] <= TARGET_VERIFY_S
    result["targets_met"] = bool(
        result["ratio"] >= TARGET_RATIO
        and result["verify_vs_sha256"] <= TARGET_VERIFY_VS_SHA
        and (result["bytes_per_entry"] or 0) <= bpe_target
    )
    result["load_average"] = os.getloadavg()[0]
    return result


def table(r: dict[str, Any]) -> str:
    label = (
        "extrapolated from " + f"{r['verified_entries']:,}"
        if r["verify_1m_extrapolated"]
        else "measured"
    )
    bpe = f"{r['bytes_per_entry']:.0f}" if r["bytes_per_entry"] else "n/a"
    scale = FULL_N / r["verified_entries"]
    verified = f"verify {r['verified_entries']:,} entries (s, {r['verify_workers']} workers)"
    lines = [
        f"audit log benchmark ({r['database']}{', quick' if r['quick'] else ''}; "
        f"load average {r['load_average']:.1f} on {os.cpu_count()} cores)",
        f"{'metric':<48}{'value':>12}  target",
        f"{'durable appends/s (audit append)':<48}{r['append_per_s']:>12.0f}",
        f"{'durable inserts/s (bare INSERT, same row)':<48}{r['bare_insert_per_s']:>12.0f}",
        f"{'ratio append / bare':<48}{r['ratio']:>12.2f}  >= {TARGET_RATIO}",
        f"{verified:<48}{r['verify_s']:>12.2f}",
        f"{'SHA-256 of the same bytes, one stream (s)':<48}{r['sha256_s']:>12.3f}"
        f"  ({r['hashed_bytes'] / r['verified_entries']:.0f} bytes per entry)",
        f"{'  same, one leaf hash per entry (s)':<48}{r['sha256_per_entry_s']:>12.3f}",
        f"{'ratio verify / SHA-256':<48}{r['verify_vs_sha256']:>12.1f}  "
        f"<= {TARGET_VERIFY_VS_SHA:.0f}",
        f"{'  same, CPU seconds / workers vs CPU seconds':<48}"
        f"{r['verify_vs_sha256_cpu']:>12.1f}  (the ratio with a core per worker)",
        f"{'verify time, 1,000,000 entries (s)':<48}{r['verify_1m_s']:>12.2f}  <= "
        f"{TARGET_VERIFY_S:.0f} on this machine ({label})",
        f"{'SHA-256 time, 1,000,000 entries (s)':<48}{r['sha256_s'] * scale:>12.2f}",
        f"{'verify cost per entry (µs, wall)':<48}{r['verify_per_entry_us']:>12.2f}",
        f"{'verify CPU per entry (µs, all processes)':<48}{r['verify_cpu_per_entry_us']:>12.2f}",
        f"{'load average when verify started':<48}{r['load_average_at_verify']:>12.1f}",
        f"{'bytes per entry (audit tables + indexes)':<48}{bpe:>12}  "
        f"<= {TARGET_BYTES_PER_ENTRY[r['database']]}",
        *(
            f"{'  ' + name:<48}{size:>12.1f}"
            for name, size in r["storage_bytes_per_entry"].items()
            if size >= 0.05
        ),
        f"{'targets met (ratios, bytes)':<48}{'yes' if r['targets_met'] else 'NO':>12}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="finish within a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite temp file)")
    parser.add_argument("--entries", type=int, help="entries to verify (default 1,000,000)")
    parser.add_argument("--appends", type=int, help="durable appends to time")
    parser.add_argument("--workers", type=int, help="verify worker processes (default: cores)")
    parser.add_argument(
        "--db", help="SQLite file to fill once and reuse for verification (keys next to it)"
    )
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()
