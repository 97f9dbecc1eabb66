"""auth: login counters in the database, one-time password resets, token generation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vault.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "login_name_counter",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "login_address_counter",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(
        op.f("ix_login_address_counter_window_start"),
        "login_address_counter",
        ["window_start"],
        unique=False,
    )
    op.create_table(
        "password_reset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("issued_by", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("admin_code_hmac", sa.String(length=64), nullable=False),
        sa.Column("holder_code_hmac", sa.String(length=64), nullable=False),
        sa.Column("holder_code_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("holder_fetched_at", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("password_reset", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_password_reset_uid"), ["uid"], unique=True)
        batch_op.create_index(batch_op.f("ix_password_reset_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_password_reset_holder"), ["holder"], unique=False)
        batch_op.create_index(batch_op.f("ix_password_reset_state"), ["state"], unique=False)


def downgrade() -> None:
    op.drop_table("password_reset")
    op.drop_index(op.f("ix_login_address_counter_window_start"), "login_address_counter")
    op.drop_table("login_address_counter")
    op.drop_table("login_name_counter")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_column("token_generation")
