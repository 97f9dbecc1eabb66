"""report requests and grants record their departments and items

Revision ID: 0010
Revises: 0009

``report_scope`` ("department" or "all"), ``report_departments`` and ``report_items``
on ``access_request`` and ``access_grant`` (Art 10-11, ``policies.reports``): a report
grant counts only the departments and items it was approved for. Report requests
and grants made before this revision were filed when every report covered every
department and item, and their chain always ended with the general manager, who is
the one DOMAIN.md lets approve all departments: they keep that reach ("all", every
item) rather than silently losing it. A grant recording nothing covers nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# vault.archives.REPORT_ITEMS as of this revision (a migration never imports the code
# it migrates for: the list may grow later, old grants keep what they had).
_ITEMS = [
    "total",
    "status",
    "category",
    "grade",
    "classification",
    "department",
    "new_per_month",
    "past_retention",
]


def upgrade() -> None:
    # Plain ADD COLUMN (nullable), never a batch table copy: see 0007.
    for table in ("access_request", "access_grant"):
        op.add_column(
            table,
            sa.Column("report_scope", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        )
        op.add_column(table, sa.Column("report_departments", sa.JSON(), nullable=True))
        op.add_column(table, sa.Column("report_items", sa.JSON(), nullable=True))
        rows = sa.table(
            table,
            sa.column("kind", sa.String()),
            sa.column("report_scope", sa.String()),
            sa.column("report_items", sa.JSON()),
        )
        op.execute(
            sa.update(rows)
            .where(rows.c.kind == "report")
            .values(report_scope="all", report_items=_ITEMS)
        )


def downgrade() -> None:
    for table in ("access_grant", "access_request"):
        op.drop_column(table, "report_items")
        op.drop_column(table, "report_departments")
        op.drop_column(table, "report_scope")
