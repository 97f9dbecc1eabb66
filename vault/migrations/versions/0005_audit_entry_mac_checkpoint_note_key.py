"""audit: a MAC per entry; checkpoint rows keyed by their note, not their size

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 10:10:00

``audit_entry.mac`` holds the entry's HMAC under the key file's audit MAC key
(NULL for entries written before the vault had one). ``audit_checkpoint`` is
rebuilt with the SHA-256 of the signed note as its key, so rows inserted by
anyone but the signer can no longer occupy the size of a future checkpoint.
The rebuilt table gets its append-only guards back in this same transaction.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = "tree_size, root_hash, signed_at, note, frontier"


def _note_size(note: str) -> int | None:
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.LargeBinary(length=32), nullable=True))

    old = bind.execute(sa.text(f"SELECT {_COLUMNS} FROM audit_checkpoint")).all()  # noqa: S608
    op.drop_table("audit_checkpoint")
    table = op.create_table(
        "audit_checkpoint",
        sa.Column("note_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signed_at", sa.String(length=27), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("frontier", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("note_hash"),
    )
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_checkpoint_tree_size"), ["tree_size"], unique=False
        )
    # Identical notes under different sizes can only be copies: keep the row
    # whose size column agrees with its note (verification reports the rest).
    rows: dict[bytes, dict[str, object]] = {}
    for tree_size, root_hash, signed_at, note, frontier in sorted(
        old, key=lambda r: _note_size(r[3]) != r[0]
    ):
        key = hashlib.sha256(note.encode("utf-8", "surrogatepass")).digest()
        rows.setdefault(
            key,
            {
                "note_hash": key,
                "tree_size": tree_size,
                "root_hash": root_hash,
                "signed_at": signed_at,
                "note": note,
                "frontier": frontier,
            },
        )
    if rows and table is not None:
        op.bulk_insert(table, list(rows.values()))

    from audit.guards import install_guards_on

    install_guards_on(bind)


def downgrade() -> None:
    bind = op.get_bind()
    old = bind.execute(
        sa.text(f"SELECT {_COLUMNS} FROM audit_checkpoint ORDER BY tree_size")  # noqa: S608
    ).all()
    op.drop_table("audit_checkpoint")
    table = op.create_table(
        "audit_checkpoint",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signed_at", sa.String(length=27), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("frontier", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )
    rows: dict[int, dict[str, object]] = {}
    for tree_size, root_hash, signed_at, note, frontier in old:
        if _note_size(note) == tree_size:
            rows.setdefault(
                tree_size,
                {
                    "tree_size": tree_size,
                    "root_hash": root_hash,
                    "signed_at": signed_at,
                    "note": note,
                    "frontier": frontier,
                },
            )
    if rows and table is not None:
        op.bulk_insert(table, list(rows.values()))
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_column("mac")

    from audit.guards import install_guards_on

    install_guards_on(bind)
