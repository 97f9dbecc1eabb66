"""export fingerprints

Revision ID: 0014
Revises: 0013

``export_fingerprint``: one row per export (copy or external provision): its
fingerprint id, the archive numbers, groups and decoy numbers it held, and the
request, grant and copy it was made under (identifiers only).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _s(name: str, length: int, **kw: object) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), **kw)


def upgrade() -> None:
    op.create_table(
        "export_fingerprint",
        sa.Column("id", sa.Integer(), primary_key=True),
        _s("uid", 32, nullable=False),
        _s("request_uid", 32, nullable=False),
        _s("grant_uid", 32, nullable=False),
        _s("kind", 16, nullable=False),
        _s("exported_by", 64, nullable=False),
        sa.Column("copy_no", sa.Integer(), nullable=False),
        _s("format", 8, nullable=False),
        sa.Column("archives", sa.JSON(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("decoys", sa.JSON(), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_export_fingerprint_uid", "export_fingerprint", ["uid"], unique=True)
    op.create_index("ix_export_fingerprint_request_uid", "export_fingerprint", ["request_uid"])
    op.create_index("ix_export_fingerprint_exported_by", "export_fingerprint", ["exported_by"])
    op.create_index("ix_export_fingerprint_created_at", "export_fingerprint", ["created_at"])


def downgrade() -> None:
    op.drop_table("export_fingerprint")
