"""leak cases and their events

Revision ID: 0013
Revises: 0012

``leak_case``: a leak report (Art 27) or a detection's alert, with its state;
the text people type about it is sealed. ``leak_case_event``: every change to a
case, never deleted.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, vault.models.UTCDateTime(timezone=True), nullable=nullable)


def _s(name: str, length: int, **kw: object) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), **kw)


def upgrade() -> None:
    op.create_table(
        "leak_case",
        sa.Column("id", sa.Integer(), primary_key=True),
        _s("uid", 32, nullable=False),
        _s("source", 16, nullable=False),
        _s("rule", 64, nullable=False),
        _s("reporter", 64, nullable=False),
        _s("state", 16, nullable=False),
        _s("outcome", 16, nullable=False),
        _ts("noticed_at", True),
        _s("channel", 32, nullable=False),
        sa.Column("archives", sa.JSON(), nullable=False),
        _s("account", 64, nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("what_seen", sa.LargeBinary(), nullable=True),
        sa.Column("how_found", sa.LargeBinary(), nullable=True),
        sa.Column("remedial_action", sa.LargeBinary(), nullable=True),
        _ts("created_at", False),
        _ts("updated_at", False),
        _ts("closed_at", True),
    )
    op.create_index("ix_leak_case_uid", "leak_case", ["uid"], unique=True)
    op.create_index("ix_leak_case_reporter", "leak_case", ["reporter"])
    op.create_index("ix_leak_case_state", "leak_case", ["state"])
    op.create_index("ix_leak_case_account", "leak_case", ["account"])
    op.create_index("ix_leak_case_created_at", "leak_case", ["created_at"])
    op.create_table(
        "leak_case_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("leak_case.id"), nullable=False),
        _ts("at", False),
        _s("actor", 64, nullable=False),
        _s("kind", 16, nullable=False),
        _s("from_state", 16, nullable=False),
        _s("to_state", 16, nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("reason", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_leak_case_event_case_id", "leak_case_event", ["case_id"])


def downgrade() -> None:
    op.drop_table("leak_case_event")
    op.drop_table("leak_case")
