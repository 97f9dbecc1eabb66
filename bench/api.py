"""Benchmark of the HTTP read path against a bare FastAPI endpoint, measured in one run.

    python bench/api.py                        # SQLite, 3 rounds of 8 s per side
    python bench/api.py --quick                # within a minute
    python bench/api.py --json                 # one JSON object
    python bench/api.py --workers 2 --database-url postgresql+psycopg://postgres@127.0.0.1/test

Both servers are uvicorn processes started as `archive-vault serve` starts them
(bench/_serve.py; the same number of workers on each side) on 127.0.0.1. The
vault side serves `GET /customers/{archive_no}?groups=contact` for a
salesperson's own clients: token check, principal from the database, policy
decision, one transaction that appends the audit entry and decrypts, then
JSON. The baseline returns the same body from a bare FastAPI route.

A third side, the floor (bench/_floor_app.py), serves the same body as the least
an audited, decrypted read can do: credential check, one SELECT of the sealed
row, AES-GCM, one durable INSERT of a MACed record, no framework. Its ratio to
the baseline is the most any implementation of the vault's guarantees reaches
here; ``--no-floor`` leaves it out.

The load comes from wrk (2 threads, 8 keep-alive connections, a fixed time per
round), round-robin over the salesperson's archives with the bearer token set;
the two sides run in alternating rounds so machine noise hits both alike.
Without wrk the Python client takes over, which on two cores caps the baseline:
its figures are marked. Any response that is not 2xx, or any socket error, fails
the run (exit status 1) instead of being averaged in.

With a PostgreSQL URL (``--database-url`` or VAULT_DATABASE_URL) the run creates
a database of its own next to the URL's and drops it at the end.
Targets: the vault's throughput ≥ 0.5× the baseline's on PostgreSQL (2 workers)
and ≥ 0.7× on SQLite (1 worker).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project ahead of bench/ (whose audit.py would shadow it)

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from api.security import hash_password  # noqa: E402
from audit.events import Actor  # noqa: E402
from bench import _floor_app, _pyload, _wrk  # noqa: E402
from bench._common import database, free_port, proc_cpu, stop, tree_cpu, wait_up  # noqa: E402
from foundation.db import transaction  # noqa: E402
from foundation.settings import Settings  # noqa: E402
from policies.directory import add_user  # noqa: E402
from vault.importer import bulk_insert  # noqa: E402
from vault.seed import SyntheticArchives  # noqa: E402
from vault.store import ArchiveStore  # noqa: E402
from vault.vault import init_vault  # noqa: E402

PASSWORD = "bench-password-123"
THREADS, CONNECTIONS = _wrk.THREADS, 8
TARGETS = {"postgresql": 0.5, "sqlite": 0.7}  # vault / bare, per database
PYTHON_CLIENT = "Python client (caps the baseline on 2 cores)"
Load = Callable[[str, float, int], _wrk.Round]  # base URL, seconds, first path's index


def prepare(workdir: Path, archives: int, database_url: str = "") -> None:
    """A vault with one salesperson and their clients."""
    settings = Settings(data_dir=workdir / "var", database_url=database_url)
    vault = init_vault(settings)
    log = vault.audit_log()
    store = ArchiveStore(vault, audit=log)
    with transaction(vault.engine) as session:
        user = add_user(
            session,
            username="zhang.wei",
            roles=["salesperson"],
            department="销售一部",
            clearance="secret",
        )
        user.password_hash = hash_password(PASSWORD)
    gen = SyntheticArchives(seed=5, owners=(("zhang.wei", "销售一部"),))
    rows = (
        store.filing.prepare({**r, "classification": "internal", "custodian": None})
        for r in gen.many(archives)
    )
    bulk_insert(store, rows, actor=store_actor(), total=archives, source="bench")
    log.checkpoint_if_new()
    vault.engine.dispose()


def prepare_floor(workdir: Path, url: str, paths: list[str], body: bytes) -> dict[str, str]:
    """The floor's sealed rows and empty record table (SQLite: its own file); its env."""
    keys = os.urandom(64)
    numbers = [p.removeprefix(_floor_app.PREFIX).split("?")[0] for p in paths]
    rows = [(no, *_floor_app.seal(keys[:32], no, body)) for no in numbers]
    if url:
        import psycopg

        db = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(db, autocommit=True) as conn, conn.transaction():
            for ddl in _floor_app.SCHEMA:
                conn.execute(ddl.format(serial="bigserial"))
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {_floor_app.ARCHIVE_TABLE} VALUES (%s, %s, %s)", rows)
    else:
        db = str(workdir / "floor.db")
        conn = _floor_app.connect_sqlite(db)
        try:
            for ddl in _floor_app.SCHEMA:
                conn.execute(ddl.format(serial="integer"))
            conn.executemany(f"INSERT INTO {_floor_app.ARCHIVE_TABLE} VALUES (?, ?, ?)", rows)
        finally:
            conn.close()
    return {"BENCH_FLOOR_DB": db, "BENCH_FLOOR_KEYS": keys.hex()}


