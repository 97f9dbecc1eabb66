"""Fixtures of the fault tests: a vault the CLI opens, and what its tables hold."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from audit.log import AuditLog
from audit.models import entry_table
from tests.served import vault_env
from vault.store import ArchiveStore
from vault.vault import Vault


@pytest.fixture
def env(vault) -> dict[str, str]:
    """The environment in which ``archive-vault`` opens the test's vault."""
    return vault_env(vault, VAULT_LOGIN_DELAY_SECONDS="0")


@pytest.fixture
def store(vault: Vault, sink: AuditLog) -> ArchiveStore:
    return ArchiveStore(vault=vault, audit=sink)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "held"


def entries(vault, action: str) -> int:
    """How many entries of ``action`` the log holds (queued ones chained first)."""
    vault.audit_log().integrate()
    with vault.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(entry_table.c.action == action)
            ).scalar_one()
        )


def count(vault, table: str, where: str = "") -> int:
    with vault.engine.connect() as conn:
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(conn.exec_driver_sql(sql).scalar_one())


# The API's vault with one user per role, its in-process client and sign-in (tests.api).
from tests.api.conftest import api_vault, client, clock, login  # noqa: E402, F401
