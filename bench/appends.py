"""Durable audit appends from 8 concurrent writers on PostgreSQL, against pgbench's inserts.

    .venv/bin/python bench/appends.py                 # 2 rounds of 10 s per side, alternating
    .venv/bin/python bench/appends.py --seconds 30    # 2 rounds of 30 s per side
    .venv/bin/python bench/appends.py --quick         # 1 round of 5 s per side, under a minute
    .venv/bin/python bench/appends.py --json          # one JSON object instead of the table
    .venv/bin/python bench/appends.py --database-url postgresql+psycopg://postgres@host:5432/postgres

The run creates a database of its own (``bench_appends_<random>``, through the
admin URL) and drops it at the end, failed runs included. Both sides write to
it, in alternating timed phases, so they share the server, its settings, the
disk and the machine's load:

* baseline: ``pgbench -n -c 8 -j 2 -T <s>``, each transaction one INSERT of a
  300-byte row into a plain table (bigserial key, text, timestamp), committed
  durably as the server is configured (``bench/_pgbench.py``);
* vault: a vault initialised on that database, and 8 writer processes (spawned,
  so no GIL is shared) each in a loop of the hot read path's append: a raw DBAPI
  transaction (``foundation.rawsql.raw_autocommit``), ``AuditLog.append`` of one read
  event, the commit, then ``AuditLog.committed`` so the log signs its
  checkpoints as the service would. Latency is append + commit.

The rate is the appends committed within each round's duration, divided by it
(pgbench reports its ``-T`` run over the same duration). An append committed
after the deadline is in the log, and in the count the verification must match,
but not in the rate.

The figure held to a target is appends/s over pgbench's inserts/s (≥ 0.5×). The
bench uses only the log's public calls, ``append`` (whatever it returns) and
``committed``; if the log has a sequencer (``AuditLog.integrate``) it is run and
timed after the writers stop. Then ``AuditLog.verify`` must pass and cover
exactly the entries the writers counted, or the run exits nonzero.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the project, not bench/ (whose audit.py would shadow the package)

from audit.errors import AuditWriteFailed  # noqa: E402
from audit.events import Actor, AuditAction, AuditEvent  # noqa: E402
from audit.log import AuditLog  # noqa: E402
from bench._pgbench import (  # noqa: E402
    PgbenchError,
    PgbenchResult,
    Target,
    create_sql,
    run_pgbench,
    write_script,
)
from foundation.db import make_engine  # noqa: E402
from foundation.rawsql import raw_autocommit  # noqa: E402
from foundation.settings import Settings  # noqa: E402
from vault.keys import load_key_file  # noqa: E402

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WRITERS = 8
TARGET_RATIO = 0.5
SERVER_SETTINGS = ("synchronous_commit", "fsync", "wal_sync_method", "server_version")
READY_TIMEOUT_S = 120.0


class BenchError(RuntimeError):
    """The run cannot go on; the message names what failed (never a secret or a row)."""


# -- the writers (each in its own spawned process) -------------------------------------


def _open_log(url: str, data_dir: str) -> AuditLog:
    """The vault's audit log, built as ``Vault.audit_log`` builds it (engine, key file, settings).

    Not through ``open_vault``: the writers would import the migrations (Alembic)
    for nothing, and eight processes importing start slowly on two cores.
    """
    settings = Settings(data_dir=Path(data_dir), database_url=url)
    keys = load_key_file(settings.resolved_key_file)
    return AuditLog(engine=make_engine(url), keys=keys, settings=settings)


def _writer(index: int, tasks: Any, results: Any) -> None:
    """Open the vault it is sent, append once to warm up, then run each timed round.

    Started before the vault exists, so that its imports (seconds of CPU per
    process on this machine) overlap the parent's setup instead of adding to it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    opening = tasks.get()
    if opening is None:
        return
    try:
        log = _open_log(*opening)
        engine = log.engine
        event = AuditEvent(
            action=AuditAction.READ,
            actor=Actor(f"bench{index}", "salesperson", "127.0.0.1"),
            archives=("KH-2026-000001",),
            groups=("contact",),
        )
        with raw_autocommit(engine) as tx:
            log.append(tx, event)
        log.committed()
    except Exception as exc:  # noqa: BLE001 - the parent is told its class, never its text
        results.put(("failed", index, type(exc).__name__))
        return
    results.put(("ready", index, 1))
    while (task := tasks.get()) is not None:
        start_at, end_at = task
        time.sleep(max(0.0, start_at - time.time()))
        latencies: list[float] = []
        late = 0  # committed after the deadline: in the log and the latencies, not the rate
        errors: dict[str, int] = {}
        while time.time() < end_at:
            t0 = time.perf_counter()
            try:
                with raw_autocommit(engine) as tx:
                    log.append(tx, event)  # its return value (a seq today) is not needed
            except (AuditWriteFailed, sa.exc.SQLAlchemyError) as exc:  # rolled back; counted
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)
            late += time.time() > end_at
            log.committed()
        results.put(("round", index, latencies, late, errors))
    engine.dispose()


