"""Alembic environment: runs on the engine the vault hands over (never a URL in a file)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

# The migrations are explicit operations: they need no table classes imported.
target_metadata = SQLModel.metadata
engine = context.config.attributes.get("engine")
if engine is None:  # `alembic` run by hand: use the settings of the environment
    from foundation.db import make_engine
    from foundation.settings import Settings

    engine = make_engine(Settings().resolved_database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
