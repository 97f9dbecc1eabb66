"""bench/soak.py cannot rot: its pieces are checked, and its driver runs for seconds on SQLite.

No timing is asserted. The wrk script is run against a small local server that
answers 200, 429 and 503, to see each counted where it belongs and the secrets
read from the environment, never from the script; the audit check is given a
log that lacks an entry; the memory summary a worker that grew or was replaced;
and the whole soak runs for a few seconds against a real `archive-vault serve`.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from bench import _soak_audit, _soak_memory, soak
from bench._common import database
from bench._soak_flows import Exported, Record
from bench._soak_wrk import Item, Kind, Running, lua_script
from foundation.db import transaction
from tests.conftest import PG_URL
from vault.vault import Vault

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


class _Answers(BaseHTTPRequestHandler):
    """200 for /ok, 429 for /busy, 503 for /boom; records what POSTs carried."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, bytes]]] = []
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self, body: bytes = b"") -> None:
        with self.lock:
            self.seen.append((self.path, self.headers.get("Authorization", ""), body))
        status = {"/ok": 200, "/busy": 429, "/boom": 503}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answers() -> Iterator[str]:
    _Answers.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _kind() -> Kind:
    return Kind(
        "mixed",
        [Item("GET", "/ok", token=1), Item("POST", "/busy", 0, 1), Item("GET", "/boom", 2)],
        connections=2,
        tokens=["tok-one", "tok-two"],
        bodies=['{"mobile": "13800000000"}'],
    )


@needs_wrk
def test_5xx_and_429_are_counted_apart_and_secrets_come_from_the_environment(
    answers: str, tmp_path: Path
) -> None:
    running = Running(str(shutil.which("wrk")), answers, 1, tmp_path)
    running.start(_kind())
    got = running.results()["mixed"]
    script = (tmp_path / "mixed.lua").read_text(encoding="utf-8")
    assert "tok-one" not in script and "13800000000" not in script
    assert got.round.requests > 0
    assert got.status_5xx > 0 and got.status_429 > 0 and got.other_non_2xx == 0
    assert got.ok_2xx + got.status_5xx + got.status_429 == got.round.requests
    seen = set(_Answers.seen)
    assert ("/ok", "Bearer tok-one", b"") in seen
    assert ("/boom", "Bearer tok-two", b"") in seen
    assert ("/busy", "", b'{"mobile": "13800000000"}') in seen


def test_the_script_refuses_an_empty_kind_and_load_goes_to_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no requests"):
        lua_script(Kind("empty", [], 1))
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        Running("wrk", "http://example.com", 1, tmp_path).start(_kind())


def test_memory_summary_passes_flat_workers_and_fails_growth_or_a_replaced_worker() -> None:
    flat = [(t, {10: 100_000, 11: 100_000 + t}) for t in range(0, 60, 5)]
    assert _soak_memory.summary(flat, 60, 0.2, 0.10)["ok"]
    grown = [(t, {10: 100_000 + 1000 * t}) for t in range(0, 60, 5)]
    out = _soak_memory.summary(grown, 60, 0.2, 0.10)
    assert not out["ok"] and "grew" in out["problem"]
    # medians of the samples in [12 s, 18 s) and in [54 s, 60 s)
    assert (out["workers"][0]["rss_warm_kib"], out["workers"][0]["rss_end_kib"]) == (
        115_000,
        155_000,
    )
    spike = [(t, {10: 100_000 + (50_000 if t == 55 else 0)}) for t in range(60)]
    assert _soak_memory.summary(spike, 60, 0.2, 0.10)["ok"]  # one sample is not growth
    replaced = [(t, {10 if t < 30 else 12: 100_000}) for t in range(0, 60, 5)]
    assert "replaced" in _soak_memory.summary(replaced, 60, 0.2, 0.10)["problem"]
    assert not _soak_memory.summary([(0, {10: 1})], 60, 0.2, 0.10)["ok"]
    assert not _soak_memory.summary([(t, {10: 1}) for t in range(0, 50, 5)], 60, 0.2, 0.1)["ok"]


