"""The audit tables: entries (append-only, hash-chained) and signed checkpoints.

Every column of ``audit_entry`` except ``entry_hash`` and ``mac`` is part of the
entry's canonical bytes (``audit.merkle``), so editing any of them is
detectable; ``mac`` (``audit.mac``) makes a re-hashed edit detectable too, by
whoever holds the key file.
Columns hold identifiers, codes and counts only: never customer content.

Design choices that serve verification speed and exactness:

* ``time`` is stored as microseconds since the epoch and ``action`` and
  ``outcome`` as small fixed codes (``audit.stored``), not as their text: the
  types give back exactly the canonical text that was hashed, and integer
  order is time order for range queries. Three of the most repeated values
  of the log then cost 10 bytes instead of about 45, in the row and in each
  index that holds them.
* ``archives``, ``groups`` and ``detail`` are stored as their canonical JSON
  text; ``seq`` is the primary key, so a forked or gapped append fails on the
  key as a last line of defence behind the append lock.
* hashes are raw 32-byte values (BLOB / bytea): half the size of hex.
* on SQLite ``seq`` is declared ``INTEGER`` so it *is* the table's rowid: the
  entries are stored in seq order in the table's own B-tree, with no second
  index on seq, and a verifier's read of a seq range is a plain table scan.

What each index costs and serves (bytes per entry of the audit benchmark,
SQLite, ``bench/audit.py``): ``ix_audit_entry_actor_time`` (an account's
entries in a window: leak evidence, the trail's actor filter, whose equality on
the actor alone is its prefix), ``ix_audit_entry_time`` (a window for every
account) and ``ix_audit_entry_action`` (the newest verification, the action
filter). No single-column actor index: the planner already preferred the
composite for every query on the actor.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from audit.stored import AuditCode, AuditTime

ENTRY_TABLE = "audit_entry"
CHECKPOINT_TABLE = "audit_checkpoint"
ARCHIVE_REF_TABLE = "audit_archive_ref"
QUEUE_TABLE = "audit_queue"
# Append-only in every way; the queue (below) is guarded apart: rows leave it.
AUDIT_TABLES = (ENTRY_TABLE, CHECKPOINT_TABLE, ARCHIVE_REF_TABLE)
# BIGINT everywhere, but exactly INTEGER on SQLite: only that makes a primary key the rowid.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class AuditEntry(SQLModel, table=True):
    __tablename__ = ENTRY_TABLE
    # "What did this account do in this window?" (leak evidence) without reading
    # every entry of the account: one range scan.
    __table_args__ = (sa.Index("ix_audit_entry_actor_time", "actor", "time"),)

    seq: int = Field(sa_column=Column(_SEQ, primary_key=True, autoincrement=False))
    time: str = Field(sa_column=Column(AuditTime(), nullable=False, index=True))
    actor: str = Field(sa_column=Column(sa.String(200), nullable=False))
    actor_role: str = Field(sa_column=Column(sa.String(100), nullable=False))
    action: str = Field(sa_column=Column(AuditCode("action"), nullable=False, index=True))
    outcome: str = Field(sa_column=Column(AuditCode("outcome"), nullable=False))
    archives: str = Field(sa_column=Column(sa.Text, nullable=False))
    groups: str = Field(sa_column=Column(sa.Text, nullable=False))
    grant_id: str | None = Field(default=None, sa_column=Column(sa.String(200), nullable=True))
    purpose: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    client: str | None = Field(default=None, sa_column=Column(sa.String(200), nullable=True))
    detail: str = Field(sa_column=Column(sa.Text, nullable=False))
    prev_hash: bytes = Field(sa_column=Column(sa.LargeBinary(32), nullable=False))
    entry_hash: bytes = Field(sa_column=Column(sa.LargeBinary(32), nullable=False))
    # HMAC-SHA256 under the key file's audit MAC key; NULL only for entries
    # written before the vault had that key (see audit.mac).
    mac: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary(32), nullable=True))


class AuditCheckpoint(SQLModel, table=True):
    """A signed tree head. ``note`` is the authority; the other columns are conveniences.

    ``frontier`` (the compact range at ``tree_size``, hex hashes as JSON) lets
    the next checkpoint extend the tree without re-reading the whole log. It is
    never trusted: it is checked against the signed root before use.

    Rows are keyed by the SHA-256 of their note, not by ``tree_size``: anyone
    who may INSERT can add rows, and a row keyed by size could occupy the place
    of a checkpoint the vault has not signed yet. Only the signer can produce a
    note, so no row inserted beforehand can collide with a real one. Several
    rows may therefore claim one size; readers verify each note and skip (and
    report) the ones that are not this log's.
    """

    __tablename__ = CHECKPOINT_TABLE

    note_hash: bytes = Field(sa_column=Column(sa.LargeBinary(32), primary_key=True))
    tree_size: int = Field(sa_column=Column(sa.BigInteger, nullable=False, index=True))
    root_hash: bytes = Field(sa_column=Column(sa.LargeBinary(32), nullable=False))
    signed_at: str = Field(sa_column=Column(sa.String(27), nullable=False))
    note: str = Field(sa_column=Column(sa.Text, nullable=False))
    frontier: str = Field(sa_column=Column(sa.Text, nullable=False))


class AuditArchiveRef(SQLModel, table=True):
    """Which entries name which archive: an index beside the log, never part of it.

    Written by the appender in the entry's own transaction, one row per distinct
    archive number the entry lists, so "every entry about KH-…" is a key lookup
    instead of a scan of every entry's JSON text. Not hashed and not signed: a
    query that matters (leak evidence) is re-checked against the entries
    themselves, which are. Append-only like the log (``audit.guards``).

    On SQLite the table is ``WITHOUT ROWID``: its primary key is its only
    B-tree, instead of a rowid table plus an index holding the same two columns.
    """

    __tablename__ = ARCHIVE_REF_TABLE
    __table_args__ = {"sqlite_with_rowid": False}

    archive_no: str = Field(sa_column=Column(sa.String(200), primary_key=True))
    seq: int = Field(sa_column=Column(sa.BigInteger, primary_key=True, autoincrement=False))


class AuditQueued(SQLModel, table=True):
    """An entry durable at its transaction's commit, waiting for its place in the chain.

    On PostgreSQL a request's transaction inserts its entry here, with no seq and
    no lock, so concurrent requests commit (and fsync) side by side; the
    sequencer (``audit.queue``) later gives entries their seq, hashes and chain
    MAC in ``audit_entry`` and removes them from here in the same transaction.
    ``id`` orders the queue; ``mac`` binds every column under the key file's
    audit MAC key, so a row written or edited without the key file is never
    integrated. The columns are those of ``audit_entry`` that an event sets.
    """

    __tablename__ = QUEUE_TABLE
    # One entry per account and microsecond while it waits: two honest entries equal in
    # every column would be one entry and its replayed copy to the sequencer, so the
    # append stamps the second a microsecond later (``audit.queue.enqueue``).
    __table_args__ = (sa.Index("ux_audit_queue_actor_time", "actor", "time", unique=True),)

    # An INTEGER key on SQLite: its rowid, numbered there too (tests queue entries on both).
    id: int = Field(
        sa_column=Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
        )
    )
    time: str = Field(sa_column=Column(AuditTime(), nullable=False))
    actor: str = Field(sa_column=Column(sa.String(200), nullable=False))
    actor_role: str = Field(sa_column=Column(sa.String(100), nullable=False))
    action: str = Field(sa_column=Column(AuditCode("action"), nullable=False))
    outcome: str = Field(sa_column=Column(AuditCode("outcome"), nullable=False))
    archives: str = Field(sa_column=Column(sa.Text, nullable=False))
    groups: str = Field(sa_column=Column(sa.Text, nullable=False))
    grant_id: str | None = Field(default=None, sa_column=Column(sa.String(200), nullable=True))
    purpose: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    client: str | None = Field(default=None, sa_column=Column(sa.String(200), nullable=True))
    detail: str = Field(sa_column=Column(sa.Text, nullable=False))
    mac: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary(32), nullable=True))


entry_table: sa.Table = AuditEntry.__table__  # type: ignore[attr-defined]
checkpoint_table: sa.Table = AuditCheckpoint.__table__  # type: ignore[attr-defined]
archive_ref_table: sa.Table = AuditArchiveRef.__table__  # type: ignore[attr-defined]
queue_table: sa.Table = AuditQueued.__table__  # type: ignore[attr-defined]
