"""A 500 is one log line with an error id and the exception's class: no traceback, no values.

Whatever leaves the application as an exception is what the server (uvicorn)
logs with its full traceback, so the app must answer every exception itself.
``raise_server_exceptions=True`` makes the test client surface exactly that.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from api.app import create_app
from vault.vault import Vault

CANARY = "CANARY-13800138000-王小明"


@pytest.fixture
def strict_client(api_vault: Vault, clock) -> Iterator[TestClient]:
    app = create_app(vault=api_vault, clock=clock)
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


def _broken(exc: Exception):
    def fail(*_a, **_kw):
        raise exc

    return fail


def _assert_one_clean_line(caplog: pytest.LogCaptureFixture, body: dict, kind: str) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, "the 500 was not logged"
    for record in caplog.records:
        assert record.exc_info is None and record.exc_text is None, record.getMessage()
        assert CANARY not in record.getMessage()
    assert "Traceback" not in caplog.text and CANARY not in caplog.text
    assert "INSERT" not in caplog.text
    line = errors[-1].getMessage()
    assert "\n" not in line and kind in line
    assert re.fullmatch(r"[0-9a-f]{16}", body["error_id"]) and body["error_id"] in line


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (RuntimeError(f"boom {CANARY}"), "RuntimeError", "internal-error"),
        (
            IntegrityError(
                "INSERT INTO archive (name) VALUES (%(name)s)", {"name": CANARY}, ValueError(CANARY)
            ),
            "ValueError",
            "database-error",
        ),
    ],
)
def test_a_500_logs_one_line_without_traceback_or_values(
    strict_client, login, monkeypatch, caplog, exc, kind, code
) -> None:
    services = strict_client.app.state.services
    monkeypatch.delenv("VAULT_DEBUG", raising=False)
    monkeypatch.setattr(services.store.archives, "list", _broken(exc))
    headers = login("zhang.wei")
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        r = strict_client.get("/customers", headers=headers)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert CANARY not in r.text and r.json()["type"] == f"urn:archive-vault:{code}"
    _assert_one_clean_line(caplog, r.json(), kind)


def test_a_500_on_the_fast_read_path_is_answered_too(
    strict_client, login, monkeypatch, caplog
) -> None:
    import api.fastpath

    monkeypatch.setattr(api.fastpath, "read_content", _broken(RuntimeError(CANARY)))
    headers = login("zhang.wei")
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        r = strict_client.get("/customers/KH-2026-000001?groups=contact", headers=headers)
    assert r.status_code == 500 and CANARY not in r.text
    _assert_one_clean_line(caplog, r.json(), "RuntimeError")


def test_vault_debug_logs_the_traceback(strict_client, login, monkeypatch, caplog) -> None:
    services = strict_client.app.state.services
    monkeypatch.setenv("VAULT_DEBUG", "1")
    monkeypatch.setattr(services.store.archives, "list", _broken(RuntimeError("debugging")))
    headers = login("zhang.wei")
    with caplog.at_level(logging.ERROR):
        assert strict_client.get("/customers", headers=headers).status_code == 500
    assert any(r.exc_info for r in caplog.records)