def store_actor() -> Any:
    return Actor("bench", "system")


class _DatabaseCpu:
    """CPU seconds of the PostgreSQL backends serving the run's database (same machine)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool) if url else None

    def __call__(self) -> float | None:
        if self.engine is None:
            return None
        with self.engine.connect() as conn:
            pids = conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalars()
            return sum(proc_cpu(int(p)) for p in pids)


@dataclass
class Side:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    rounds: list[_wrk.Round] = field(default_factory=list)
    server_cpu_s: float = 0.0
    db_cpu_s: float | None = None
    body_bytes: int = 0


def _start(port: int, workers: int, app: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    serve = [sys.executable, str(ROOT / "bench" / "_serve.py"), str(port), str(workers)]
    return subprocess.Popen([*serve, *app], env=env, cwd=ROOT)


def _paths(base: str, headers: dict[str, str]) -> list[str]:
    """Every archive the salesperson may read, as the benchmark's request paths."""
    numbers: list[str] = []
    while True:
        page = httpx.get(
            f"{base}/customers",
            params={"limit": 500, "offset": len(numbers)},
            headers=headers,
            timeout=60,
        )
        page.raise_for_status()
        items = page.json()["items"]
        numbers += [a["archive_no"] for a in items]
        if len(items) < 500:
            return [f"/customers/{n}?groups=contact" for n in numbers]


def measure(
    sides: list[Side],
    load: Load,
    rounds: int,
    seconds: float,
    db_cpu: _DatabaseCpu,
) -> None:
    """Alternating rounds, the order swapped each round; CPU read around each one.

    Each round goes on through the paths where the side's previous one stopped.
    """
    for side in sides:  # warm-up, not counted
        load(side.base, min(2.0, seconds / 2), 0)
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            cpu0, db0 = tree_cpu(side.proc.pid), db_cpu()
            side.rounds.append(load(side.base, seconds, sum(x.requests for x in side.rounds)))
            side.server_cpu_s += tree_cpu(side.proc.pid) - cpu0
            db1 = db_cpu()
            if db0 is not None and db1 is not None:
                side.db_cpu_s = (side.db_cpu_s or 0.0) + max(0.0, db1 - db0)


def _summary(side: Side) -> dict[str, Any]:
    rr = side.rounds
    served = sum(r.requests for r in rr)
    per_request = 1e3 / served if served else float("nan")
    return {
        "rps": statistics.median(r.rps for r in rr),
        "rps_range": [min(r.rps for r in rr), max(r.rps for r in rr)],
        "rps_rounds": [round(r.rps, 1) for r in rr],
        "p50_ms": statistics.median(r.p50_ms for r in rr),
        "p50_ms_range": [min(r.p50_ms for r in rr), max(r.p50_ms for r in rr)],
        "p99_ms": statistics.median(r.p99_ms for r in rr),
        "p99_ms_range": [min(r.p99_ms for r in rr), max(r.p99_ms for r in rr)],
        "requests": served,
        "server_cpu_ms_per_request": side.server_cpu_s * per_request,
        "db_cpu_ms_per_request": None if side.db_cpu_s is None else side.db_cpu_s * per_request,
        "client_cpu_ms_per_request": sum(r.client_cpu_s for r in rr) * per_request,
        "non_2xx": sum(r.non_2xx for r in rr),
        "socket_errors": sum(r.socket_errors for r in rr),
        "body_bytes": side.body_bytes,
    }


def make_load(
    wrk: str | None, workdir: Path, paths: list[str], token: str, connections: int
) -> tuple[str, Load]:
    """wrk with its script in ``workdir`` if there is a wrk, else the Python client, marked."""
    if wrk is None:
        return PYTHON_CLIENT, partial(
            _pyload.run, paths=paths, token=token, connections=connections
        )
    script = workdir / "read.lua"
    script.write_text(_wrk.lua_script(paths, THREADS), encoding="utf-8")
    env = {**os.environ, _wrk.TOKEN_ENV: token}
    return "wrk", partial(_wrk.run, wrk, script=script, connections=connections, env=env)


