"""the record of inspections (Art 14)

Revision ID: 0016
Revises: 0015

``inspection``: one row per inspection of the whole vault, with its signed
report (identifiers and counts only), the report's hash and the audit seq of
the entry that recorded it. Never deleted.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, vault.models.UTCDateTime(timezone=True), nullable=nullable)


def _s(name: str, length: int, **kw: object) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), **kw)


def upgrade() -> None:
    op.create_table(
        "inspection",
        sa.Column("id", sa.Integer(), primary_key=True),
        _s("uid", 32, nullable=False),
        _ts("started_at", False),
        _ts("finished_at", False),
        _s("actor", 64, nullable=False),
        sa.Column("clean", sa.Boolean(), nullable=False),
        _s("report_sha256", 64, nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("audit_seq", sa.Integer(), nullable=True),
    )
    op.create_index("ix_inspection_uid", "inspection", ["uid"], unique=True)
    op.create_index("ix_inspection_started_at", "inspection", ["started_at"])


def downgrade() -> None:
    op.drop_table("inspection")