def test_rss_is_read_from_proc() -> None:
    import os

    assert (_soak_memory.rss_kib(os.getpid()) or 0) > 0
    assert _soak_memory.worker_pids(os.getpid()) == [os.getpid()]  # no spawned workers


def test_the_audit_check_finds_a_missing_entry_and_an_unrecorded_one(vault: Vault) -> None:
    log = vault.audit_log()
    since = datetime.now(UTC) - timedelta(seconds=1)

    def append(actor: str, action: AuditAction, archives: tuple[str, ...], **kw: object) -> None:
        with transaction(vault.engine) as session:
            log.append(
                session, AuditEvent(action=action, actor=Actor(actor, "x"), archives=archives, **kw)
            )

    append("li.na", AuditAction.READ, ("KH-1",))
    append("li.na", AuditAction.READ, ("KH-1",), outcome=Outcome.DENIED)  # not content
    append("liu.yang", AuditAction.EXPORT, ("KH-3", "KH-2"), detail={"request": "R-1"})
    append("liu.yang", AuditAction.EXPORT, ("KH-4",), detail={"request": "R-9"})  # unrecorded
    append("zhang.wei", AuditAction.READ, ("KH-5",))
    log.integrate()
    until = datetime.now(UTC) + timedelta(seconds=1)
    record = Record(
        reads=[("li.na", "KH-1"), ("li.na", "KH-1")],  # read twice, audited once
        exports=[Exported("liu.yang", "R-1", ("KH-2", "KH-3"))],
    )
    expects = [_soak_audit.Expect("read", "archive:read", ("zhang.wei",), 2)]
    out = _soak_audit.check(vault.engine, since, until, record, expects)
    assert (out["flow_missing"], out["flow_unexpected"]) == (1, 1)
    assert out["kinds"][0] | {"entries": 1, "missing": 1} == out["kinds"][0]
    assert out["missing"] == 2 and not out["ok"]
    record.reads.pop()
    record.exports.append(Exported("liu.yang", "R-9", ("KH-4",)))
    expects = [_soak_audit.Expect("read", "archive:read", ("zhang.wei",), 1)]
    assert _soak_audit.check(vault.engine, since, until, record, expects)["ok"]
    # outside the window nothing is found
    assert not _soak_audit.check(vault.engine, until, until, record, expects)["ok"]


@pytest.mark.skipif(not PG_URL, reason="set VAULT_TEST_DATABASE_URL to enable")
def test_the_runs_database_and_its_role_are_dropped() -> None:
    with database(PG_URL, prefix="bench_test") as url:
        name = sa.make_url(url).database
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE ROLE "{name}_app" NOLOGIN')
        admin.dispose()
    check = sa.create_engine(PG_URL)
    with check.connect() as conn:
        left = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_database WHERE datname = %(n)s "
            "UNION ALL SELECT count(*) FROM pg_roles WHERE rolname = %(r)s",
            {"n": name, "r": f"{name}_app"},
        ).scalars()
        assert list(left) == [0, 0]
    check.dispose()


@needs_wrk
@pytest.mark.slow
def test_the_soak_runs_for_seconds_on_sqlite_and_finds_every_entry() -> None:
    cfg = soak.Config(
        seconds=4, workers=1, customers=120, flow_interval=0.3, rss_every=0.5, rss_limit=100.0
    )
    figures = soak.run(cfg, str(shutil.which("wrk")))
    kinds = {r["kind"]: r for r in figures["kinds"]}
    assert {"read", "search", "list", "login"} <= set(kinds)
    assert all(kinds[k]["requests"] > 0 for k in ("read", "search", "list", "login"))
    assert all(r["status_5xx"] + r["socket_errors"] == 0 for r in kinds.values())
    assert figures["flow_failures"] == []
    assert set(figures["flows_done"]) == {"view", "loan", "export"}
    audit = figures["audit"]
    assert audit["verify"]["ok"], audit["verify"]
    assert audit["missing"] == 0 and audit["flow_unexpected"] == 0
    assert audit["flow_reads"] >= 2 and audit["flow_exports"] >= 1
    assert all(k["entries"] >= k["responses_2xx"] > 0 for k in audit["kinds"])
    assert figures["memory"]["workers"] and figures["ok"]
