"""Waits on the database are bounded: a PostgreSQL server that does not answer a
connection, or a peer gone without closing it, becomes an error (a 503 for a
request), never a worker thread that waits forever."""

from __future__ import annotations

import pytest

from foundation.db import PG_CONNECT_TIMEOUT, make_engine
from tests.conftest import PG_URL

pytestmark = pytest.mark.postgres


def parameters(url: str) -> dict[str, str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.connection.dbapi_connection.info.get_parameters())  # type: ignore[union-attr]
    finally:
        engine.dispose()


@pytest.fixture
def pg_url() -> str:
    if not PG_URL.startswith("postgresql"):
        pytest.skip("PostgreSQL run: set VAULT_TEST_DATABASE_URL to enable")
    return PG_URL


def test_connections_time_out_and_probe_their_peer(pg_url: str) -> None:
    got = parameters(pg_url)
    assert got["connect_timeout"] == str(PG_CONNECT_TIMEOUT)
    assert got["keepalives"] == "1" and int(got["keepalives_idle"]) > 0


def test_a_value_the_url_sets_is_the_operators(pg_url: str) -> None:
    sep = "&" if "?" in pg_url else "?"
    assert parameters(f"{pg_url}{sep}connect_timeout=3")["connect_timeout"] == "3"
