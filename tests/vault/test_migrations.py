"""Migrations: init applies them, start-up refuses an outdated schema, models match them."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from foundation.db import make_engine, transaction
from policies.directory import add_user
from policies.models import AccessGrant, AccessRequest, LoanEntry
from tests.conftest import PG_URL
from tests.tables import import_models
from vault import migrate
from vault.errors import AppRoleMissing
from vault.vault import init_vault, open_vault


def test_init_applies_every_migration(vault) -> None:
    assert migrate.current(vault.engine) == migrate.head()


def test_models_and_migrations_agree(vault) -> None:
    import_models()
    with vault.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], "a model changed without a migration: run alembic revision --autogenerate"


def test_an_outdated_schema_is_refused_with_the_command_to_fix_it(vault, settings) -> None:
    with vault.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(migrate.SchemaOutdated, match="archive-vault upgrade"):
        open_vault(settings, engine=vault.engine)


def test_a_database_at_the_first_revision_upgrades_to_head(engine, settings) -> None:
    vault = init_vault(settings, engine=engine)
    migrate.upgrade(engine, "head")
    # Back to the first revision through the migrations' own downgrades, so the test
    # holds whatever migrations come after it.
    command.downgrade(migrate.config(engine), "0001")
    assert migrate.current(engine) == "0001"
    with pytest.raises(migrate.SchemaOutdated):
        open_vault(settings, engine=engine)
    migrate.upgrade(engine)
    assert open_vault(settings, engine=engine).keys.vault_id == vault.keys.vault_id


def test_the_app_role_may_change_the_store_but_only_append_to_the_audit(vault) -> None:
    if vault.engine.dialect.name != "postgresql":
        pytest.skip("roles and grants are PostgreSQL's")
    role = migrate.app_role(vault.engine)
    with vault.engine.connect() as conn:

        def can(table: str, right: str) -> bool:
            return bool(
                conn.execute(
                    sa.text("SELECT has_table_privilege(:role, current_schema() || '.' || :t, :r)"),
                    {"role": role, "t": table, "r": right},
                ).scalar()
            )

        assert can("archive", "UPDATE") and can("archive_content", "DELETE")
        assert can("audit_entry", "INSERT") and can("audit_entry", "SELECT")
        assert not can("audit_entry", "UPDATE") and not can("audit_entry", "DELETE")
        assert not can("alembic_version", "UPDATE")


def test_existing_grants_take_their_terms_from_their_request(vault) -> None:
    """Upgrading a vault with grants: each records what its request was approved for, and
    a loan still unconfirmed waits for its borrower."""

    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with transaction(vault.engine) as s:
        req = AccessRequest(
            uid="R-OLD",
            kind="loan",
            requester="li.na",
            archives=["KH-2026-000001"],
            classification="top_secret",
            custodian="zhao.lei",
            purpose="revisit",
            reason="r",
            state="approved",
            expires_at=at,
        )
        s.add(req)
        s.flush()
        grant = AccessGrant(
            uid="G-OLD",
            request_id=req.id,
            kind="loan",
            subject="li.na",
            not_before=at,
            not_after=at + timedelta(hours=24),
            purpose="revisit",
            reason="r",
            state="active",
        )
        s.add(grant)
        s.flush()
        s.add(
            LoanEntry(
                uid="L-OLD",
                request_id=req.id,
                grant_id=grant.id,
                borrower="li.na",
                material="m",
                copies=1,
                reason="r",
                start_at=at,
                due_at=at + timedelta(hours=24),
                state="out",
            )
        )
    command.downgrade(migrate.config(vault.engine), "0006")
    migrate.upgrade(vault.engine)
    with vault.engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT approved_classification, approved_custodian, awaiting_confirmation "
                "FROM access_grant WHERE uid = 'G-OLD'"
            )
        ).one()
    assert (row[0], row[1], bool(row[2])) == ("top_secret", "zhao.lei", True)


def test_upgrading_marks_todays_administrators_as_ever_admin(engine, settings) -> None:
    vault = init_vault(settings, engine=engine)
    with transaction(vault.engine) as session:
        add_user(session, username="root", roles=["admin"])
        add_user(session, username="boss", roles=["info_supervisor"])
        add_user(session, username="sales", roles=["salesperson"])
    # back to before the change-request migration, through the later ones' downgrades
    command.downgrade(migrate.config(engine), "0003")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM vault_meta WHERE key = 'roles_need_approval'"))
    migrate.upgrade(engine)
    with engine.connect() as conn:
        marked = dict(conn.execute(sa.text("SELECT username, ever_admin FROM app_user")).all())
        flag = conn.execute(
            sa.text("SELECT value FROM vault_meta WHERE key = 'roles_need_approval'")
        ).scalar()
    assert marked == {"root": True, "boss": False, "sales": False} and flag == "1"


def test_each_vault_database_has_its_own_app_role() -> None:
    """On a shared cluster, the service login of one vault gets no rights in another's."""
    if not PG_URL.startswith("postgresql"):
        pytest.skip("roles and grants are PostgreSQL's")
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    names = [f"av_role_{secrets.token_hex(4)}_{side}" for side in "ab"]
    engines: list[sa.Engine] = []
    try:
        for name in names:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            engine = make_engine(sa.make_url(PG_URL).set(database=name).render_as_string(False))
            engines.append(engine)
            migrate.upgrade(engine)
            migrate.secure(engine)
        roles = [migrate.app_role(e) for e in engines]
        assert roles == [f"{n}_app" for n in names]

        def can(engine: sa.Engine, role: str) -> bool:
            with engine.connect() as conn:
                return bool(
                    conn.execute(
                        sa.text("SELECT has_table_privilege(:r, 'public.archive', 'SELECT')"),
                        {"r": role},
                    ).scalar()
                )

        assert can(engines[0], roles[0]) and can(engines[1], roles[1])
        assert not can(engines[0], roles[1]) and not can(engines[1], roles[0])
        migrate.secure(engines[0], "custom_vault_role")  # VAULT_APP_ROLE names it instead
        assert can(engines[0], "custom_vault_role")
    finally:
        for engine in engines:
            engine.dispose()
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            for role in [f"{n}_app" for n in names]:
                conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def test_an_owner_who_may_not_create_roles_is_told_which_to_create() -> None:
    if not PG_URL.startswith("postgresql"):
        pytest.skip("roles and grants are PostgreSQL's")
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    tag = secrets.token_hex(4)
    owner, name = f"av_owner_{tag}", f"av_norole_{tag}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {owner} LOGIN")
        conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {owner}")
    url = sa.make_url(PG_URL).set(database=name, username=owner)
    engine = make_engine(url.render_as_string(False))
    try:
        migrate.upgrade(engine)
        with pytest.raises(AppRoleMissing, match=f"CREATE ROLE {name}_app NOLOGIN"):
            migrate.secure(engine)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE ROLE {name}_app NOLOGIN")
        migrate.secure(engine)  # created by a superuser: the owner grants it its rights
        with engine.connect() as conn:
            granted = conn.exec_driver_sql(
                f"SELECT has_table_privilege('{name}_app', 'public.archive', 'UPDATE')"
            ).scalar()
        assert granted
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}_app")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {owner}")
        admin.dispose()


def test_the_queue_index_upgrade_keeps_entries_already_queued_twice(engine, settings) -> None:
    """Rows queued under one account and microsecond before the unique index (honest
    collisions) stay where they are; every row queued afterwards is unique."""
    init_vault(settings, engine=engine)
    command.downgrade(migrate.config(engine), "0025")
    row = (
        "INSERT INTO audit_queue (time, actor, actor_role, action, outcome, archives, "
        "\"groups\", detail, mac) VALUES (1, 'a', 'salesperson', 1, 1, '[]', '[]', '{}', NULL)"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(row)
        conn.exec_driver_sql(row)
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.exec_driver_sql(row.replace("(1,", "(2,"))
        conn.exec_driver_sql(row.replace("(1,", "(2,"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_queue").scalar_one() == 2
