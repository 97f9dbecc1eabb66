"""grants record what they were approved for; requests record chain changes

Revision ID: 0007
Revises: 0002

``access_grant.approved_classification`` / ``approved_custodian``: the marking and
top-secret custodian a grant's chain was signed for, so that a read under it stops
counting once the archive is raised or changes custodian. Existing grants take the
values their request recorded. ``access_grant.awaiting_confirmation``: a loan's
grant counts only after the borrower confirmed the register line (Art 19.5);
existing loans still unconfirmed wait for it too. ``access_request.chain_changes``:
each re-derivation of a request's chain.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_grant", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "approved_classification",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="internal",
            )
        )
        batch_op.add_column(
            sa.Column(
                "approved_custodian", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "awaiting_confirmation", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("access_request", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chain_changes", sa.JSON(), nullable=False, server_default="[]")
        )
    op.execute(
        "UPDATE access_grant SET "
        "approved_classification = (SELECT r.classification FROM access_request r "
        "WHERE r.id = access_grant.request_id), "
        "approved_custodian = (SELECT r.custodian FROM access_request r "
        "WHERE r.id = access_grant.request_id)"
    )
    op.execute(
        "UPDATE access_grant SET awaiting_confirmation = TRUE WHERE id IN "
        "(SELECT grant_id FROM loan_register WHERE borrower_confirmed_at IS NULL "
        "AND state = 'out')"
    )


def downgrade() -> None:
    with op.batch_alter_table("access_request", schema=None) as batch_op:
        batch_op.drop_column("chain_changes")
    with op.batch_alter_table("access_grant", schema=None) as batch_op:
        batch_op.drop_column("awaiting_confirmation")
        batch_op.drop_column("approved_custodian")
        batch_op.drop_column("approved_classification")
