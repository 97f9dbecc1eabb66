"""Alembic environment: runs on the engine the vault hands over (never a URL in a file)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

# The migrations are explicit operations: they need no table classes imported.
target_metadata = SQLModel.metadata
engine = context.config.attributes.get("engine")
if engine is None:  # `alembic` run by hand: use the settings of the environment
    from foundation.db import make_engine
    from foundation.settings import Settings

    engine = make_engine(Settings().resolved_database_url)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


with engine.connect() as connection:
    if connection.dialect.name != "sqlite":
        _run(connection)  # PostgreSQL: DDL is transactional, the whole run one transaction
    else:
        # Python's sqlite3 opens a transaction only before INSERT, UPDATE or DELETE: a
        # migration's first CREATE TABLE would commit on its own, and a migration killed
        # later would leave that table behind, failing every later `upgrade`. So the
        # driver opens none and the run is one explicit transaction (taking the write
        # lock at once): killed anywhere, nothing of it stays.
        dbapi: Any = connection.connection.dbapi_connection
        legacy = dbapi.isolation_level
        dbapi.isolation_level = None
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            _run(connection)
        finally:
            connection.rollback()  # nothing left to roll back after the commit
            dbapi.isolation_level = legacy
