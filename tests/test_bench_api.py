"""bench/api.py reads wrk's figures right, fails on errors, and says when wrk is missing.

No timing is asserted: these check the parser on a canned wrk report, the Lua
script it generates (and, where wrk is installed, that wrk runs it against a
small local server for a second), and the fall-back to the Python client.
"""

from __future__ import annotations

import hmac
import shutil
import socket
import sqlite3
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from starlette.testclient import TestClient

from bench import _floor_app, _wrk
from bench import api as bench_api

CANNED = """\
Running 8s test @ http://127.0.0.1:41234/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    11.94ms    6.02ms  88.13ms   81.20%
    Req/Sec   339.43     61.25   480.00     70.62%
  Latency Distribution
     50%   10.71ms
     75%   13.64ms
     90%   18.09ms
     99%   35.11ms
  5433 requests in 8.01s, 4.99MB read
Requests/sec:    678.21
Transfer/sec:    638.01KB
BENCH_WRK_JSON {"requests": 5433, "duration_us": 8010742, "p50_us": 10712.0, \
"p99_us": 35113.0, "connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0, \
"non_2xx": 0}
"""


def test_parser_reads_the_scripts_json_line() -> None:
    r = _wrk.parse(CANNED)
    assert r.requests == 5433
    assert r.seconds == pytest.approx(8.010742)
    assert r.rps == pytest.approx(5433 / 8.010742)
    assert (r.p50_ms, r.p99_ms) == (pytest.approx(10.712), pytest.approx(35.113))
    assert (r.socket_errors, r.non_2xx, r.failures) == (0, 0, 0)


def test_parser_counts_failures_from_the_script_and_from_wrks_summary() -> None:
    from_script = CANNED.replace('"read": 0', '"read": 2').replace('"non_2xx": 0', '"non_2xx": 7')
    assert (_wrk.parse(from_script).socket_errors, _wrk.parse(from_script).non_2xx) == (2, 7)
    summary = CANNED.replace(
        "Requests/sec:",
        "  Socket errors: connect 1, read 0, write 0, timeout 3\n"
        "  Non-2xx or 3xx responses: 12\nRequests/sec:",
    )
    r = _wrk.parse(summary)
    assert (r.socket_errors, r.non_2xx, r.failures) == (4, 12, 16)


@pytest.mark.parametrize(
    "output",
    [
        CANNED.split("BENCH_WRK_JSON")[0],  # done() never ran: a script error
        CANNED + CANNED.splitlines()[-1],  # two reports
        CANNED.replace('"p99_us": 35113.0, ', ""),  # a field missing
    ],
)
def test_parser_refuses_output_it_cannot_read(output: str) -> None:
    with pytest.raises((ValueError, KeyError)):
        _wrk.parse(output)


def test_lua_script_lists_each_path_once_and_takes_the_token_from_the_environment() -> None:
    paths = ["/customers/A-1?groups=contact", "/customers/B-2?groups=contact"]
    script = _wrk.lua_script(paths, threads=2)
    assert [line.strip() for line in script.splitlines() if line.strip().startswith('"/')] == [
        '"/customers/A-1?groups=contact",',
        '"/customers/B-2?groups=contact"',
    ]
    assert 'os.getenv("BENCH_TOKEN")' in script
    assert "Bearer" in script and "secret-token" not in script
    assert "math.floor(started * #paths / 2)" in script
    assert _wrk.MARKER.strip() in script
    with pytest.raises(ValueError, match="no paths"):
        _wrk.lua_script([])


def test_lua_strings_escape_quotes_backslashes_and_non_ascii_bytes() -> None:
    assert _wrk.lua_string('/a"b\\c') == '"/a\\034b\\092c"'
    assert _wrk.lua_string("/ü") == '"/\\195\\188"'
    assert _wrk.lua_string("/a\nb") == '"/a\\010b"'


def test_without_wrk_the_python_client_is_used_and_said_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    wrk = _wrk.find_wrk()
    assert wrk is None
    assert "wrk not found: apt-get install wrk; falling back" in capsys.readouterr().err
    client, _ = bench_api.make_load(wrk, tmp_path, ["/x"], "tok", 8)
    assert client == bench_api.PYTHON_CLIENT
    assert list(tmp_path.iterdir()) == []


