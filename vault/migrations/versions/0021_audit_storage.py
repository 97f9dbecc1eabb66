"""audit storage: seq is SQLite's rowid, the archive index has no rowid, one actor index

Revision ID: 0021
Revises: 0020

Less stored per audit entry, and nothing the entries say changes:

* ``ix_audit_entry_actor`` is dropped on both databases: every query on the
  actor alone is served by ``ix_audit_entry_actor_time``, of which the actor
  is the prefix (and SQLite's planner already chose the composite).
* SQLite: ``audit_entry`` is rebuilt with ``seq INTEGER`` so its primary key
  is the rowid. The separate index SQLite kept on ``seq`` goes, and the rows
  lie in seq order in the table itself.
* SQLite: ``audit_archive_ref`` is rebuilt ``WITHOUT ROWID``: one B-tree
  keyed by (archive number, seq) instead of a table and an index of the same
  two columns.

The rebuilt tables get their append-only guards back in this same
transaction. The renames run with SQLite's legacy ALTER TABLE behaviour, so a
trigger of another table that names ``audit_entry`` (which does not exist for
the moment between the copy and the rename) is left as written instead of
failing the rename; it names the rebuilt table afterwards. A SQLite log
holding a seq that is not an integer (possible only by editing the file) is
refused: copying it into a rowid would renumber it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def _not_integer_seqs(bind: sa.Connection) -> int:
    return int(
        bind.exec_driver_sql(
            "SELECT count(*) FROM audit_entry WHERE typeof(seq) != 'integer'"
        ).scalar_one()
    )


def _rebuild_refs(bind: sa.Connection, *, with_rowid: bool) -> None:
    """``audit_archive_ref`` recreated with or without a rowid, its rows copied in key order."""
    op.create_table(
        "_audit_archive_ref_new",
        sa.Column("archive_no", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sqlite_with_rowid=with_rowid,
    )
    bind.exec_driver_sql(
        "INSERT INTO _audit_archive_ref_new (archive_no, seq) "
        "SELECT archive_no, seq FROM audit_archive_ref ORDER BY archive_no, seq"
    )
    op.drop_table("audit_archive_ref")  # its triggers go with it; reinstalled below
    op.rename_table("_audit_archive_ref_new", "audit_archive_ref")


def _retype_seq(seq_type: sa.types.TypeEngine[int], old: sa.types.TypeEngine[int]) -> None:
    with op.batch_alter_table("audit_entry", recreate="always") as batch_op:
        batch_op.alter_column(
            "seq",
            existing_type=old,
            type_=seq_type,
            existing_nullable=False,
            autoincrement=False,
        )


def _rebuild_sqlite(bind: sa.Connection, *, rowid_seq: bool) -> None:
    from audit.guards import install_guards_on

    bind.exec_driver_sql("PRAGMA legacy_alter_table=ON")
    try:
        if rowid_seq:
            _retype_seq(sa.Integer(), sa.BigInteger())
        else:
            _retype_seq(sa.BigInteger(), sa.Integer())
        _rebuild_refs(bind, with_rowid=not rowid_seq)
    finally:
        bind.exec_driver_sql("PRAGMA legacy_alter_table=OFF")
    install_guards_on(bind)


def upgrade() -> None:
    bind = op.get_bind()
    op.drop_index("ix_audit_entry_actor", table_name="audit_entry")
    if bind.dialect.name != "sqlite":
        return
    bad = _not_integer_seqs(bind)
    if bad:
        raise RuntimeError(
            f"{bad} audit entries carry a seq that is not an integer: the log was edited "
            "outside the vault. Run `archive-vault audit verify` and restore the log "
            "before upgrading."
        )
    _rebuild_sqlite(bind, rowid_seq=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite(bind, rowid_seq=False)
    op.create_index("ix_audit_entry_actor", "audit_entry", ["actor"])