class Writers:
    """The writer processes: spawned at once, then sent the vault, then one round at a time."""

    def __init__(self, count: int = WRITERS) -> None:
        ctx = mp.get_context("spawn")
        self.results: Any = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(count)]
        self.procs = [
            ctx.Process(target=_writer, args=(i, q, self.results), daemon=True)
            for i, q in enumerate(self.tasks)
        ]
        self.warmups = 0
        for p in self.procs:
            p.start()

    def _get(self, timeout: float) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return tuple(self.results.get(timeout=1.0))
            except queue.Empty:  # check the writers are alive
                dead = [p.exitcode for p in self.procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise BenchError(f"a writer stopped or hung (exit codes {dead})") from None

    def open(self, url: str, data_dir: str) -> None:
        """Send every writer the vault and wait until each has appended once."""
        for q in self.tasks:
            q.put((url, data_dir))
        for _ in self.procs:
            msg = self._get(READY_TIMEOUT_S)
            if msg[0] != "ready":
                raise BenchError(f"writer {msg[1]} could not start: {msg[2]}")
            self.warmups += int(msg[2])

    def round(self, seconds: float) -> dict[str, Any]:
        start_at = time.time() + 0.5
        for q in self.tasks:
            q.put((start_at, start_at + seconds))
        latencies: list[float] = []
        late = 0
        errors: dict[str, int] = {}
        for _ in self.procs:
            msg = self._get(seconds + 120)
            latencies.extend(msg[2])
            late += msg[3]
            for name, n in msg[4].items():
                errors[name] = errors.get(name, 0) + n
        # What committed within the duration, over the duration (see the module docstring).
        return {
            "appends": len(latencies) - late,
            "late": late,
            "window_s": seconds,
            "per_s": (len(latencies) - late) / seconds,
            "latencies": latencies,
            "errors": errors,
        }

    def stop(self, *, now: bool = False) -> None:
        """Let each writer finish and close its connections; ``now``: terminate them at once."""
        if not now:
            for q in self.tasks:
                q.put(None)
            # Every entry is committed and counted by now: a writer slow to exit is ended.
            deadline = time.monotonic() + 3
            for p in self.procs:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)


# -- the database ----------------------------------------------------------------------


