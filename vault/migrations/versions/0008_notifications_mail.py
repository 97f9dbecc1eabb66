"""notifications by mail: users' addresses, the outbox, loan notices by time

Revision ID: 0008
Revises: 0007

``app_user.email``: where a person's notifications are mailed (none: in-app only).
``notification_mail``: the outbox, written in the notification's transaction and
sent after commit. ``loan_register.due_notified_at`` / ``overdue_notified_at``
replace the ``overdue_notified`` flag, because an overdue loan is now told again
every day it stays out; a loan already flagged keeps its due time as the last
notice, so the first daily reminder follows a day after it.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD/DROP COLUMN, never a batch table copy (foreign keys point at both tables).
    op.add_column(
        "app_user",
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
    )
    op.add_column(
        "loan_register",
        sa.Column("due_notified_at", vault.models.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "loan_register",
        sa.Column("overdue_notified_at", vault.models.UTCDateTime(timezone=True), nullable=True),
    )
    op.execute(
        "UPDATE loan_register SET overdue_notified_at = due_at, due_notified_at = due_at "
        "WHERE overdue_notified = TRUE"
    )
    op.drop_column("loan_register", "overdue_notified")
    op.create_table(
        "notification_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["notification_id"], ["policy_notification.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_notification_mail_notification_id", "notification_mail", ["notification_id"]
    )
    op.create_index("ix_mail_state_due", "notification_mail", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_mail_state_due", table_name="notification_mail")
    op.drop_index("ix_notification_mail_notification_id", table_name="notification_mail")
    op.drop_table("notification_mail")
    op.add_column(
        "loan_register",
        sa.Column("overdue_notified", sa.Boolean(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE loan_register SET overdue_notified = TRUE WHERE overdue_notified_at IS NOT NULL"
    )
    op.drop_column("loan_register", "overdue_notified_at")
    op.drop_column("loan_register", "due_notified_at")
    op.drop_column("app_user", "email")
