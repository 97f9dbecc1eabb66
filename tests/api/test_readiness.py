"""GET /readyz: a real round trip (database, every active KEK, the key versions archives use,
an audit append), answered with ready or not ready and a content-free reason."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.readiness import Readiness
from tests.api.test_workflow import _new


def _ready_entries(engine: sa.Engine) -> int:
    from audit.stored import ACTION_CODES

    code = ACTION_CODES["health:ready"]
    with engine.connect() as conn:
        entries = conn.exec_driver_sql(
            f"SELECT count(*) FROM audit_entry WHERE action = {code}"
        ).scalar_one()
        queued = conn.exec_driver_sql(
            f"SELECT count(*) FROM audit_queue WHERE action = {code}"
        ).scalar_one()
    return int(entries) + int(queued)


def test_a_good_vault_is_ready_and_the_probe_is_audited_at_most_once_a_minute(
    client: TestClient, login
) -> None:
    _new(client, login("zhang.wei"))
    engine = client.app.state.services.engine
    now = [1000.0]
    client.app.state.readiness = Readiness(monotonic=lambda: now[0])
    for _ in range(3):
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ready"}
    assert _ready_entries(engine) == 1  # a load balancer's probes do not fill the log
    now[0] += 61
    assert client.get("/readyz").status_code == 200
    assert _ready_entries(engine) == 2
    client.app.state.services.audit.integrate()
    report = client.app.state.services.audit.verify()
    assert report.ok


def test_not_ready_when_the_key_file_lacks_a_version_archives_use(client, login) -> None:
    """A database restored from before a rotation, served with another key file: every
    read of those archives would fail, so the worker is not ready (like `keys status`)."""
    no = _new(client, login("zhang.wei"))
    engine = client.app.state.services.engine
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE archive SET kek_version = 7 WHERE archive_no = :no"), {"no": no}
        )
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "reason": "key file does not match the database"}
    assert "v7" not in r.text and no not in r.text
    assert _ready_entries(engine) == 0  # nothing appended for a vault that cannot read
    with engine.begin() as conn:  # put right: ready again on the next probe, not cached
        conn.execute(
            sa.text("UPDATE archive SET kek_version = 1 WHERE archive_no = :no"), {"no": no}
        )
    assert client.get("/readyz").status_code == 200


def test_not_ready_when_an_active_kek_is_gone(client, monkeypatch) -> None:
    keys = client.app.state.services.vault.keys
    from vault.errors import KeyFileError

    def gone(level: str, version: int) -> bytes:
        raise KeyFileError(f"KEK {level} v{version} is missing in the key file")

    monkeypatch.setattr(keys, "kek", gone)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {
        "status": "not ready",
        "reason": "keys unavailable",
    }


def test_not_ready_when_the_database_is_unreachable(client) -> None:
    services = client.app.state.services
    real = services.engine
    dead = sa.create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 1}
    )
    services.vault.engine = services.store.engine = dead
    try:
        r = client.get("/readyz")
    finally:
        services.vault.engine = services.store.engine = real
        dead.dispose()
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "reason": "database unavailable"}


def test_not_ready_when_the_audit_log_refuses_the_append(client, monkeypatch) -> None:
    """Fail closed: a worker that cannot audit cannot serve a read."""
    from audit.errors import AuditWriteFailed

    def refused(*_a, **_kw) -> None:
        raise AuditWriteFailed("refused")

    monkeypatch.setattr(client.app.state.services.audit, "append", refused)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "reason": "audit log unavailable"}


def test_healthz_stays_minimal(client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_probes_never_queue_behind_a_check_in_progress(client) -> None:
    """While one probe holds the check (an HSM round trip, an audit append), another
    gets the previous answer at once instead of waiting for a thread and the lock."""
    readiness = Readiness()
    client.app.state.readiness = readiness
    assert client.get("/readyz").status_code == 200
    readiness._lock.acquire()
    try:
        r = client.get("/readyz")
    finally:
        readiness._lock.release()
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    fresh = Readiness()
    client.app.state.readiness = fresh
    fresh._lock.acquire()
    try:
        r = client.get("/readyz")  # nothing checked yet: not ready, not waiting
    finally:
        fresh._lock.release()
    assert r.status_code == 503 and r.json()["reason"] == "starting"