@contextmanager
def bench_database(admin_url: str) -> Iterator[sa.URL]:
    """A fresh database for this run, dropped afterwards whatever happened."""
    try:
        admin_at = sa.make_url(admin_url)
    except sa.exc.ArgumentError:
        raise BenchError("--database-url is not a database URL") from None
    if admin_at.get_backend_name() != "postgresql":
        raise BenchError("--database-url must name a PostgreSQL server (postgresql+psycopg://…)")
    admin = sa.create_engine(admin_at, isolation_level="AUTOCOMMIT")
    name = f"bench_appends_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        where = f"{admin_at.host or 'local socket'}:{admin_at.port or 5432}"
        orig = getattr(exc, "orig", None) or exc
        said = (str(orig).strip().splitlines() or [""])[0][:200]
        raise BenchError(
            f"PostgreSQL is unreachable at {where}: {type(orig).__name__}: {said}"
        ) from None
    try:
        yield admin_at.set(database=name)
    finally:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except sa.exc.SQLAlchemyError as exc:
            raise BenchError(f"could not drop the run's database {name}; drop it by hand") from exc
        finally:
            admin.dispose()


def server_settings(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {s: str(conn.exec_driver_sql(f"SHOW {s}").scalar()) for s in SERVER_SETTINGS}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# -- the run ---------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) < 2:
        return sorted_values[0] if sorted_values else float("nan")
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(q) - 1]


def _integrate(log: Any) -> tuple[int | None, float, str | None] | None:
    """Run the log's sequencer if it has one: (entries it says it integrated, seconds, error).

    A failing sequencer is reported by its exception's class and the run goes on
    to the verification, which then names what is missing from the chain.
    """
    integrate = getattr(log, "integrate", None)
    if not callable(integrate):
        return None
    t0 = time.perf_counter()
    try:
        returned = integrate()
    except Exception as exc:  # noqa: BLE001 - reported in the table and the JSON
        return None, time.perf_counter() - t0, type(exc).__name__
    took = time.perf_counter() - t0
    count = getattr(returned, "count", returned)  # ``Integrated`` names its count
    return (count if type(count) is int else None), took, None


def _entries_before(url: str, data_dir: str) -> int:
    """Entries the log holds before the writers start (none from ``init_vault`` today)."""
    log = _open_log(url, data_dir)
    try:
        _integrate(log)
        report = log.verify()
        if not report.ok:
            raise BenchError(f"the new vault's log does not verify: {report.summary()}")
        return int(report.entries)
    finally:
        log.engine.dispose()


def _sequencer_and_verify(url: str, data_dir: str, expected: int, appended: int) -> dict[str, Any]:
    """Integrate queued entries if the log has a sequencer, then verify the whole log."""
    log = _open_log(url, data_dir)
    out: dict[str, Any] = {"sequencer": None}
    try:
        ran = _integrate(log)
        if ran is not None:
            said, took, error = ran
            n = appended if said is None else said
            out["sequencer"] = {
                "entries": n,
                "entries_from": "appends counted" if said is None else "integrate()'s return",
                "seconds": took,
                "per_s": n / took if took > 0 else None,
                "error": error,
            }
        t0 = time.perf_counter()
        report = log.verify()
        out["verify_s"] = time.perf_counter() - t0
        covered = getattr(report, "entries", None)
        out["verify_ok"] = bool(report.ok)
        out["verify_entries"] = covered
        out["verify_expected"] = expected
        out["verify_summary"] = report.summary().split(";")[0]
        out["verify_matches_count"] = bool(report.ok and covered == expected)
    finally:
        log.engine.dispose()
    return out


class Phases:
    """The run's steps on a progress bar (stderr), and the load average before each."""

    def __init__(self, progress: Any, total: int) -> None:
        self.progress = progress
        self.name = "setup (writer processes, database, vault)"
        self.step = progress.add_task(self.name, total=total)
        self.load = [_load()]
        self.took: dict[str, float] = {}
        self._since = time.perf_counter()

    def next(self, description: str) -> None:
        now = time.perf_counter()
        self.took[self.name] = round(now - self._since, 2)
        self.name, self._since = description, now
        self.progress.advance(self.step)
        self.progress.update(self.step, description=description)
        self.load.append(_load())


