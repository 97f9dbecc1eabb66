"""detection: decoy marks, case keys, per-hour tallies

Revision ID: 0017
Revises: 0016

``decoy_archive``: archives the information supervisor set up as decoys (the
only place that says so) with the last time the handlers were told of a touch.
``detection_key``: one row per rule, account and window, inserted before its
case, so the same alert never raises two. ``detection_touch``: which archives
an account read or exported in each clock hour (identifiers and flags only).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _s(name: str, length: int, **kw: object) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), **kw)


def _ts(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, vault.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "decoy_archive",
        _s("archive_no", 32, primary_key=True),
        _s("marked_by", 64, nullable=False),
        _ts("marked_at", False),
        sa.Column("rev", sa.Integer(), nullable=False),
        _ts("notified_at", True),
    )
    op.create_index("ix_decoy_archive_rev", "decoy_archive", ["rev"])
    op.create_table(
        "detection_key",
        _s("key", 200, primary_key=True),
        _s("case_uid", 32, nullable=False),
        _ts("created_at", False),
    )
    op.create_table(
        "detection_touch",
        _s("account", 64, primary_key=True),
        _s("hour", 13, primary_key=True),
        _s("archive_no", 32, primary_key=True),
        _s("day", 10, nullable=False),
        sa.Column("secret", sa.Boolean(), nullable=False),
        sa.Column("off_hours", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_detection_touch_day", "detection_touch", ["day"])


def downgrade() -> None:
    op.drop_table("detection_touch")
    op.drop_table("detection_key")
    op.drop_table("decoy_archive")
