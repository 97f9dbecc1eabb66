"""audit append queue

Revision ID: 0020
Revises: 0019

``audit_queue``: on PostgreSQL a request's audit entry is inserted here and
commits without the chain's lock; the sequencer chains it into ``audit_entry``
and deletes it in one transaction (``audit.queue``). Guarded like the log:
no UPDATE or TRUNCATE, and a DELETE only of rows already chained.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_queue",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(),
            primary_key=True,
        ),
        sa.Column("time", sa.String(27), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_role", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("archives", sa.Text(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("grant_id", sa.String(200), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("client", sa.String(200), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("mac", sa.LargeBinary(32), nullable=True),
    )
    from audit.guards import install_guards_on

    install_guards_on(op.get_bind())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in ("no_update", "no_unchained_delete"):
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS audit_queue_{name}")
    op.drop_table("audit_queue")
