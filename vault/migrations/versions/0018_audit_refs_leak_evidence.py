"""audit archive index, actor/time index, leak evidence

Revision ID: 0018
Revises: 0017

``audit_archive_ref``: one row per (archive number, entry) for every archive an
audit entry names, backfilled here from the entries' JSON once; from now on the
appender writes it in the entry's transaction. It is append-only like the log.
``ix_audit_entry_actor_time``: an account's entries in a window in one range
scan. ``leak_evidence``: audit entries frozen into a leak case with their proofs.
The entries and their hash chain are untouched.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_BATCH = 5000


def _backfill(bind: sa.Connection) -> None:
    entries = sa.table("audit_entry", sa.column("seq"), sa.column("archives"))
    refs = sa.table("audit_archive_ref", sa.column("archive_no"), sa.column("seq"))
    last = 0
    while True:
        rows = bind.execute(
            sa.select(entries.c.seq, entries.c.archives)
            .where(entries.c.seq > last)
            .order_by(entries.c.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        batch = []
        for seq, text in rows:
            try:
                numbers = json.loads(text)
            except (TypeError, ValueError):
                numbers = []  # a damaged entry: `audit verify` names it; nothing to index
            if isinstance(numbers, list):
                for no in dict.fromkeys(n for n in numbers if isinstance(n, str)):
                    batch.append({"archive_no": no[:200], "seq": int(seq)})
        if batch:
            bind.execute(refs.insert(), batch)
        last = int(rows[-1][0])


def upgrade() -> None:
    op.create_table(
        "audit_archive_ref",
        sa.Column("archive_no", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    )
    op.create_index("ix_audit_entry_actor_time", "audit_entry", ["actor", "time"])
    bind = op.get_bind()
    _backfill(bind)
    from audit.guards import install_guards_on

    install_guards_on(bind)
    op.create_table(
        "leak_evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("leak_case.id"), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("archives", sa.JSON(), nullable=False),
        sa.Column("since", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("until", vault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("proofs", sa.JSON(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", vault.models.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_leak_evidence_uid", "leak_evidence", ["uid"], unique=True)
    op.create_index("ix_leak_evidence_case_id", "leak_evidence", ["case_id"])


def downgrade() -> None:
    op.drop_table("leak_evidence")
    op.drop_index("ix_audit_entry_actor_time", table_name="audit_entry")
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for action in ("update", "delete"):
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS audit_archive_ref_no_{action}")
    op.drop_table("audit_archive_ref")
