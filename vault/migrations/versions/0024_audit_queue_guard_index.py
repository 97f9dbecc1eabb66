"""the append queue's delete guard looks chained entries up by actor and time

Revision ID: 0024
Revises: 0023

The guard that lets a row leave ``audit_queue`` only once its entry is chained
(PostgreSQL: a statement trigger over the deleted rows; SQLite: a row trigger)
looked the entry up by actor, time and action. PostgreSQL's planner could answer
that through ``ix_audit_entry_action``, reading every entry with the same action
(most of the log: reads) for each deleted row, so each sequencing batch took
longer as the log grew. The lookup now cannot use the action index
(``action + 0``), leaving the (actor, time) index, and the function runs without
JIT.

The three audit functions also get a fixed ``search_path`` (the audit tables'
schema, then ``pg_temp``): PostgreSQL searches a session's temporary schema
first unless told otherwise, and any role may create a temporary table, so a
temporary ``audit_entry`` holding the queued rows' actor, time and action let the
guard pass the deletion of entries never chained.

The SQL is written out here, not imported from ``audit.guards``: a migration
must mean the same thing whatever a later version's code says.
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_queue_check_delete() RETURNS trigger
LANGUAGE plpgsql {settings}AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM gone g WHERE NOT EXISTS (SELECT 1 FROM audit_entry e
               WHERE e.actor = g.actor AND e.time = g.time AND e.action{plus} = g.action)) THEN
        RAISE EXCEPTION 'audit_queue: an entry leaves the queue only once chained'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$
"""
_SQLITE_TRIGGER = (
    "CREATE TRIGGER audit_queue_no_unchained_delete BEFORE DELETE ON audit_queue "
    "WHEN NOT EXISTS (SELECT 1 FROM audit_entry e WHERE e.actor = OLD.actor "
    "AND e.time = OLD.time AND e.action{plus} = OLD.action) "
    "BEGIN SELECT RAISE(ABORT, 'audit_queue: an entry leaves only once chained'); END"
)


_FUNCTIONS = ("audit_queue_check_delete()", "audit_refuse_change()", "audit_lock_head(integer)")


def _install(indexed: bool) -> None:
    plus = " + 0" if indexed else ""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # CREATE OR REPLACE keeps the function's owner, grants and the triggers using it.
        op.execute(_FUNCTION.format(settings="SET jit = off " if indexed else "", plus=plus))
        schema = bind.exec_driver_sql("SELECT current_schema()").scalar_one()
        quoted = bind.dialect.identifier_preparer.quote_identifier(schema)
        for function in _FUNCTIONS:
            if indexed:
                op.execute(f"ALTER FUNCTION {function} SET search_path = {quoted}, pg_temp")
            else:
                op.execute(f"ALTER FUNCTION {function} RESET search_path")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_queue_no_unchained_delete")
        op.execute(_SQLITE_TRIGGER.format(plus=plus))


def upgrade() -> None:
    _install(indexed=True)


def downgrade() -> None:
    _install(indexed=False)
