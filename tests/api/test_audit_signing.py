"""The service signs a checkpoint about a second after any append, so a cut tail is caught.

Waits poll for a few seconds at most and never assert on how long signing took.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from fastapi.testclient import TestClient

from audit.guards import install_guards, remove_guards


def _signed_through(services, seq: int, timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cp = services.audit.latest_checkpoint()
        if cp is not None and cp.size >= seq:
            return True
        time.sleep(0.1)
    return False


def test_appends_are_signed_within_about_a_second_and_a_cut_tail_is_caught(
    client: TestClient, login
) -> None:
    services = client.app.state.services
    assert services.vault.settings.audit_checkpoint_delay_seconds == 1.0  # the default
    assert _signed_through(services, services.audit.head())  # start-up entries
    for name in ("zhang.wei", "li.na", "wang.fang", "head.one"):
        login(name)  # each login appends an entry
    head = services.audit.head()
    assert _signed_through(services, head), "no checkpoint covered the new entries"
    assert services.audit.verify().ok

    # Someone with write access to the database cuts the newest entries off.
    engine = services.engine
    remove_guards(engine)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM audit_entry WHERE seq > :s"), {"s": head - 3})
    finally:
        install_guards(engine)
    report = services.audit.verify()
    assert [(p.kind, p.seq) for p in report.all_problems()] == [("truncated", head - 2)]


def test_shutdown_lets_the_signing_step_in_progress_finish(api_vault, monkeypatch) -> None:
    """Stopping the service waits for the signer's database step instead of leaving its
    worker thread writing after shutdown (as a cancelled await would)."""
    import threading

    from api.app import create_app

    started, finished = threading.Event(), threading.Event()

    def slow_step() -> None:
        started.set()
        time.sleep(0.5)
        finished.set()

    app = create_app(vault=api_vault)
    monkeypatch.setattr(app.state.services.audit, "sign_pending", slow_step)
    with TestClient(app):
        assert started.wait(10)
    assert finished.is_set()
