"""sessions of the web pages

Revision ID: 0012
Revises: 0011

``web_session``: one row per signed-in browser, keyed by the SHA-256 of the
cookie's secret (never the secret), with the user's token generation at sign-in,
when it began, when it was last used (idle timeout) and when it ended (logout).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), primary_key=True),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", vault.models.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_web_session_username", "web_session", ["username"])


def downgrade() -> None:
    op.drop_index("ix_web_session_username", table_name="web_session")
    op.drop_table("web_session")
