"""Alembic migrations: ``init`` applies them, start-up checks them, ``upgrade`` moves them on.

The migration environment lives inside the package (``vault/migrations``) so an
installed vault can upgrade itself; every package's tables are in one history.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from audit.guards import DEFAULT_APP_ROLE, install_guards
from audit.models import AUDIT_TABLES
from vault.errors import AppRoleMissing, NotInitialised

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


def app_role(engine: Engine, configured: str = "") -> str:
    """The vault's application role: ``VAULT_APP_ROLE``, else ``<database>_app``.

    Named after the database, not one cluster-wide name: on a cluster that holds
    several vaults, the login made a member of one vault's role must get no rights
    in another vault's database. Non-identifier characters of the database name
    become ``_`` and the name is cut to PostgreSQL's 63 bytes.
    """
    if configured:
        return configured
    with engine.connect() as conn:
        database = str(conn.exec_driver_sql("SELECT current_database()").scalar_one())
    base = re.sub(r"[^a-z0-9_]", "_", database.lower())
    if not base or not (base[0].isalpha() or base[0] == "_"):
        base = f"v_{base}"
    return f"{base[:59]}_app"


def secure(engine: Engine, configured_role: str = "") -> None:
    """Grant the application role its rights, then make the audit tables append-only.

    Run after every ``init`` and ``upgrade``: new tables need their grants, and
    ``install_guards`` narrows the audit tables afterwards.
    """
    role = DEFAULT_APP_ROLE
    if engine.dialect.name == "postgresql":
        role = app_role(engine, configured_role)
        _require_role(engine, role)
        grant_app_role(engine, role)
    install_guards(engine, app_role=role)


def _require_role(engine: Engine, role: str) -> None:
    """The application role exists, or the database owner may create it.

    A database owner without CREATEROLE (as it should be: that right reaches every
    role of the cluster) cannot make the role itself; say which statement a
    superuser runs, instead of a bare "permission denied".
    """
    with engine.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        may_create = conn.execute(
            sa.text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
        ).scalar()
    if exists is None and not may_create:
        raise AppRoleMissing(
            f"the vault's application role {role} does not exist and this database login may "
            f"not create roles: as a PostgreSQL superuser run `CREATE ROLE {role} NOLOGIN;`, "
            "then run this command again"
        )


def grant_app_role(engine: Engine, role: str) -> None:
    """PostgreSQL: give the service's role what it needs on the vault's own tables.

    The service should log in as a member of this role and never as the
    tables' owner (only the owner can drop or disable the audit triggers). The
    audit tables get only SELECT and INSERT, from ``audit.guards.install_guards``,
    which must run after this.
    """
    if engine.dialect.name != "postgresql":
        return
    if not role.replace("_", "").isalnum():
        raise ValueError(f"invalid role name {role!r}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"""
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {role} NOLOGIN;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END
            $$
            """  # noqa: S608 - role checked above
        )
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        tables = [
            t
            for t in conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).scalars()
            if t not in AUDIT_TABLES
        ]
        for table in tables:
            rights = "SELECT" if table == "alembic_version" else "SELECT, INSERT, UPDATE, DELETE"
            conn.exec_driver_sql(f'GRANT {rights} ON "{table}" TO {role}')
        conn.exec_driver_sql(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}')
