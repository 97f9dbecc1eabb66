"""``archive-vault upgrade`` killed with SIGKILL mid-migration: the schema stays at the old
revision (a migration is one transaction on both databases) and ``upgrade`` runs again.

The vault is moved back one revision, then upgraded by a process held after the
migration's statements ran and its revision was stamped, before the commit, and
killed there. Afterwards the schema is exactly the one before (same revision, same
tables), a second ``upgrade`` succeeds, and the log verifies.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from tests.faults.kill import audit_verifies, cli, held_env, kill_at_hold
from vault import migrate

pytestmark = pytest.mark.slow


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_an_upgrade_killed_before_its_commit_leaves_the_old_schema(vault, env, marker) -> None:
    head = migrate.head()
    command.downgrade(migrate.config(vault.engine), "-1")
    before = migrate.current(vault.engine)
    assert before is not None and before != head
    tables = _tables(vault.engine)
    vault.engine.dispose()

    held = held_env(env, marker, "alembic.runtime.migration:HeadMaintainer.update_to_step")
    kill_at_hold(held, marker, "upgrade")

    vault.engine.dispose()
    assert migrate.current(vault.engine) == before
    assert _tables(vault.engine) == tables, "a killed migration left tables behind"

    out = cli(env, "upgrade")
    assert head in out.stdout
    assert migrate.current(vault.engine) == head
    audit_verifies(env)
