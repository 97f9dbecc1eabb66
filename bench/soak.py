"""Soak test: a mixed workload against `archive-vault serve` for minutes, then the audit check.

    python bench/soak.py                      # 10 minutes, PostgreSQL, 2 workers
    python bench/soak.py --quick              # within about a minute (30 s of load)
    python bench/soak.py --json               # one JSON object
    python bench/soak.py --sqlite             # the embedded SQLite vault, 1 worker
    python bench/soak.py --database-url postgresql+psycopg://postgres@127.0.0.1/test

What runs. A demo vault (`archive-vault demo --no-serve`: the demo's accounts,
whose published password is demo-vault-2026, and synthetic archives) in a
temporary directory and, on PostgreSQL, in a database of its own beside the
URL's (`bench_soak_<random>`, dropped at the end with the role `init` made for
it, failed runs included). Then `archive-vault serve --workers 2` on a free port
of 127.0.0.1, and for the run's length, all at once:

* four wrk processes, one per stateless kind, each with its own script and
  connections (bench/_soak_wrk.py): reads of the contact group of the readers'
  own clients (zhang.wei, wang.fang), blind-index searches by mobile and by name
  (`POST /customers/search`: the values stay out of URLs and off the disk),
  customer-list pages (`GET /customers?owner=…&limit=20&offset=…`, also by a
  department head), and sign-ins (`POST /auth/token`, four accounts). Reads go
  as fast as their connections allow; searches and list pages pause 100 ms
  between requests on each connection, sign-ins a second: reads dominate, as
  in an office, and the Argon2 check of a sign-in does not crowd out the rest.
* one Python thread walking the stateful flows (bench/_soak_flows.py) at one
  flow every few seconds: view and loan requests filed by a salesperson and
  signed along their chains, the grant then used; copy requests approved and
  exported.
* one thread sampling each worker's RSS (bench/_soak_memory.py).

Sign-in throttling. Sign-ins from wrk all come from 127.0.0.1 and succeed;
a success gives its reservation back, but the address counter is raised for the
run (VAULT_LOGIN_ADDRESS_MAX_FAILURES=1000000) so that concurrent attempts can
never trip it, and 429s are counted apart from 5xx in any case. The token
lifetime is raised to outlast the run (wrk's tokens are fixed when it starts).

Afterwards the server is stopped, queued audit entries are chained, and every
response that returned content is matched with its audit entry
(bench/_soak_audit.py: exactly for the flows, at least as many entries as
counted 2xx for the wrk kinds, and why), then `archive-vault audit verify` runs.

Fails (exit status 1) on any 5xx or socket error, any flow that could not be
finished, any missing or unexplained entry, a failed verify, a worker replaced
during the run, or a worker's RSS growing by the limit or more (default 10 %)
from the end of the warm-up (the first 20 % of the run) to the end; with
--quick the growth is reported but does not fail the run (its warm-up is six
seconds, and a worker's first exports and loans still load code and fill caches).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project ahead of bench/ (whose audit.py would shadow it)

import httpx  # noqa: E402

from bench import _soak_audit, _soak_flows, _soak_memory  # noqa: E402
from bench._common import database, free_port, stop, tree_cpu, wait_up  # noqa: E402
from bench._soak_wrk import Counted, Item, Kind, Running  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1/test"
PASSWORD = "demo-vault-2026"  # the demo's published password (cli.service.DEMO_PASSWORD)
READERS = ("zhang.wei", "wang.fang")  # wrk's readers and searchers: their own clients
LISTERS = (("zhang.wei", "zhang.wei"), ("wang.fang", "wang.fang"), ("head.sales2", "liu.yang"))
SIGN_INS = ("head.sales2", "sun.li", "zhou.gm", "visitor.wu")
# kind: (connections, pause between requests on a connection in ms)
SHAPE = {"read": (6, 0), "search": (2, 100), "list": (2, 100), "login": (1, 1000)}
ACTIONS = {
    "read": "archive:read",
    "search": "archive:search",
    "list": "archive:list",
    "login": "auth:login",
}
SEARCH_VALUES_PER_READER = 40


@dataclass(frozen=True)
class Config:
    seconds: float
    database_url: str = ""  # '' is SQLite
    workers: int = 2
    customers: int = 2000
    flow_interval: float = 3.0
    rss_every: float = 5.0
    warm_up: float = 0.2
    rss_limit: float = 0.10
    # Whether RSS growth fails the run: not in a --quick run, whose warm-up is seconds
    # long and whose growth is mostly the warm-up's (reported all the same).
    rss_counts: bool = True


def _cli() -> list[str]:
    """`archive-vault` of this interpreter's environment (the installed console script)."""
    script = Path(sys.executable).with_name("archive-vault")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cli.main import main; main()"]


