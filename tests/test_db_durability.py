"""An audit entry is durable when its INSERT returns, whatever the login role's defaults say.

The service's own login role may set its session defaults (``ALTER ROLE CURRENT_USER
SET synchronous_commit = off``, no other privilege needed). With that, every commit
returns before its WAL is flushed: the hot read path releases plaintext on an entry a
crash of the database a moment later loses. The engine refuses to run so: a session
starting with ``off`` is set back to ``on`` (stricter settings are left as they are).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from foundation.db import make_engine
from tests.conftest import PG_URL

pytestmark = pytest.mark.postgres


def _setting(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar_one())
    finally:
        engine.dispose()


def _with_default(value: str) -> str:
    if not PG_URL.startswith("postgresql"):
        pytest.skip("PostgreSQL run: set VAULT_TEST_DATABASE_URL to enable")
    sep = "&" if "?" in PG_URL else "?"
    # A URL option starts the session with the value, as a role's default would.
    return f"{PG_URL}{sep}options={quote(f'-c synchronous_commit={value}')}"


def test_a_session_default_of_off_is_refused() -> None:
    assert _setting(_with_default("off")) == "on"


def test_stricter_settings_are_the_operators() -> None:
    assert _setting(_with_default("remote_apply")) == "remote_apply"
