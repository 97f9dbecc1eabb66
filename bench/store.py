"""Benchmark of the encrypted store, with baselines measured side by side in the same run.

    python bench/store.py            # full: 100,000 archives imported and rotated
    python bench/store.py --quick    # within a minute: 10,000 archives
    python bench/store.py --json     # one JSON object of the figures
    python bench/store.py --only import                 # the import measure alone
    python bench/store.py --database-url postgresql+psycopg://postgres@127.0.0.1/test
        # on PostgreSQL: a schema of its own in that database, dropped afterwards

Figures:
- read: one archive's contact group through the store (fetch + unwrap DEK +
  AES-GCM open, one round trip) vs a plain SQLModel read of the same row stored
  unencrypted in the same database (target: ≤ 1.5×). The fully audited read
  (`Reader.read`, which also appends and commits an audit entry) is shown
  too, against a plain read followed by a plain committed insert.
- import: N archives from a JSON Lines file through `customer import`'s code
  path (row count for the progress bar, validation, sealing, one transaction,
  audit entries) vs a plain bulk insert of the same rows unencrypted, one row
  each with the profile as JSON text (target: ≤ 4×). The plain insert runs
  once before and once after the import, into an emptied table, and the ratio
  is taken against their mean, so that a change of load during the import
  weighs on both sides.
- rotate: rewrap N DEKs under a new KEK version vs a plain UPDATE of the same
  column (target: 100,000 in ≤ 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlmodel import Field, Session, SQLModel, select

from audit.events import Actor
from foundation.db import make_engine
from foundation.settings import Settings
from vault import manifest as mf
from vault.errors import ArchiveDestroyed, ArchiveNotFound
from vault.importer import import_file
from vault.models import Archive, ArchiveStatus, SealedGroup
from vault.rotation import rotate
from vault.seed import SyntheticArchives
from vault.store import ArchiveStore
from vault.vault import init_vault

ACTOR = Actor("bench", "salesperson")


class PlainContact(SQLModel, table=True):
    """The baseline: the same contact fields, unencrypted, one row per archive."""

    __tablename__ = "bench_plain_contact"

    id: int | None = Field(default=None, primary_key=True)
    archive_no: str = Field(index=True, unique=True)
    mobile_phone: str | None = None
    office_phone: str | None = None
    home_phone: str | None = None
    company: str | None = None


class PlainArchive(SQLModel, table=True):
    __tablename__ = "bench_plain_archive"

    id: int | None = Field(default=None, primary_key=True)
    archive_no: str = Field(index=True, unique=True)
    owner: str
    profile: str
    blob: bytes | None = None


class PlainAudit(SQLModel, table=True):
    __tablename__ = "bench_plain_audit"

    id: int | None = Field(default=None, primary_key=True)
    actor: str
    archive_no: str
    detail: str


def _fast_statement(single: bool) -> sa.Select:
    """One joined query for an archive's key material and the named groups' ciphertext."""
    a = Archive.__table__
    c = SealedGroup.__table__
    # One group compares with = (no per-call IN expansion); several use expanding IN.
    group = (
        c.c.group_name == sa.bindparam("groups")
        if single
        else c.c.group_name.in_(sa.bindparam("groups", expanding=True))
    )
    return (
        sa.select(
            a.c.classification,
            a.c.kek_version,
            a.c.dek_version,
            a.c.wrapped_dek,
            a.c.status,
            c.c.group_name,
            c.c.revision,
            c.c.ciphertext,
            a.c.manifest,
        )
        .select_from(a.outerjoin(c, sa.and_(c.c.archive_id == a.c.id, group)))
        .where(a.c.archive_no == sa.bindparam("no"))
    )


_FAST_READ_ONE = _fast_statement(single=True)
_FAST_READ_MANY = _fast_statement(single=False)


def decrypt_unaudited(
    store: ArchiveStore, session: Session, archive_no: str, groups: list[str]
) -> dict[str, dict[str, str]]:
    """The bare decryption path (one joined query, unwrap, open), with NO audit entry.

    Only this benchmark uses it, to measure what the encryption itself costs
    against a plain read. Everything that releases content goes through the
    audited read, which commits its audit entry before returning.
    """
    if len(groups) == 1:
        stmt, params = _FAST_READ_ONE, {"no": archive_no, "groups": groups[0]}
    else:
        stmt, params = _FAST_READ_MANY, {"no": archive_no, "groups": list(groups)}
    rows = session.connection().execute(stmt, params).all()
    if not rows:
        raise ArchiveNotFound(f"archive {archive_no} does not exist")
    level, kek_v, dek_v, wrapped, status = rows[0][:5]
    if status == ArchiveStatus.DESTROYED:
        raise ArchiveDestroyed(f"archive {archive_no} has been destroyed")
    envelope = store.envelope
    dek = envelope.dek(archive_no, level, kek_v, dek_v, wrapped)
    found = [(r[5], r[6], r[7]) for r in rows if r[5] is not None]
    manifest = mf.open_manifest(dek, archive_no, level, rows[0][8], keys=store.keys)
    mf.check_rows(manifest, archive_no, groups, found)
    return {
        group: envelope.open_group(dek, archive_no, group, level, revision, blob)
        for group, revision, blob in found
    }


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def bench_reads(
    vault: Any, store: ArchiveStore, numbers: list[str], rounds: int
) -> dict[str, float]:
    engine = vault.engine
    with Session(engine) as s:  # plain copy of the contact group, unencrypted
        rows = []
        for no in numbers:
            contact = decrypt_unaudited(store, s, no, ["contact"]).get("contact", {})
            rows.append(
                {
                    "archive_no": no,
                    **{
                        k: contact.get(k)
                        for k in ("mobile_phone", "office_phone", "home_phone", "company")
                    },
                }
            )
        s.execute(sa.insert(PlainContact.__table__), rows)
        s.commit()
    rng = random.Random(7)
    picks = [rng.choice(numbers) for _ in range(rounds)]
    plain, core, fast, audited, plain_audit = [], [], [], [], []
    table = PlainContact.__table__
    core_stmt = sa.select(table).where(table.c.archive_no == sa.bindparam("no"))

    def plain_read(no: str) -> Any:
        with Session(engine) as s:
            return s.exec(select(PlainContact).where(PlainContact.archive_no == no)).first()

    def core_read(no: str) -> Any:
        with Session(engine) as s:
            return s.connection().execute(core_stmt, {"no": no}).first()

    def store_read(no: str) -> Any:
        with Session(engine) as s:
            return decrypt_unaudited(store, s, no, ["contact"])

    def plain_read_and_log(no: str) -> Any:
        with Session(engine) as s:
            row = s.exec(select(PlainContact).where(PlainContact.archive_no == no)).first()
            s.add(PlainAudit(actor="bench", archive_no=no, detail='{"groups":["contact"]}'))
            s.commit()
            return row

    for no in picks[:50]:  # warm caches and prepared statements
        plain_read(no)
        store_read(no)
    # Interleave so machine noise hits both sides alike.
    for no in picks:
        t0 = time.perf_counter()
        plain_read(no)
        t1 = time.perf_counter()
        store_read(no)
        t2 = time.perf_counter()
        core_read(no)
        t3 = time.perf_counter()
        plain.append(t1 - t0)
        fast.append(t2 - t1)
        core.append(t3 - t2)
    audited_rounds = picks[: max(50, rounds // 4)]
    for no in audited_rounds:
        t0 = time.perf_counter()
        plain_read_and_log(no)
        t1 = time.perf_counter()
        store.reader.read(no, ["contact"], actor=ACTOR, purpose="bench")
        t2 = time.perf_counter()
        plain_audit.append(t1 - t0)
        audited.append(t2 - t1)
    return {
        "read_plain_us": _median_us(plain),
        "read_store_us": _median_us(fast),
        "read_ratio": statistics.median(fast) / statistics.median(plain),
        "read_plain_core_us": _median_us(core),
        "read_ratio_vs_core": statistics.median(fast) / statistics.median(core),
        "audited_read_plain_us": _median_us(plain_audit),
        "audited_read_store_us": _median_us(audited),
        "audited_read_ratio": statistics.median(audited) / statistics.median(plain_audit),
    }


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the import's worker)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def plain_insert(engine: sa.Engine, rows: list[dict[str, Any]]) -> tuple[float, float]:
    """The baseline: the same rows, unencrypted, one row each, 1,000 per statement;
    (seconds, CPU seconds)."""
    table = PlainArchive.__table__
    with Session(engine) as s:
        s.execute(sa.delete(table))
        s.commit()
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    with Session(engine) as s:
        for i in range(0, len(rows), 1000):
            s.execute(
                sa.insert(table),
                [
                    {
                        "archive_no": f"P-{j:07d}",
                        "owner": r["owner"],
                        "profile": json.dumps(r["profile"], ensure_ascii=False),
                    }
                    for j, r in enumerate(rows[i : i + 1000], i)
                ],
            )
        s.commit()
    return time.perf_counter() - t0, cpu_seconds() - c0


def bench_import(store: ArchiveStore, workdir: Path, n: int) -> dict[str, Any]:
    rows = list(SyntheticArchives(seed=42).many(n))
    source = workdir / "archives.jsonl"
    with source.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    plain_before = plain_insert(store.engine, rows)
    phases: dict[str, int] = {}

    def progress(phase: str, done: int, _total: int) -> None:  # as the CLI's bars hear it
        phases[phase] = done

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    report = import_file(store, source, owner=None, actor=ACTOR, progress=progress)
    import_cpu_s = cpu_seconds() - c0
    import_s = time.perf_counter() - t0
    assert report.imported == n == phases["importing"]
    plain_after = plain_insert(store.engine, rows)
    plain = (plain_before[0] + plain_after[0]) / 2
    plain_cpu = (plain_before[1] + plain_after[1]) / 2
    return {
        "import_s": import_s,
        "import_cpu_s": import_cpu_s,
        "import_plain_s": plain,
        "import_plain_cpu_s": plain_cpu,
        "import_plain_before_s": plain_before[0],
        "import_plain_after_s": plain_after[0],
        "import_ratio": import_s / plain,
        "import_cpu_ratio": import_cpu_s / plain_cpu,
        "import_100k_s_est": import_s * 100_000 / n,
        "import_per_s": n / import_s,
        "import_load_before": load,
        "import_load_after": os.getloadavg()[0],
    }


def open_bench_vault(workdir: Path, n: int, database_url: str | None) -> tuple[Any, Any]:
    """A new vault in ``workdir`` (SQLite), or in a new schema of ``database_url``; and the
    function that drops that schema (or does nothing)."""
    settings = Settings(data_dir=workdir / "var", expected_archives=max(n, 1000))
    if not database_url:
        return init_vault(settings), lambda: None
    schema = "bench_" + secrets.token_hex(6)
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = make_engine(database_url, pg_schema=schema)

    def drop() -> None:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    try:
        return init_vault(settings, engine=engine), drop
    except BaseException:
        drop()
        raise


def run(
    n: int, rounds: int, workdir: Path, only: str | None, database_url: str | None
) -> dict[str, Any]:
    vault, drop = open_bench_vault(workdir, n, database_url)
    try:
        return measure(vault, n, rounds, workdir, only)
    finally:
        drop()


def measure(vault: Any, n: int, rounds: int, workdir: Path, only: str | None) -> dict[str, Any]:
    store = ArchiveStore(vault)
    SQLModel.metadata.create_all(
        vault.engine, tables=[PlainContact.__table__, PlainArchive.__table__, PlainAudit.__table__]
    )
    figures: dict[str, Any] = {"archives": n, "database": vault.engine.dialect.name}
    figures.update(bench_import(store, workdir, n))
    if only == "import":
        return figures

    numbers = [m.archive_no for m in store.archives.list(actor=ACTOR, limit=500, audit=False).items]
    figures.update(bench_reads(vault, store, numbers, rounds))

    t0 = time.perf_counter()
    reports = rotate(store, actor=ACTOR, levels=["internal", "secret", "top_secret"])
    rotate_s = time.perf_counter() - t0
    rewrapped = sum(r.rewrapped for r in reports)
    t0 = time.perf_counter()
    with Session(vault.engine) as s:
        table = PlainArchive.__table__
        ids = list(s.execute(sa.select(table.c.id)).scalars())
        for i in range(0, len(ids), 2000):
            s.execute(
                sa.update(table)
                .where(table.c.id == sa.bindparam("b_id"))
                .values(blob=sa.bindparam("b_blob")),
                [{"b_id": x, "b_blob": random.randbytes(60)} for x in ids[i : i + 2000]],
            )
            s.commit()
    plain_update_s = time.perf_counter() - t0
    return {
        **figures,
        "rotate_s": rotate_s,
        "rotate_rewrapped": rewrapped,
        "rotate_plain_update_s": plain_update_s,
        "rotate_ratio": rotate_s / plain_update_s,
        "rotate_100k_s_est": rotate_s * 100_000 / rewrapped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 archives; within a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--archives", type=int, default=None)
    parser.add_argument("--only", choices=["import"], default=None, help="run only this measure")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL database to run in (a schema of its own, dropped afterwards)",
    )
    args = parser.parse_args()
    n = args.archives or (10_000 if args.quick else 100_000)
    rounds = 400 if args.quick else 2000
    workdir = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    try:
        figures = run(n, rounds, workdir, args.only, args.database_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
        return
    t = Table(
        title=f"bench/store.py — {n:,} archives on {figures['database']}",
        caption=(
            f"load average {figures['import_load_before']:.1f} before the import, "
            f"{figures['import_load_after']:.1f} after ({os.cpu_count()} cores)"
        ),
    )
    t.add_column("measure")
    t.add_column("store", justify="right")
    t.add_column("baseline", justify="right")
    t.add_column("ratio", justify="right")
    t.add_column("target", justify="right")
    _import_rows(t, figures, n)
    if args.only != "import":
        _other_rows(t, figures)
    Console().print(t)


def _import_rows(t: Table, figures: dict[str, Any], n: int) -> None:
    t.add_row(
        f"import {n:,} (s)",
        f"{figures['import_s']:.1f}",
        f"{figures['import_plain_s']:.2f} plain bulk insert "
        f"({figures['import_plain_before_s']:.2f} before, "
        f"{figures['import_plain_after_s']:.2f} after)",
        f"{figures['import_ratio']:.1f}×",
        "≤ 4×",
    )
    t.add_row(
        "  same, CPU seconds (client side: with the worker, without the database server)",
        f"{figures['import_cpu_s']:.1f}",
        f"{figures['import_plain_cpu_s']:.2f}",
        f"{figures['import_cpu_ratio']:.1f}×",
        "",
    )
    t.add_row(
        "import 100,000 (s, est.)" if n != 100_000 else "import 100,000 (s)",
        f"{figures['import_100k_s_est']:.1f}",
        f"{figures['import_per_s']:,.0f} rows/s",
        "",
        "",
    )


def _other_rows(t: Table, figures: dict[str, Any]) -> None:
    t.add_row(
        "read contact group (µs, median)",
        f"{figures['read_store_us']:.0f}",
        f"{figures['read_plain_us']:.0f} plain SQLModel read",
        f"{figures['read_ratio']:.2f}×",
        "≤ 1.5×",
    )
    t.add_row(
        "  same, vs a plain Core read (no ORM)",
        f"{figures['read_store_us']:.0f}",
        f"{figures['read_plain_core_us']:.0f} plain Core read",
        f"{figures['read_ratio_vs_core']:.2f}×",
        "",
    )
    t.add_row(
        "audited read (µs, median)",
        f"{figures['audited_read_store_us']:.0f}",
        f"{figures['audited_read_plain_us']:.0f} plain read + insert + commit",
        f"{figures['audited_read_ratio']:.2f}×",
        "",
    )
    t.add_row(
        f"rotate {figures['rotate_rewrapped']:,} DEKs (s)",
        f"{figures['rotate_s']:.2f}",
        f"{figures['rotate_plain_update_s']:.2f} plain UPDATE",
        f"{figures['rotate_ratio']:.1f}×",
        "",
    )
    t.add_row(
        "rotate 100,000 (s, est.)" if figures["archives"] != 100_000 else "rotate 100,000 (s)",
        f"{figures['rotate_100k_s_est']:.1f}",
        "",
        "",
        "≤ 30 s",
    )


if __name__ == "__main__":
    main()
