"""one queued entry per account and microsecond: two honest entries are never one

Revision ID: 0026
Revises: 0025

The sequencer takes a queued entry equal in every column to one already chained
for a copy the application's role inserted again (the queued MAC binds the
columns, not the row), and leaves it unchained. Two honest entries can be equal
in every column: one account's identical requests stamped in the same
microsecond by two workers. The second was then reported as replayed and never
chained. A unique index on (actor, time) makes the database refuse the second
while the first waits; the append (``audit.queue.enqueue``) then stamps it one
microsecond later, so every honest entry is distinct.

Rows already queued twice under one account and microsecond (which only the
case above produced) keep their place: the index then covers only rows queued
after them. The SQL is written out here: a migration must mean the same thing
whatever a later version's code says.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

_INDEX = "ux_audit_queue_actor_time"


def upgrade() -> None:
    bind = op.get_bind()
    twice = bind.execute(
        sa.text(
            "SELECT max(id) FROM audit_queue WHERE (actor, time) IN "
            "(SELECT actor, time FROM audit_queue GROUP BY actor, time HAVING count(*) > 1)"
        )
    ).scalar()
    where = f" WHERE id > {int(twice)}" if twice is not None else ""
    op.execute(f"CREATE UNIQUE INDEX {_INDEX} ON audit_queue (actor, time){where}")


def downgrade() -> None:
    op.execute(f"DROP INDEX {_INDEX}")