def _measure(
    url: sa.URL, tmp: Path, writers: Writers, seconds: int, rounds: int, phases: Phases
) -> dict[str, Any]:
    """Set up the vault and the baseline's table, run the alternating rounds, then verify."""
    from vault.vault import init_vault  # here, not at the top: the writers do not need it

    plain = url.render_as_string(hide_password=False)  # handed to the writers, never printed
    data_dir = str(tmp / "var")
    vault = init_vault(Settings(data_dir=Path(data_dir), database_url=plain))
    server = server_settings(vault.engine)
    with vault.engine.begin() as conn:
        conn.exec_driver_sql(create_sql())
    vault.engine.dispose()
    before = _entries_before(plain, data_dir)
    script = write_script(tmp)
    target = Target(url.database or "", url.host, url.port, url.username, url.password)
    writers.open(plain, data_dir)
    pg_rounds: list[PgbenchResult] = []
    vault_rounds: list[dict[str, Any]] = []
    for r in range(rounds):
        phases.next(f"pgbench, round {r + 1} of {rounds}")
        pg_rounds.append(run_pgbench(target, script, seconds))
        phases.next(f"vault appends, round {r + 1} of {rounds}")
        vault_rounds.append(writers.round(seconds))
    phases.next("stopping the writers")
    writers.stop()
    phases.next("sequencer and verification")
    counted = writers.warmups + sum(v["appends"] + v["late"] for v in vault_rounds)
    checked = _sequencer_and_verify(plain, data_dir, before + counted, counted)
    phases.next("dropping the run's database")
    return (
        {"server": server, "entries_before": before, "appends_counted": counted}
        | checked
        | {
            "pg_rounds": pg_rounds,
            "vault_rounds": vault_rounds,
        }
    )


