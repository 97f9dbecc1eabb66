"""leak case notification duties

Revision ID: 0015
Revises: 0014

``leak_duty``: per leak case, whether customers' personal information was
affected (how many, which field groups and archives), the cause category, when
the handlers became aware, the regulator's and the individuals' deadlines, and
when each was notified (PIPL Art 57).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, vault.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "leak_duty",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("leak_case.id"), nullable=False),
        sa.Column("pi_affected", sa.Boolean(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("archives", sa.JSON(), nullable=False),
        sa.Column("cause", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        _ts("aware_at", True),
        _ts("regulator_due_at", True),
        _ts("individuals_due_at", True),
        _ts("regulator_notified_at", True),
        _ts("individuals_notified_at", True),
        _ts("updated_at", False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.UniqueConstraint("case_id"),
    )
    op.create_index("ix_leak_duty_regulator_due_at", "leak_duty", ["regulator_due_at"])
    op.create_index("ix_leak_duty_individuals_due_at", "leak_duty", ["individuals_due_at"])


def downgrade() -> None:
    op.drop_table("leak_duty")
