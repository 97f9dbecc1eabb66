"""copy and external requests state their format and copies; grants count copies

Revision ID: 0011
Revises: 0010

``access_request.export_format``: the file format a copy or external request asks
for ("csv" or "json"). ``access_grant.copies`` / ``copies_used``: how many exports
the approval permits and how many were made. Requests filed before formats were
stated keep an empty format (any format) and are counted as one copy, as are the
copy and external grants already issued: one more export each, then a new request.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN with literal defaults, never a batch table copy (see 0007).
    op.add_column(
        "access_request",
        sa.Column(
            "export_format",
            sqlmodel.sql.sqltypes.AutoString(length=8),
            nullable=False,
            server_default="",
        ),
    )
    op.add_column(
        "access_grant", sa.Column("copies", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "access_grant", sa.Column("copies_used", sa.Integer(), nullable=False, server_default="0")
    )
    op.execute(
        "UPDATE access_request SET copies = 1 WHERE kind IN ('copy', 'external') AND copies < 1"
    )
    op.execute("UPDATE access_grant SET copies = 1 WHERE kind IN ('copy', 'external')")


def downgrade() -> None:
    op.drop_column("access_grant", "copies_used")
    op.drop_column("access_grant", "copies")
    op.drop_column("access_request", "export_format")