def test_with_wrk_its_script_is_written_and_nothing_is_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/opt/bin/{name}")
    wrk = _wrk.find_wrk()
    assert wrk == "/opt/bin/wrk"
    assert capsys.readouterr().err == ""
    client, _ = bench_api.make_load(wrk, tmp_path, ["/x"], "tok", 8)
    assert client == "wrk"
    assert (tmp_path / "read.lua").read_text(encoding="utf-8") == _wrk.lua_script(["/x"])


def test_load_goes_to_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        _wrk.run("wrk", "http://example.com", 1, script=tmp_path / "s.lua", connections=1, env={})


class _Recorder(BaseHTTPRequestHandler):
    """Records each request's path and Authorization header, in order of arrival."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str]]] = []
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        with self.lock:
            self.seen.append((self.path, self.headers.get("Authorization", "")))
        body = b"{}"
        # A redirect: wrk itself counts only status >= 400, the script counts every non-2xx.
        self.send_response(302 if self.path == "/moved" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _wrk_against_recorder(
    tmp_path: Path, paths: list[str], start: int, threads: int
) -> tuple[_wrk.Round, list[tuple[str, str]]]:
    _Recorder.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = tmp_path / "read.lua"
        script.write_text(_wrk.lua_script(paths, threads), encoding="utf-8")
        r = _wrk.run(
            str(shutil.which("wrk")),
            f"http://127.0.0.1:{server.server_address[1]}",
            1,
            start,
            script=script,
            connections=threads,
            env={_wrk.TOKEN_ENV: "tok-123"},
            threads=threads,
        )
    finally:
        server.shutdown()
        server.server_close()
    return r, list(_Recorder.seen)


needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


@needs_wrk
def test_wrk_runs_the_script_round_robin_and_counts_what_was_not_2xx(tmp_path: Path) -> None:
    paths = ["/a", "/b", "/moved"]
    r, seen = _wrk_against_recorder(tmp_path, paths, start=0, threads=2)
    counts = Counter(path for path, _ in seen)
    assert set(counts) == set(paths)
    assert {auth for _, auth in seen} == {"Bearer tok-123"}
    assert r.requests > 0
    assert 0 < r.non_2xx < r.requests
    # Round-robin: no path is served much more often than another.
    assert max(counts.values()) - min(counts.values()) <= 4


@needs_wrk
def test_a_round_goes_on_where_the_start_number_says(tmp_path: Path) -> None:
    paths = ["/a", "/b", "/c", "/d"]
    _, seen = _wrk_against_recorder(tmp_path, paths, start=6, threads=1)
    first = paths.index(seen[0][0])
    # wrk may draw one request before the first it sends: the round starts at 6 or 7.
    assert first in (6 % 4, 7 % 4)
    assert [path for path, _ in seen[:6]] == [paths[(first + i) % 4] for i in range(6)]


def _records(db: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT time, actor, archives, client, mac FROM bench_floor_audit"
        ).fetchall()


def test_the_floor_releases_the_body_only_with_a_durable_record(tmp_path: Path) -> None:
    """The floor side does the least an audited read must, and never less: no record,
    no body; a wrong credential or an unknown archive gets nothing and leaves none."""
    body = '{"content":{"contact":{"name":"张伟"}}}'.encode()
    paths = ["/customers/KH-2026-000001?groups=contact", "/customers/KH-2026-000002"]
    env = bench_api.prepare_floor(tmp_path, "", paths, body)
    keys, db = bytes.fromhex(env["BENCH_FLOOR_KEYS"]), env["BENCH_FLOOR_DB"]
    with TestClient(_floor_app.FloorRead(db, keys, "t0k")) as client:
        ok = client.get("/customers/KH-2026-000002", headers={"Authorization": "Bearer t0k"})
        assert ok.status_code == 200 and ok.content == body
        assert ok.headers["cache-control"] == "no-store"
        for headers, path, status in (
            ({"Authorization": "Bearer t0K"}, "/customers/KH-2026-000002", 401),
            ({}, "/customers/KH-2026-000002", 401),
            ({"Authorization": "Bearer t0k"}, "/customers/KH-2026-999999", 404),
        ):
            r = client.get(path, headers=headers)
            assert r.status_code == status and r.content == b""
    (record,) = _records(db)
    micros, actor, archives, peer, mac = record
    assert (actor, archives) == ("zhang.wei", "KH-2026-000002")
    expected = _floor_app.record_mac(keys[32:], micros, archives, peer)
    assert hmac.compare_digest(mac, expected)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("floor.db*"))
    assert "张伟".encode() not in stored  # sealed at rest, like the vault's own rows
