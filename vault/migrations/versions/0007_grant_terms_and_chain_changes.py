"""grants record what they were approved for; requests record chain changes

Revision ID: 0007
Revises: 0006

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
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN with literal defaults, never a batch table copy: on SQLite a copy
    # drops and recreates the table, which foreign keys from the loan register forbid.
    op.add_column(
        "access_grant",
        sa.Column(
            "approved_classification",
            sqlmodel.sql.sqltypes.AutoString(length=16),
            nullable=False,
            server_default="internal",
        ),
    )
    op.add_column(
        "access_grant",
        sa.Column("approved_custodian", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    )
    op.add_column(
        "access_grant",
        sa.Column("awaiting_confirmation", sa.Boolean(), nullable=False, server_default="0"),
    )
    op.add_column(
        "access_request",
        sa.Column("chain_changes", sa.JSON(), nullable=False, server_default="[]"),
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
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+): no table copy, for the same reason.
    op.drop_column("access_request", "chain_changes")
    op.drop_column("access_grant", "awaiting_confirmation")
    op.drop_column("access_grant", "approved_custodian")
    op.drop_column("access_grant", "approved_classification")
