"""archive: sealed manifest of field groups; upload_quota: bytes per user per day

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 10:00:00.000000

The manifest column starts empty: sealing needs the archives' keys, which a
migration never sees. ``archive-vault upgrade`` seals the missing manifests
with the key file right after migrating (``vault.manifest.seal_missing``);
until then reads of those archives fail closed.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("archive", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manifest", sa.LargeBinary(), nullable=True))
    op.create_table(
        "upload_quota",
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("username", "day"),
    )


def downgrade() -> None:
    op.drop_table("upload_quota")
    with op.batch_alter_table("archive", schema=None) as batch_op:
        batch_op.drop_column("manifest")