def _env(workdir: Path, url: str, seconds: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env |= {
        "VAULT_DATA_DIR": str(workdir / "var"),
        "PYTHONPATH": str(ROOT),
        "VAULT_LOGIN_ADDRESS_MAX_FAILURES": "1000000",
        "VAULT_TOKEN_TTL_MINUTES": str(min(24 * 60, int(seconds // 60) + 30)),
    }
    if url:
        env["VAULT_DATABASE_URL"] = url
    return env


def _token(client: httpx.Client, user: str) -> str:
    r = client.post("/auth/token", data={"username": user, "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])


def _owned(client: httpx.Client, token: str, owner: str) -> list[str]:
    """The internal-classification archives ``owner`` holds, as the token's user lists them."""
    numbers: list[str] = []
    while True:
        page = client.get(
            "/customers",
            params={
                "owner": owner,
                "classification": "internal",
                "limit": 500,
                "offset": len(numbers),
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        page.raise_for_status()
        items = page.json()["items"]
        numbers += [a["archive_no"] for a in items]
        if len(items) < 500:
            return numbers


def _search_bodies(client: httpx.Client, token: str, numbers: list[str]) -> list[str]:
    """Search bodies (a mobile, a name) taken from some of the reader's own clients.

    Read before the measured window, kept in memory and handed to wrk through its
    environment only.
    """
    bodies = []
    for no in numbers[:SEARCH_VALUES_PER_READER]:
        r = client.get(
            f"/customers/{no}",
            params={"groups": "contact,identity"},
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        content = r.json()["content"]
        if mobile := content.get("contact", {}).get("mobile_phone"):
            bodies.append(json.dumps({"mobile": mobile}, ensure_ascii=False))
        if name := content.get("identity", {}).get("name"):
            bodies.append(json.dumps({"name": name}, ensure_ascii=False))
    return bodies


def prepare(client: httpx.Client) -> tuple[list[Kind], list[str], list[str]]:
    """The four wrk kinds, and the flows' pools (zhang.wei's and liu.yang's archives)."""
    tokens = {u: _token(client, u) for u in {*READERS, *(t for t, _ in LISTERS), "liu.yang"}}
    owned = {u: _owned(client, tokens[u], u) for u in READERS}
    read_items: list[Item] = []
    search_items: list[Item] = []
    bodies: list[str] = []
    for i, user in enumerate(READERS, start=1):
        read_items += [Item("GET", f"/customers/{n}?groups=contact", token=i) for n in owned[user]]
        mine = _search_bodies(client, tokens[user], owned[user])
        search_items += [
            Item("POST", "/customers/search", i, len(bodies) + j) for j in range(1, len(mine) + 1)
        ]
        bodies += mine
    read_items.sort(key=lambda x: x.path)  # the two readers interleaved
    list_items = []
    for i, (user, owner) in enumerate(LISTERS, start=1):
        total = len(_owned(client, tokens[user], owner))
        list_items += [
            Item("GET", f"/customers?owner={owner}&limit=20&offset={off}", token=i)
            for off in range(0, max(total, 1), 20)
        ]
    login_bodies = [urlencode({"username": u, "password": PASSWORD}) for u in SIGN_INS]
    kinds = [
        Kind("read", read_items, *SHAPE["read"], tokens=[tokens[u] for u in READERS]),
        Kind(
            "search",
            search_items,
            *SHAPE["search"],
            tokens=[tokens[u] for u in READERS],
            bodies=bodies,
        ),
        Kind("list", list_items, *SHAPE["list"], tokens=[tokens[u] for u, _ in LISTERS]),
        Kind(
            "login",
            [Item("POST", "/auth/token", 0, j) for j in range(1, len(login_bodies) + 1)],
            *SHAPE["login"],
            content_type="application/x-www-form-urlencoded",
            bodies=login_bodies,
        ),
    ]
    copy_pool = _owned(client, tokens["liu.yang"], "liu.yang")
    return kinds, owned["zhang.wei"], copy_pool


def _centile(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _rows(
    wrk: dict[str, Counted], record: _soak_flows.Record, seconds: float
) -> list[dict[str, Any]]:
    rows = []
    for name, c in wrk.items():
        r = c.round
        rows.append(
            {
                "kind": name,
                "driver": "wrk",
                "requests": r.requests,
                "rps": r.rps,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "status_5xx": c.status_5xx,
                "status_429": c.status_429,
                "other_non_2xx": c.other_non_2xx,
                "socket_errors": r.socket_errors,
            }
        )
    steps: dict[str, list[_soak_flows.Call]] = {}
    for call in record.calls:
        steps.setdefault(call.step, []).append(call)
    for step, calls in steps.items():
        ms = [c.seconds * 1e3 for c in calls if c.status]
        rows.append(
            {
                "kind": f"flow: {step}",
                "driver": "python",
                "requests": len(calls),
                "rps": len(calls) / seconds,
                "p50_ms": _centile(ms, 50),
                "p99_ms": _centile(ms, 99),
                "status_5xx": sum(c.status >= 500 for c in calls),
                "status_429": sum(c.status == 429 for c in calls),
                "other_non_2xx": sum(
                    c.status != 429 and not 200 <= c.status < 300 and 0 < c.status < 500
                    for c in calls
                ),
                "socket_errors": sum(c.status == 0 for c in calls),
            }
        )
    return rows


def run(cfg: Config, wrk: str) -> dict[str, Any]:
    """One soak: set up, load for ``cfg.seconds``, stop, check; the figures as a dict."""
    if cfg.workers > 1 and not cfg.database_url:
        raise ValueError("more than one worker needs PostgreSQL")
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="vault-soak-"))
    cli = _cli()
    procs: list[subprocess.Popen[bytes]] = []
    running: Running | None = None
    try:
        with database(cfg.database_url, prefix="bench_soak") as url:
            env = _env(workdir, url, cfg.seconds)
            data_dir = workdir / "var"
            made = subprocess.run(
                [*cli, "demo", "--no-serve", "--customers", str(cfg.customers)],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if made.returncode != 0:
                said = (made.stderr.strip().splitlines() or ["no message"])[-1]
                raise RuntimeError(f"archive-vault demo exited with {made.returncode}: {said}")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            with (workdir / "serve.log").open("wb") as log:
                serve = [*cli, "serve", "--workers", str(cfg.workers), "--port", str(port)]
                procs.append(subprocess.Popen(serve, env=env, cwd=workdir, stdout=log, stderr=log))
            try:
                wait_up(base + "/healthz", procs[0])
            except RuntimeError as exc:
                said = (workdir / "serve.log").read_text(errors="replace").strip()[-300:]
                raise RuntimeError(f"{exc}: {said}") from None
            with httpx.Client(base_url=base, timeout=60) as client:
                kinds, view_pool, copy_pool = prepare(client)
            flows = _soak_flows.Flows(
                base,
                PASSWORD,
                view_pool=view_pool,
                copy_pool=copy_pool,
                interval=cfg.flow_interval,
                token_seconds=(int(cfg.seconds // 60) + 30) * 60,
            )
            sampler = _soak_memory.Sampler(procs[0].pid, cfg.rss_every)
            stop_flows = threading.Event()
            running = Running(wrk, base, cfg.seconds, workdir)
            since = datetime.now(UTC)
            cpu0 = tree_cpu(procs[0].pid)
            sampler.start()
            for kind in kinds:
                running.start(kind)
            thread = threading.Thread(
                target=flows.run, args=(cfg.seconds, stop_flows), name="flows"
            )
            thread.start()
            try:
                results = running.results()
            finally:
                stop_flows.set()
                thread.join()
                flows.close()
            time.sleep(1.0)  # answers wrk stopped waiting for: their entries commit too
            sampler.stop()
            server_cpu = tree_cpu(procs[0].pid) - cpu0
            until = datetime.now(UTC) + timedelta(seconds=1)
            workers = _soak_memory.worker_pids(procs[0].pid)
            stop(procs)
            audit = _check(data_dir, url, since, until, flows.record, kinds, results)
            audit["verify"] = _soak_audit.verify(cli, data_dir, env)
    finally:
        if running is not None:
            running.kill()
        stop(procs)
        shutil.rmtree(workdir, ignore_errors=True)
    rows = _rows(results, flows.record, cfg.seconds)
    memory = _soak_memory.summary(sampler.samples, cfg.seconds, cfg.warm_up, cfg.rss_limit)
    served = sum(r["requests"] for r in rows)
    errors = sum(r["status_5xx"] + r["socket_errors"] for r in rows)
    ok = (
        errors == 0
        and not flows.record.failures
        and audit["ok"]
        and audit["verify"]["ok"]
        and not memory["replaced"]
        and (memory["ok"] or not cfg.rss_counts)
    )
    return {
        "database": "postgresql" if cfg.database_url else "sqlite",
        "workers": cfg.workers,
        "workers_at_end": len(workers),
        "seconds": cfg.seconds,
        "customers": cfg.customers,
        "shape": {k: {"connections": c, "pause_ms": p} for k, (c, p) in SHAPE.items()},
        "flow_interval_s": cfg.flow_interval,
        "kinds": rows,
        "flows_done": dict(flows.record.done),
        "flow_failures": flows.record.failures,
        "server_cpu_ms_per_request": server_cpu * 1e3 / served if served else None,
        "audit": audit,
        "memory": memory | {"counts": cfg.rss_counts},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "ok": ok,
    }


def _check(
    data_dir: Path,
    url: str,
    since: datetime,
    until: datetime,
    record: _soak_flows.Record,
    kinds: list[Kind],
    results: dict[str, Counted],
) -> dict[str, Any]:
    """Chain what the service left queued, then match entries (bench/_soak_audit.py)."""
    from foundation.settings import Settings
    from vault.vault import open_vault

    vault = open_vault(Settings(data_dir=data_dir, database_url=url))
    try:
        vault.audit_log().integrate()
        actors = {
            "read": READERS,
            "search": READERS,
            "list": tuple(u for u, _ in LISTERS),
            "login": SIGN_INS,
        }
        expects = [
            _soak_audit.Expect(k.name, ACTIONS[k.name], actors[k.name], results[k.name].ok_2xx)
            for k in kinds
        ]
        return _soak_audit.check(vault.engine, since, until, record, expects)
    finally:
        vault.engine.dispose()


def _length(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


def print_report(f: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"bench/soak.py: {_length(f['seconds'])}, {f['database']}, "
        f"{f['workers']} worker(s), {f['customers']} archives"
    )
    for column in ("kind", "requests", "req/s", "p50 ms", "p99 ms", "5xx", "429", "other", "sock"):
        t.add_column(column, justify="right" if column != "kind" else "left", no_wrap=True)
    for r in f["kinds"]:
        bad = r["status_5xx"]
        t.add_row(
            r["kind"],
            f"{r['requests']:,}",
            f"{r['rps']:,.1f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"[bold red]{bad}[/]" if bad else "0",
            str(r["status_429"]),
            str(r["other_non_2xx"]),
            str(r["socket_errors"]),
        )
    a, m = f["audit"], f["memory"]
    lines = [
        f"flows done: {f['flows_done']}; failed: {len(f['flow_failures'])}",
        f"audit verify: {'passed' if a['verify']['ok'] else 'FAILED'} ({a['verify']['summary']})",
        f"entries: {a['missing']} missing; flows {a['flow_reads']} reads + "
        f"{a['flow_exports']} exports matched exactly, {a['flow_unexpected']} unexpected; "
        + "; ".join(f"{k['kind']} {k['entries']:,} ≥ {k['responses_2xx']:,}" for k in a["kinds"]),
    ]
    if m.get("workers"):
        per = ", ".join(
            f"{w['rss_warm_kib'] / 1024:.0f}→{w['rss_end_kib'] / 1024:.0f} MiB ({w['growth']:+.1%})"
            for w in m["workers"]
        )
        lines.append(
            f"RSS per worker (medians) from {m['warm_at_s']:g} s, from {m['end_at_s']:g} s: {per}; "
            f"limit < {m['limit']:.0%}: {'pass' if m['ok'] else 'FAIL'} {m['problem']}".rstrip()
            + ("" if m["counts"] else " (not counted in --quick: its warm-up is seconds long)")
        )
    else:
        lines.append(f"RSS: FAIL {m['problem']}")
    cpu = f["server_cpu_ms_per_request"]
    lines.append(
        (f"server CPU {cpu:.2f} ms per request; " if cpu else "")
        + f"load average {f['load_average_before'][0]:.2f} before, "
        f"{f['load_average_after'][0]:.2f} after"
    )
    t.caption = "\n".join(lines)
    Console(width=max(Console().width, 110)).print(t)
    for failure in f["flow_failures"][:10]:
        Console(stderr=True).print(f"flow failed: {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="30 s of load, 500 archives")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--sqlite", action="store_true", help="SQLite, one worker")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--flow-interval", type=float, default=3.0, help="s between flows")
    parser.add_argument("--rss-limit", type=float, default=0.10, help="growth limit, fraction")
    args = parser.parse_args()
    seconds = args.seconds or (30.0 if args.quick else args.minutes * 60)
    if not 1 <= seconds <= 4 * 3600:
        parser.error("the run must last between 1 s and 4 hours")
    url = "" if args.sqlite else args.database_url
    if url and not url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql+psycopg:// URL (or use --sqlite)")
    workers = 1 if args.sqlite else args.workers
    if not 1 <= workers <= 8:
        parser.error("--workers must be between 1 and 8")
    wrk = shutil.which("wrk")
    if wrk is None:
        parser.error("wrk not found: apt-get install wrk")
    # SIGTERM unwinds like Ctrl-C, so the server stops and the run's database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cfg = Config(
        seconds=seconds,
        database_url=url,
        workers=workers,
        customers=500 if args.quick else 2000,
        flow_interval=args.flow_interval,
        rss_every=2.0 if seconds < 300 else 5.0,
        rss_limit=args.rss_limit,
        rss_counts=not args.quick,
    )
    figures = run(cfg, wrk)
    if args.json:
        print(json.dumps(figures))
    else:
        print_report(figures)
    if not figures["ok"]:
        print("FAILED: see the table (5xx, flows, audit entries, verify, RSS)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
