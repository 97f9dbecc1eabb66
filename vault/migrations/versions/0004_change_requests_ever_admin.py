"""change requests and ever_admin: access_request.change, app_user.ever_admin

Widening access (reassigning, lowering a classification, changing a custodian, a
handover, giving a role that reads content) is a request whose change is kept on
the request until the final signature applies it. ``ever_admin`` remembers for
good that an account was given ``admin``: such an account never gets a role that
reads content. Accounts holding ``admin`` today are marked, and a vault that
already has an information supervisor is marked as past its first bootstrap.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table copy): SQLite adds a NOT NULL column with a
    # constant default in place, so rows referencing app_user stay as they are.
    op.add_column("access_request", sa.Column("change", sa.JSON(), nullable=True))
    op.add_column(
        "app_user",
        sa.Column("ever_admin", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE app_user SET ever_admin = TRUE WHERE id IN "
        "(SELECT user_id FROM user_role WHERE role = 'admin')"
    )
    op.execute(
        "INSERT INTO vault_meta (key, value) SELECT 'roles_need_approval', '1' "
        "WHERE EXISTS (SELECT 1 FROM user_role WHERE role = 'info_supervisor') "
        "AND NOT EXISTS (SELECT 1 FROM vault_meta WHERE key = 'roles_need_approval')"
    )


def downgrade() -> None:
    # Plain DROP COLUMN, like the upgrade's ADD: a SQLite table copy of app_user
    # fails on the foreign keys of the rows that reference it.
    op.drop_column("app_user", "ever_admin")
    op.drop_column("access_request", "change")
    op.execute("DELETE FROM vault_meta WHERE key = 'roles_need_approval'")
