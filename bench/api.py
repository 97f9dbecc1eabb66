"""Benchmark of the HTTP read path against a bare FastAPI endpoint, measured in one run.

    python bench/api.py            # 4,000 requests per side
    python bench/api.py --quick    # within a minute
    python bench/api.py --json     # one JSON object

Both servers are uvicorn processes started as `archive-vault serve` starts them
(bench/_serve.py; one worker each unless `--workers`) on 127.0.0.1. The vault side
serves `GET /customers/{archive_no}?groups=contact` for a salesperson's own
clients: token check, principal from the database, policy decision, one
transaction that appends the audit entry and decrypts, then JSON. The baseline
returns a body of the same size from a bare FastAPI route. The load generator is
bounded (a fixed number of requests from a fixed number of keep-alive clients),
and the two sides run in alternating rounds so machine noise hits both alike.
Target: the vault's throughput ≥ 0.5× the baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from api.security import hash_password  # noqa: E402
from audit.events import Actor  # noqa: E402
from foundation.db import transaction  # noqa: E402
from foundation.settings import Settings  # noqa: E402
from policies.directory import add_user  # noqa: E402
from vault.importer import bulk_insert  # noqa: E402
from vault.seed import SyntheticArchives  # noqa: E402
from vault.store import ArchiveStore  # noqa: E402
from vault.vault import init_vault  # noqa: E402

PASSWORD = "bench-password-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def prepare(workdir: Path, archives: int) -> None:
    """A vault with one salesperson and their clients."""
    vault = init_vault(Settings(data_dir=workdir / "var"))
    store = ArchiveStore(vault)
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
    store.audit.checkpoint_if_new()


def store_actor() -> Any:
    return Actor("bench", "system")


def _cpu_seconds(pid: int) -> float:
    """CPU time of a server process and its workers, from /proc (0 where it is unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, IndexError, ValueError):
        return 0.0
    return own + sum(_cpu_seconds(int(c)) for c in children)


def load(
    base: str, paths: list[str], headers: dict[str, str], requests: int, clients: int
) -> tuple[float, list[float]]:
    """Send ``requests`` GETs from ``clients`` keep-alive connections; returns req/s, latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    per = requests // clients

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            for _ in range(per):
                t0 = time.perf_counter()
                r = c.get(rng.choice(paths))
                mine.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return per * clients / elapsed, latencies


def run(
    requests: int, rounds: int, clients: int, archives: int, workers: int = 1
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="vault-bench-api-"))
    procs: list[subprocess.Popen] = []
    try:
        prepare(workdir, archives)
        env = {**os.environ, "VAULT_DATA_DIR": str(workdir / "var"), "PYTHONPATH": str(ROOT)}
        vport, bport = _free_port(), _free_port()
        serve = [sys.executable, str(ROOT / "bench" / "_serve.py")]
        procs.append(
            subprocess.Popen(
                [*serve, str(vport), str(workers), "api.app:app_factory", "--factory"],
                env=env,
                cwd=ROOT,
            )
        )
        vbase = f"http://127.0.0.1:{vport}"
        _wait(vbase + "/healthz")
        token = httpx.post(
            vbase + "/auth/token", data={"username": "zhang.wei", "password": PASSWORD}
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        listing = httpx.get(vbase + "/customers?limit=500", headers=headers).json()
        paths = [f"/customers/{a['archive_no']}?groups=contact" for a in listing["items"]]
        sample = httpx.get(vbase + paths[0], headers=headers)
        body_file = workdir / "body.json"
        body_file.write_text(sample.text, encoding="utf-8")
        procs.append(
            subprocess.Popen(
                [
                    *serve,
                    str(bport),
                    str(workers),
                    "_bare_app:app",
                    "--app-dir",
                    str(ROOT / "bench"),
                ],
                env={**env, "BENCH_BODY_FILE": str(body_file)},
                cwd=ROOT,
            )
        )
        bbase = f"http://127.0.0.1:{bport}"
        _wait(bbase + "/customers/x")
        load(vbase, paths[:20], headers, 200, clients)  # warm-up
        load(bbase, paths[:20], headers, 200, clients)
        vault_rps, bare_rps, vault_lat, bare_lat = [], [], [], []
        vault_cpu = bare_cpu = 0.0
        for _ in range(rounds):
            c0 = _cpu_seconds(procs[0].pid)
            rps, lat = load(vbase, paths, headers, requests // rounds, clients)
            vault_cpu += _cpu_seconds(procs[0].pid) - c0
            vault_rps.append(rps)
            vault_lat.extend(lat)
            c0 = _cpu_seconds(procs[1].pid)
            rps, lat = load(bbase, paths, headers, requests // rounds, clients)
            bare_cpu += _cpu_seconds(procs[1].pid) - c0
            bare_rps.append(rps)
            bare_lat.extend(lat)
        served = (requests // rounds // clients) * clients * rounds
        v, b = statistics.median(vault_rps), statistics.median(bare_rps)
        q = statistics.quantiles
        return {
            "database": "postgresql"
            if env.get("VAULT_DATABASE_URL", "").startswith("postgres")
            else "sqlite",
            "workers": workers,
            "vault_cpu_ms_per_request": vault_cpu / served * 1e3,
            "bare_cpu_ms_per_request": bare_cpu / served * 1e3,
            "requests_per_side": requests,
            "clients": clients,
            "archives": archives,
            "body_bytes": len(sample.content),
            "vault_rps": v,
            "bare_rps": b,
            "ratio": v / b,
            "vault_p50_ms": statistics.median(vault_lat) * 1e3,
            "vault_p99_ms": q(vault_lat, n=100)[98] * 1e3,
            "bare_p50_ms": statistics.median(bare_lat) * 1e3,
            "bare_p99_ms": q(bare_lat, n=100)[98] * 1e3,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn workers per side (> 1 needs VAULT_DATABASE_URL: PostgreSQL)",
    )
    args = parser.parse_args()
    requests, rounds = (1200, 4) if args.quick else (4000, 8)
    if args.workers > 1 and not os.environ.get("VAULT_DATABASE_URL", "").startswith("postgres"):
        parser.error("--workers > 1 needs PostgreSQL: set VAULT_DATABASE_URL")
    figures = run(requests, rounds, args.clients, 300 if args.quick else 2000, args.workers)
    if args.json:
        print(json.dumps(figures))
        return
    t = Table(
        title=f"bench/api.py — GET /customers/{{archive_no}}?groups=contact, "
        f"{figures['clients']} clients, {figures['body_bytes']} B body"
    )
    for column in ("side", "req/s (median of rounds)", "p50 ms", "p99 ms"):
        t.add_column(column, justify="right")
    t.add_row(
        "vault: auth + decision + audit + decrypt",
        f"{figures['vault_rps']:.0f}",
        f"{figures['vault_p50_ms']:.1f}",
        f"{figures['vault_p99_ms']:.1f}",
    )
    t.add_row(
        "bare FastAPI, same body",
        f"{figures['bare_rps']:.0f}",
        f"{figures['bare_p50_ms']:.1f}",
        f"{figures['bare_p99_ms']:.1f}",
    )
    t.add_row("ratio (target ≥ 0.5×)", f"{figures['ratio']:.2f}×", "", "")
    t.caption = (
        f"{figures['database']}, {figures['workers']} worker(s) per side; server CPU per "
        f"request: vault {figures['vault_cpu_ms_per_request']:.2f} ms, "
        f"bare {figures['bare_cpu_ms_per_request']:.2f} ms"
    )
    Console().print(t)


if __name__ == "__main__":
    main()