def _summary(pg_rounds: list[PgbenchResult], vault_rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of both sides over all rounds: rates, ratio, latencies, failures."""
    lat = sorted(x for v in vault_rounds for x in v["latencies"])
    appends = sum(v["appends"] for v in vault_rounds)
    appends_per_s = appends / sum(v["window_s"] for v in vault_rounds)
    pg_tps = statistics.fmean(p.tps for p in pg_rounds)
    pg_lat = [p.latency_avg_ms for p in pg_rounds if p.latency_avg_ms is not None]
    errors: dict[str, int] = {}
    for v in vault_rounds:
        for name, n in v["errors"].items():
            errors[name] = errors.get(name, 0) + n
    return {
        "appends_per_s": appends_per_s,
        "appends_per_s_rounds": [v["per_s"] for v in vault_rounds],
        "pgbench_tps": pg_tps,
        "pgbench_tps_rounds": [p.tps for p in pg_rounds],
        "pgbench_failed": sum(p.failed or 0 for p in pg_rounds),
        "pgbench_latency_avg_ms": statistics.fmean(pg_lat) if pg_lat else None,
        "ratio": appends_per_s / pg_tps,
        "target_ratio": TARGET_RATIO,
        "target_met": appends_per_s / pg_tps >= TARGET_RATIO,
        "latency_p50_ms": _percentile(lat, 50) * 1000,
        "latency_p99_ms": _percentile(lat, 99) * 1000,
        "appends_timed": appends,
        "appends_late": sum(v["late"] for v in vault_rounds),
        "append_errors": errors,
    }


def run(args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    seconds = 5 if args.quick else args.seconds
    rounds = 1 if args.quick else 2
    started = time.perf_counter()
    phases = Phases(progress, total=2 * rounds + 4)
    writers = Writers()  # their imports overlap the database's and the vault's setup
    try:
        with (
            bench_database(args.database_url) as url,
            tempfile.TemporaryDirectory(prefix="bench-appends-") as tmp,
        ):
            try:
                measured = _measure(url, Path(tmp), writers, seconds, rounds, phases)
            except BaseException:
                writers.stop(now=True)  # before the database is dropped under them
                raise
    finally:
        writers.stop(now=True)  # a no-op once they have stopped
    result: dict[str, Any] = {"quick": args.quick, "seconds_per_round": seconds}
    result |= {"rounds_per_side": rounds, "writers": WRITERS, "pgbench_clients": 8}
    result |= _summary(measured.pop("pg_rounds"), measured.pop("vault_rounds")) | measured
    phases.next("done")
    load = phases.load
    result["load_average"] = {"min": min(load), "max": max(load), "samples": load}
    result["cores"] = os.cpu_count()
    result["phase_s"] = phases.took
    result["elapsed_s"] = time.perf_counter() - started
    return result


# -- the report ------------------------------------------------------------------------


def _range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:,.0f}" if len(values) == 1 or round(lo) == round(hi) else f"{lo:,.0f}–{hi:,.0f}"


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    srv = r["server"]
    load = r["load_average"]
    title = (
        f"bench/appends.py: {r['writers']} writers vs pgbench -c {r['pgbench_clients']} "
        f"({r['rounds_per_side']} × {r['seconds_per_round']} s per side"
        f"{', quick' if r['quick'] else ''})"
    )
    caption = (
        f"PostgreSQL {srv['server_version']}: synchronous_commit={srv['synchronous_commit']}, "
        f"fsync={srv['fsync']}, wal_sync_method={srv['wal_sync_method']}; "
        f"load average {load['min']:.1f}–{load['max']:.1f} on {r['cores']} cores"
    )
    t = Table(title=title, caption=caption)
    for column in ("measure", "figure", "rounds", "target"):
        t.add_column(column)
    ok = "✓" if r["target_met"] else "✗"
    t.add_row(
        "audit appends/s (8 processes)",
        f"{r['appends_per_s']:,.0f}",
        _range(r["appends_per_s_rounds"]),
        "",
    )
    t.add_row(
        "pgbench inserts/s (8 clients)",
        f"{r['pgbench_tps']:,.0f}",
        _range(r["pgbench_tps_rounds"]),
        "",
    )
    t.add_row("ratio", f"{r['ratio']:.2f}×", "", f"≥ {r['target_ratio']}× {ok}")
    t.add_row("append+commit p50", f"{r['latency_p50_ms']:.2f} ms", "", "")
    t.add_row("append+commit p99", f"{r['latency_p99_ms']:.2f} ms", "", "")
    if r["pgbench_latency_avg_ms"] is not None:
        t.add_row("pgbench latency avg", f"{r['pgbench_latency_avg_ms']:.2f} ms", "", "")
    seq = r["sequencer"]
    if seq is not None and seq["error"] is not None:
        t.add_row("sequencer", f"FAILED ({seq['error']}) after {seq['seconds']:.2f} s", "", "")
    elif seq is not None:
        t.add_row(
            "sequencer",
            f"{seq['entries']:,} entries integrated in {seq['seconds']:.2f} s "
            f"({seq['per_s'] or 0:,.0f} entries/s)",
            f"({seq['entries_from']})",
            "",
        )
    verified = "passes" if r["verify_ok"] else "FAILS"
    t.add_row(
        "verify",
        f"{verified}: {_count(r['verify_entries'])} entries in {r['verify_s']:.2f} s",
        f"expected {r['verify_expected']:,}",
        "= counted " + ("✓" if r["verify_matches_count"] else "✗"),
    )
    if r["append_errors"] or r["pgbench_failed"]:
        t.add_row("failed appends / inserts", str(r["append_errors"]), str(r["pgbench_failed"]), "")
    Console().print(t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url", default=ADMIN_URL, help="admin URL (a database to CREATE from)"
    )
    parser.add_argument(
        "--seconds", type=int, default=10, help="seconds per round and side (2 rounds)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 5 s per side, under a minute"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    # A plain kill drops the run's database too: SystemExit unwinds through its finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from rich.console import Console
    from rich.progress import Progress

    try:
        with Progress(console=Console(stderr=True), transient=True, disable=args.json) as bar:
            result = run(args, bar)
    except (BenchError, PgbenchError) as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        print(f"bench/appends.py: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    if not result["verify_matches_count"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
