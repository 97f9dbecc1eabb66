"""archive: the customer list's masked name, sealed

Revision ID: 0019
Revises: 0018

``masked_name_ct`` holds the masked view of the customer's name (王**) sealed
under a vault-wide customer-list key, so the customer list can show it without
opening any archive's content. It starts empty: sealing needs the key file,
which a migration never sees; ``archive-vault upgrade`` fills it right after
migrating (``vault.masked_names.backfill``), and until then lists show none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("archive", schema=None) as batch_op:
        batch_op.add_column(sa.Column("masked_name_ct", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("archive", schema=None) as batch_op:
        batch_op.drop_column("masked_name_ct")