def run(
    rounds: int,
    seconds: float,
    connections: int,
    archives: int,
    workers: int = 1,
    database_url: str = "",
    wrk: str | None = None,
    floor: bool = True,
) -> dict[str, Any]:
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="vault-bench-api-"))
    procs: list[subprocess.Popen[bytes]] = []
    least: Side | None = None
    try:
        with database(database_url) as url, socket.socket(socket.AF_UNIX) as feed:
            try:
                env = {k: v for k, v in os.environ.items() if k != "VAULT_DATABASE_URL"}
                env |= {"VAULT_DATA_DIR": str(workdir / "var"), "PYTHONPATH": str(ROOT)}
                if url:
                    env["VAULT_DATABASE_URL"] = url
                # The baseline starts first and waits for its body (see bench/_bare_app.py).
                feed.bind(str(workdir / "body.sock"))
                feed.listen(workers)
                feed.settimeout(120)
                bare_env = {**env, "BENCH_BODY_SOCKET": str(workdir / "body.sock")}
                bare_app = ["_bare_app:app", "--app-dir", str(ROOT / "bench")]
                bport, vport = free_port(), free_port()
                procs.append(_start(bport, workers, bare_app, bare_env))
                prepare(workdir, archives, url)
                procs.append(_start(vport, workers, ["api.app:app_factory", "--factory"], env))
                bare = Side("bare", f"http://127.0.0.1:{bport}", procs[0])
                vault = Side("vault", f"http://127.0.0.1:{vport}", procs[1])
                wait_up(vault.base + "/healthz", vault.proc)
                token = httpx.post(
                    vault.base + "/auth/token",
                    data={"username": "zhang.wei", "password": PASSWORD},
                ).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                paths = _paths(vault.base, headers)
                sample = httpx.get(vault.base + paths[0], headers=headers)
                sample.raise_for_status()
                vault.body_bytes = len(sample.content)
                for _ in range(workers):  # each worker of the baseline asks once
                    conn, _addr = feed.accept()
                    with conn:
                        conn.sendall(sample.content)
                wait_up(bare.base + "/customers/x", bare.proc)
                same = httpx.get(bare.base + paths[0])
                if same.json() != sample.json():
                    raise RuntimeError("the baseline's body differs from the vault's")
                bare.body_bytes = len(same.content)
                sides = [vault, bare]
                if floor:
                    floor_env = env | prepare_floor(workdir, url, paths, sample.content)
                    floor_env["BENCH_FLOOR_TOKEN"] = token
                    fport = free_port()
                    app = ["_floor_app:from_env", "--factory", "--app-dir", str(ROOT / "bench")]
                    procs.append(_start(fport, workers, app, floor_env))
                    least = Side("floor", f"http://127.0.0.1:{fport}", procs[-1])
                    sides.insert(1, least)
                    wait_up(least.base + "/healthz", least.proc)
                    same = httpx.get(least.base + paths[0], headers=headers)
                    if same.status_code != 200 or same.content != sample.content:
                        raise RuntimeError("the floor's body differs from the vault's")
                    least.body_bytes = len(same.content)
                client, load = make_load(wrk, workdir, paths, token, connections)
                measure(sides, load, rounds, seconds, _DatabaseCpu(url))
            finally:
                stop(procs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    v, b = _summary(vault), _summary(bare)
    ratios = [x.rps / y.rps for x, y in zip(vault.rounds, bare.rounds, strict=True)]
    least_figures: dict[str, Any] = {}
    if least is not None:
        least_figures["floor"] = f = _summary(least)
        least_figures["floor_ratio"] = f["rps"] / b["rps"]
        least_figures["floor_ratio_range"] = _extremes(
            [x.rps / y.rps for x, y in zip(least.rounds, bare.rounds, strict=True)]
        )
        least_figures["vault_to_floor"] = v["rps"] / f["rps"]
    failed = sum(s["non_2xx"] + s["socket_errors"] for s in (v, b, least_figures.get("floor", v)))
    target = TARGETS["postgresql" if database_url else "sqlite"]
    return {
        "client": client,
        "database": "postgresql" if database_url else "sqlite",
        "workers": workers,
        "threads": THREADS if wrk else connections,
        "connections": connections,
        "rounds": rounds,
        "round_seconds": seconds,
        "archives": archives,
        "paths": len(paths),
        "vault": v,
        "bare": b,
        "ratio": v["rps"] / b["rps"],
        "target": target,
        "target_met": v["rps"] / b["rps"] >= target,
        "ratio_range": _extremes(ratios),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        **least_figures,
        "ok": failed == 0,
    }


def _extremes(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def _range(values: list[float], fmt: str) -> str:
    return f"{values[0]:{fmt}}–{values[1]:{fmt}}"


def print_table(f: dict[str, Any]) -> None:
    t = Table(
        title=f"bench/api.py: GET /customers/{{no}}?groups=contact, {f['database']}, "
        f"{f['workers']} worker(s) per side, {f['client']}, {f['connections']} connections, "
        f"{f['rounds']} rounds × {f['round_seconds']:g} s per side"
    )
    for column in ("side", "req/s", "range", "p50 ms", "p99 ms", "CPU ms/req", "failed"):
        t.add_column(column, justify="right")
    labels = [("vault", "vault"), ("floor", "least audited read"), ("bare", "bare FastAPI")]
    for key, label in labels:
        if key not in f:
            continue
        s = f[key]
        cpu = f"{s['server_cpu_ms_per_request']:.2f}"
        if s["db_cpu_ms_per_request"] is not None:
            cpu += f" +{s['db_cpu_ms_per_request']:.2f} db"
        failed = s["non_2xx"] + s["socket_errors"]
        t.add_row(
            label,
            f"{s['rps']:,.0f}",
            _range(s["rps_range"], ",.0f"),
            f"{s['p50_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            cpu,
            f"[bold red]{failed:,}[/]" if failed else "0",
        )
    mark = "✓" if f["target_met"] else "✗"
    t.add_row(
        f"vault / bare (≥ {f['target']}× {mark})",
        f"{f['ratio']:.2f}×",
        _range(f["ratio_range"], ".2f"),
    )
    if "floor" in f:
        t.add_row("least / bare", f"{f['floor_ratio']:.2f}×", _range(f["floor_ratio_range"], ".2f"))
        t.add_row("vault / least", f"{f['vault_to_floor']:.2f}×")
    t.caption = (
        "vault: token + principal + decision + audited decrypt; least: credential, one "
        "SELECT, AES-GCM, one durable INSERT, no framework (the ceiling for any audited "
        "read here); bare: a FastAPI route "
        f"returning the same {f['bare']['body_bytes']} B body. Medians of the rounds; CPU is "
        "the server processes' (+ PostgreSQL backends'). Client CPU/req: vault "
        f"{f['vault']['client_cpu_ms_per_request']:.3f} ms, bare "
        f"{f['bare']['client_cpu_ms_per_request']:.3f} ms. Load average "
        f"{f['load_average_before'][0]:.2f} before, {f['load_average_after'][0]:.2f} after."
    )
    Console().print(t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter rounds, fewer archives")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument(
        "--no-floor", action="store_true", help="leave out the least-audited-read side"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn workers per side (> 1 needs PostgreSQL)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("VAULT_DATABASE_URL", ""),
        help="PostgreSQL server to create the run's database on "
        "(default: VAULT_DATABASE_URL, else SQLite)",
    )
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql+psycopg:// URL")
    if args.workers > 1 and not args.database_url:
        parser.error("--workers > 1 needs PostgreSQL: --database-url or VAULT_DATABASE_URL")
    if not 1 <= args.connections <= 64:
        parser.error("--connections must be between 1 and 64")
    # SIGTERM unwinds like Ctrl-C, so the servers stop and the run's database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk = _wrk.find_wrk()
    rounds, seconds, archives = (3, 2.0, 300) if args.quick else (3, 8.0, 2000)
    figures = run(
        rounds,
        seconds,
        args.connections,
        archives,
        args.workers,
        args.database_url,
        wrk,
        floor=not args.no_floor,
    )
    if args.json:
        print(json.dumps(figures))
    else:
        print_table(figures)
    if not figures["ok"]:
        Console(stderr=True).print(
            "[bold red]FAILED: some responses were not 2xx or hit socket errors ("
            + "; ".join(
                f"{side}: {figures[side]['non_2xx']} non-2xx, "
                f"{figures[side]['socket_errors']} socket errors"
                for side in ("vault", "floor", "bare")
                if side in figures
            )
            + "); these figures do not measure the read path.[/]"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
