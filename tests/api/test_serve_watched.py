"""``serve --workers 2`` watched: JSON lines on stderr, metrics summed over the workers,
and a worker killed with SIGKILL named in an error line while the service serves on."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.supervisor import how_it_ended, metrics_dir
from tests.api.test_workers_exit import _children, _running
from tests.conftest import PG_URL
from tests.served import ROOT
from tests.served import free_port as _free_port


def _workers(master: int) -> list[int]:
    """uvicorn's worker processes (spawned), not multiprocessing's resource tracker."""
    out = []
    for pid in _children(master):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and _running(pid):
            out.append(pid)
    return out


def _lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _requests_total(text: str, route: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "vault_http_requests_total" and s.labels.get("route") == route:
                total += s.value
    return total


@pytest.mark.slow
def test_a_killed_worker_is_logged_and_the_service_serves_on(vault, tmp_path) -> None:
    if vault.engine.dialect.name != "postgresql" or not Path("/proc/self/task").is_dir():
        pytest.skip("several workers need PostgreSQL (and /proc to find them)")
    with vault.engine.connect() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS")},
        "VAULT_DATA_DIR": str(vault.settings.data_dir),
        "VAULT_DATABASE_URL": f"{PG_URL}?options=-csearch_path%3D{schema}",
        "VAULT_LOG_LEVEL": "info",
        "PYTHONPATH": str(ROOT),
    }
    errors = tmp_path / "stderr.log"
    cmd = [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(port)]
    with errors.open("wb") as sink:
        master = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sink)
    base = f"http://127.0.0.1:{port}"
    workers: list[int] = []
    try:
        for _ in range(1200):
            workers = _workers(master.pid)
            try:
                up = httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            if up and len(workers) >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the served vault did not come up with two workers")
        time.sleep(2)  # both workers have run the app factory by now
        metrics = vault.settings.data_dir / "run" / f"metrics-{master.pid}"
        assert stat.S_IMODE(metrics.stat().st_mode) == 0o700
        assert httpx.get(base + "/readyz", timeout=10).json() == {"status": "ready"}

        # Counted by whichever worker answered, summed by whichever worker is scraped.
        with httpx.Client(base_url=base, timeout=10) as http:
            before = _requests_total(http.get("/metrics").text, "/healthz")
            for _ in range(8):
                with httpx.Client(base_url=base, timeout=10) as fresh:  # new connections
                    assert fresh.get("/healthz").status_code == 200
            for _ in range(3):
                after = http.get("/metrics").text
                assert _requests_total(after, "/healthz") == before + 8

        victim = workers[0]
        assert list(metrics.glob(f"gauge_livesum_{victim}.db"))
        os.kill(victim, signal.SIGKILL)
        died = None
        # uvicorn notices at its next health ping; one sent just before the kill waits
        # out its timeout (api.serving.WORKER_HEALTHCHECK_SECONDS) first.
        deadline = time.monotonic() + 75
        while died is None and time.monotonic() < deadline:
            died = next((x for x in _lines(errors) if x["logger"] == "archive_vault.serve"), None)
            time.sleep(0.2)
        assert died is not None, errors.read_text()
        assert died["level"] == "error" and died["pid"] == victim
        assert died["signal"] == "SIGKILL" and f"worker {victim} died" in died["message"]
        assert list(metrics.glob(f"counter_{victim}.db")), "what it counted still counts"
        assert not list(metrics.glob(f"gauge_live*_{victim}.db")), "its live gauges were kept"
        for _ in range(10):
            assert httpx.get(base + "/healthz", timeout=10).status_code == 200
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=60)
    finally:
        if master.poll() is None:
            master.kill()
        for p in [*workers, *_children(master.pid)]:
            if _running(p):
                os.kill(p, signal.SIGKILL)
    lines = _lines(errors)  # every line JSON
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    access = [x for x in lines if x["logger"] == "archive_vault.access"]
    assert {x["route"] for x in access} >= {"/healthz", "/metrics", "/readyz"}
    assert all(x["client"] == "127.0.0.1" and x["request_id"] for x in access)
    uvicorn = [x for x in lines if x["logger"].startswith("uvicorn")]
    assert uvicorn, "uvicorn's own lines go through the JSON formatter too"
    assert not metrics.exists()


def test_a_stale_metrics_directory_is_cleaned_and_a_new_one_is_private(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    stale = run / "metrics-999999999"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"x")
    made = metrics_dir(tmp_path)
    assert not stale.exists() and made.name == f"metrics-{os.getpid()}"
    assert stat.S_IMODE(made.stat().st_mode) == 0o700 and not any(made.iterdir())
    assert stat.S_IMODE(run.stat().st_mode) == 0o700


def test_how_a_worker_ended_is_named() -> None:
    assert how_it_ended(-9) == "SIGKILL" and how_it_ended(-15) == "SIGTERM"
    assert how_it_ended(3) == "exit status 3" and how_it_ended(None) == "unknown"


def test_serve_logs_json_without_uvicorns_access_log(monkeypatch, tmp_path) -> None:
    import uvicorn

    from cli import service

    seen: dict[str, object] = {}
    monkeypatch.setattr(service, "open_vault", lambda settings: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setenv("VAULT_LOG_LEVEL", "WARNING")
    service.serve(host="127.0.0.1", port=8765, workers=1, data_dir=tmp_path)
    assert seen["access_log"] is False and seen["log_level"] == "warning"
    config = seen["log_config"]
    assert config["root"]["level"] == "WARNING"  # type: ignore[index]
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
