"""Property-based API testing from the OpenAPI schema: no input may produce a 5xx.

Cases are drawn by schemathesis from every operation of ``/openapi.json`` (its
pytest plugin is not used: it does not support this pytest yet) and sent with a
valid salesperson token, so requests get past authentication into the routes.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import PASSWORD
from tests.factories import archive


@pytest.fixture
def api(api_vault, clock):
    app = create_app(vault=api_vault, clock=clock)
    client = TestClient(app)
    token = client.post("/auth/token", data={"username": "zhang.wei", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    body = archive()
    body.pop("owner")
    assert client.post("/customers", json=body, headers=headers).status_code == 201
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    return headers, operations


def test_every_operation_is_covered(api) -> None:
    _, operations = api
    paths = {(op.method.upper(), op.path) for op in operations}
    for expected in [
        ("POST", "/customers"),
        ("GET", "/customers/{archive_no}"),
        ("POST", "/requests"),
        ("POST", "/exports"),
        ("GET", "/audit/proof/{seq}"),
        ("POST", "/users/{username}/handover"),
        ("GET", "/loans"),
    ]:
        assert expected in paths


def test_no_server_errors(api, backend) -> None:
    headers, operations = api
    examples = int(__import__("os").environ.get("ST_EXAMPLES", 250 if backend == "sqlite" else 80))

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=__import__("os").environ.get("ST_RANDOM") != "1",
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        op = data.draw(st.sampled_from(operations))
        case = data.draw(op.as_strategy())
        merged = {
            **headers,
            **{k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"},
        }
        response = case.call(headers=merged)
        where = (case.method, case.formatted_path, response.status_code, response.text[:300])
        assert response.status_code < 500, where
        if response.status_code >= 400:
            content_type = response.headers.get("content-type")
            if isinstance(content_type, list):
                content_type = content_type[0]
            assert str(content_type).startswith("application/problem+json"), where

    run()
