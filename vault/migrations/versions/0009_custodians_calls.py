"""the call list a leaver's handover leaves behind

Revision ID: 0009
Revises: 0008

``handover_call``: one line per archive a handover moved, naming who must tell the
customer (the new owner, 篇七) and, once done, the day, the channel and who marked
it. Archive numbers and usernames only. Archives kept before the custodian rule
(Art 22) are not changed here: ``archive-vault custodians`` lists those that break
it, for an information officer to fix by ``POST /customers/{no}/custodian``.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handover_call",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("archive_no", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("request_uid", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("leaver", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("new_owner", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("department", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.Date(), nullable=True),
        sa.Column("recorded_at", vault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("done_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_uid", "archive_no", name="uq_handover_call"),
    )
    op.create_index("ix_handover_call_archive_no", "handover_call", ["archive_no"])
    op.create_index("ix_handover_call_request_uid", "handover_call", ["request_uid"])
    op.create_index("ix_handover_call_new_owner", "handover_call", ["new_owner"])
    op.create_index("ix_handover_call_department", "handover_call", ["department"])


def downgrade() -> None:
    op.drop_index("ix_handover_call_department", table_name="handover_call")
    op.drop_index("ix_handover_call_new_owner", table_name="handover_call")
    op.drop_index("ix_handover_call_request_uid", table_name="handover_call")
    op.drop_index("ix_handover_call_archive_no", table_name="handover_call")
    op.drop_table("handover_call")
