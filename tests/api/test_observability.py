"""GET /metrics (loopback only, route templates only), request ids and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.logging_setup import JsonFormatter, log_config, request_id
from tests.api.test_workflow import _new

LOCAL = ("127.0.0.1", 50000)


@pytest.fixture
def local(client: TestClient) -> Iterator[TestClient]:
    """The same app, called from the loopback address (the default may read /metrics)."""
    with TestClient(client.app, client=LOCAL) as c:
        yield c


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_by_route_template_never_by_archive_number(local, login) -> None:
    zhang = login("zhang.wei")
    no = _new(local, zhang)
    before = local.get("/metrics").text
    assert local.get(f"/customers/{no}", headers=zhang).status_code == 200  # the fast path
    routed = local.get(f"/customers/{no}", params={"groups": "nope"}, headers=zhang)
    assert routed.status_code == 422  # handed on to the route: counted under the same template
    assert local.get(f"/customers/{no}", headers=login("li.na")).status_code == 403
    assert local.get(f"/no/such/{no}").status_code == 404
    r = local.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert no not in text and "zhang.wei" not in text and "li.na" not in text
    read = "/customers/{archive_no}"
    assert _value(text, "vault_http_requests_total", method="GET", route=read, status="200") == (
        _value(before, "vault_http_requests_total", method="GET", route=read, status="200") + 1
    )
    for status in ("422", "403"):
        assert _value(text, "vault_http_requests_total", method="GET", route=read, status=status)
    assert _value(
        text, "vault_http_requests_total", method="GET", route="<unmatched>", status="404"
    )
    assert _value(text, "vault_http_request_duration_seconds_count", method="GET", route=read)
    denied = _value(text, "vault_policy_decisions_total", outcome="deny")
    assert denied >= _value(before, "vault_policy_decisions_total", outcome="deny") + 1
    assert _value(text, "vault_policy_decisions_total", outcome="allow") > 0


def test_metrics_gauges_come_from_the_database(local, login) -> None:
    assert local.post("/auth/token", data={"username": "li.na", "password": "x"}).status_code
    text = local.get("/metrics").text
    assert _value(text, "vault_database_up") == 1
    assert _value(text, "vault_login_failures_total") >= 1
    for name in ("vault_audit_queue_depth", "vault_grants_active", "vault_loans_out"):
        assert (name, ()) in _samples(text), name
    local.app.state.services.audit.checkpoint()
    text = local.get("/metrics").text
    assert 0 <= _value(text, "vault_audit_seconds_since_checkpoint") < 3600


def test_login_failures_are_counted(local) -> None:
    def failures() -> float:
        return _value(local.get("/metrics").text, "vault_login_failures_total")

    before = failures()
    for _ in range(2):
        r = local.post("/auth/token", data={"username": "zhang.wei", "password": "wrong"})
        assert r.status_code == 401
    assert failures() == before + 2


def test_metrics_are_refused_to_other_addresses(client, local, api_vault) -> None:
    """Request rates, refusals and grant counts show how the vault is used: not for anyone
    who can reach the port. Refused like a path that does not exist."""
    r = client.get("/metrics")  # the test client's address is not loopback
    assert r.status_code == 404 and "vault_" not in r.text
    with TestClient(client.app, client=("10.1.2.3", 4000)) as remote:
        assert remote.get("/metrics").status_code == 404
        api_vault.settings.metrics_allow = "10.1.2.0/24"
        assert remote.get("/metrics").status_code == 200
        api_vault.settings.metrics_allow = ""  # nobody
        assert remote.get("/metrics").status_code == 404
        assert local.get("/metrics").status_code == 404


def test_metrics_allow_refuses_what_is_not_an_address(tmp_path) -> None:
    from pydantic import ValidationError

    from foundation.settings import Settings

    with pytest.raises(ValidationError, match="not an IP address or network"):
        Settings(data_dir=tmp_path, metrics_allow="*")
    assert Settings(data_dir=tmp_path, metrics_allow=" 10.0.0.0/8 , ::1").metrics_allow == (
        "10.0.0.0/8,::1"
    )


def test_request_ids_are_returned_and_only_sane_ones_kept(client) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "lb-1234.abc_Z"})
    assert r.headers["x-request-id"] == "lb-1234.abc_Z"
    for bad in ("a b", "x" * 65, "13800138000;forged", "名字".encode(), ""):
        r = client.get("/healthz", headers={"X-Request-ID": bad})
        rid = r.headers["x-request-id"]
        assert rid not in (bad, "名字") and len(rid) == 16 and request_id(rid) == rid
    generated = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3


def test_a_log_line_is_one_json_object_with_the_request_id(client, login) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        r = client.get("/customers?limit=5&name=secret-value", headers=login("zhang.wei"))
        logging.getLogger("archive_vault.test").warning("outside a request")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    access = [x for x in lines if x["logger"] == "archive_vault.access"]
    line = next(x for x in access if x.get("request_id") == r.headers["x-request-id"])
    assert line["route"] == "/customers" and line["method"] == "GET" and line["status"] == 200
    assert line["level"] == "info" and line["time"].endswith("+00:00")
    assert isinstance(line["duration_ms"], float) and line["client"] == "testclient"
    assert "secret-value" not in out.getvalue() and "limit=" not in out.getvalue()
    outside = lines[-1]
    assert outside["message"] == "outside a request" and "request_id" not in outside


def test_log_config_sends_uvicorn_through_the_json_formatter() -> None:
    config = log_config("warning")
    assert config["root"]["level"] == "WARNING"
    assert config["formatters"]["json"]["()"] == "api.logging_setup.JsonFormatter"
    assert config["loggers"]["uvicorn.error"]["propagate"] is True
    assert config["loggers"]["uvicorn.access"]["propagate"] is False  # it logs query strings
    for chatty in ("sqlalchemy", "python_multipart"):  # SQL parameters, form fields
        assert log_config("debug")["loggers"][chatty]["level"] == "WARNING"
    with pytest.raises(ValueError, match="log level"):
        log_config("loud")
