"""Shared fixtures: every test gets its own database (SQLite file or PostgreSQL schema).

Tests that take ``db_url`` run twice, on SQLite and on PostgreSQL; the
PostgreSQL run is skipped with a reason unless VAULT_TEST_DATABASE_URL is set.
Each PostgreSQL test creates a uniquely named schema and drops it afterwards, so
parallel or repeated runs never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit.log import AuditLog
from foundation.db import make_engine
from foundation.settings import Settings
from vault.vault import Vault, init_vault

PG_URL = os.environ.get("VAULT_TEST_DATABASE_URL", "")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not PG_URL:
        pytest.skip("PostgreSQL run: set VAULT_TEST_DATABASE_URL to enable")
    return request.param


@pytest.fixture
def engine(backend: str, tmp_path: Path) -> Iterator[sa.Engine]:
    if backend == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'vault.db'}")
        yield eng
        eng.dispose()
        return
    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    eng = make_engine(PG_URL, pg_schema=schema)
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def cli_env(backend: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for the CLI: SQLite in the data dir, or a fresh PostgreSQL schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    if backend == "sqlite":
        yield env
        return
    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    env["VAULT_DATABASE_URL"] = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        yield env
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", expected_archives=1000)


@pytest.fixture
def vault(settings: Settings, engine: sa.Engine) -> Vault:
    return init_vault(settings, engine=engine)


@pytest.fixture
def sink(vault: Vault) -> AuditLog:
    """The vault's real audit log: entries commit, or roll back, with the caller's transaction.

    Read what was audited back with ``tests.auditlog.entries``.
    """
    return AuditLog(engine=vault.engine, keys=vault.keys, settings=vault.settings)
