"""a queued entry leaves the queue only once an entry with its whole content is chained

Revision ID: 0025
Revises: 0024

The guard on ``audit_queue`` let a row be deleted once any chained entry had
its actor, time and action. Two entries of one account share those when two
of its requests are stamped in the same microsecond (two workers), and the
application's role could then delete the second, unchained, entry once the
first was chained: a read without its entry. The guard now asks for a chained
entry equal in every column an event sets (nullable ones compared null-safely),
still found through the (actor, time) index.

The SQL is written out here, not imported from ``audit.guards``: a migration
must mean the same thing whatever a later version's code says. ``CREATE OR
REPLACE`` resets a function's settings, so the function's ``jit`` and
``search_path`` are set again (``0024``).
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_SAME_ACTION = "e.actor = {q}.actor AND e.time = {q}.time AND e.action + 0 = {q}.action"
_REST = (
    " AND e.actor_role = {q}.actor_role AND e.outcome = {q}.outcome"
    ' AND e.archives = {q}.archives AND e."groups" = {q}."groups" AND e.detail = {q}.detail'
    " AND e.grant_id {same} {q}.grant_id AND e.purpose {same} {q}.purpose"
    " AND e.reason {same} {q}.reason AND e.client {same} {q}.client"
)
_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_queue_check_delete() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM gone g WHERE NOT EXISTS (SELECT 1 FROM audit_entry e
               WHERE {condition})) THEN
        RAISE EXCEPTION 'audit_queue: an entry leaves the queue only once chained'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$
"""
_SQLITE_TRIGGER = (
    "CREATE TRIGGER audit_queue_no_unchained_delete BEFORE DELETE ON audit_queue "
    "WHEN NOT EXISTS (SELECT 1 FROM audit_entry e WHERE {condition}) "
    "BEGIN SELECT RAISE(ABORT, 'audit_queue: an entry leaves only once chained'); END"
)


def _install(whole: bool) -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    q = "g" if postgres else "OLD"
    condition = _SAME_ACTION.format(q=q)
    if whole:
        condition += _REST.format(q=q, same="IS NOT DISTINCT FROM" if postgres else "IS")
    if postgres:
        op.execute(_FUNCTION.format(condition=condition))
        schema = bind.exec_driver_sql("SELECT current_schema()").scalar_one()
        quoted = bind.dialect.identifier_preparer.quote_identifier(schema)
        op.execute(f"ALTER FUNCTION audit_queue_check_delete() SET search_path = {quoted}, pg_temp")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_queue_no_unchained_delete")
        op.execute(_SQLITE_TRIGGER.format(condition=condition))


def upgrade() -> None:
    _install(whole=True)


def downgrade() -> None:
    _install(whole=False)
