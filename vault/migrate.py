"""Alembic migrations: ``init`` applies them, start-up checks them, ``upgrade`` moves them on.

The migration environment lives inside the package (``vault/migrations``) so an
installed vault can upgrade itself; every package's tables are in one history.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from vault.errors import NotInitialised

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaOutdated(NotInitialised):
    code = "schema-outdated"


def config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(config()).get_current_head() or ""


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(config(engine), revision)


def check(engine: Engine) -> None:
    """Refuse a database whose schema is older (or newer) than this code."""
    have, want = current(engine), head()
    if have != want:
        raise SchemaOutdated(
            f"the database schema is at {have or 'no revision'}, this version needs {want}; "
            "back up the database, then run `archive-vault upgrade`"
        )
