"""Table models. Metadata is clear text and indexed; content is only ever ciphertext.

Nothing here holds a plaintext profile value: columns that carry customer
content are ``bytes`` sealed by ``vault.crypto`` and named ``*_ct``/``ciphertext``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Column, Field, SQLModel

from foundation.clock import utcnow


class Classification(StrEnum):
    INTERNAL = "internal"
    SECRET = "secret"  # noqa: S105 - a classification level, not a password
    TOP_SECRET = "top_secret"  # noqa: S105

    @property
    def marking(self) -> str:
        """The marking carried in the index's remarks column (Art 22)."""
        return {"internal": "", "secret": "机密", "top_secret": "绝密"}[self.value]

    @property
    def rank(self) -> int:
        """Higher is more restricted: the one ordering of levels (declaration order)."""
        return list(Classification).index(self)

    @classmethod
    def rank_of(cls, level: str, unknown: int = 99) -> int:
        """The rank of a level given as text; ``unknown`` for anything that is not one."""
        try:
            return cls(level).rank
        except ValueError:
            return unknown


class Category(StrEnum):
    GENERAL = "general"
    SPECIAL = "special"


class Grade(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"


class ArchiveStatus(StrEnum):
    ACTIVE = "active"
    DESTROYED = "destroyed"


class Channel(StrEnum):
    """How an interaction happened (篇七: letters, faxes, calls, visits, revisits)."""

    LETTER = "letter"
    FAX = "fax"
    CALL = "call"
    VISIT = "visit"
    REVISIT = "revisit"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused; pass an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class VaultMeta(SQLModel, table=True):
    __tablename__ = "vault_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=512)


class User(SQLModel, table=True):
    """A person who uses the vault; roles come from ``user_role`` (policies read both)."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True, max_length=64)
    display_name: str = Field(default="", max_length=128)
    department: str = Field(default="", index=True, max_length=64)
    clearance: str = Field(default=Classification.INTERNAL.value, max_length=16)
    external: bool = False
    # Introduction letter or work-ID number of an external visitor (Art 18.4).
    credential_ref: str | None = Field(default=None, max_length=128)
    # Where notifications are mailed (set by administrators; none means in-app only).
    email: str | None = Field(default=None, max_length=254)
    password_hash: str | None = Field(default=None, max_length=256)
    disabled: bool = False
    # Login throttling (api.security): consecutive failures and the lock's end.
    failed_logins: int = 0
    locked_until: datetime | None = _ts(nullable=True)
    # Tokens issued before this instant are refused (set on password change).
    tokens_valid_after: datetime | None = _ts(nullable=True)
    # Carried in every token ("gen"); bumped on a password change, reset or
    # disabling, which revokes every earlier token whatever the clocks say.
    token_generation: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Set for good the moment the account is given ``admin``: such an account never
    # gets a role that reads content, even after its admin role is removed.
    ever_admin: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = _ts(nullable=False, default=utcnow)


class UserRole(SQLModel, table=True):
    __tablename__ = "user_role"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    role: str = Field(primary_key=True, max_length=32)


class Archive(SQLModel, table=True):
    """One customer archive (客户档案): clear metadata plus the wrapped data key."""

    __tablename__ = "archive"
    __table_args__ = (sa.Index("ix_archive_kek", "classification", "kek_version"),)

    id: int | None = Field(default=None, primary_key=True)
    archive_no: str = Field(index=True, unique=True, max_length=32)
    category: str = Field(index=True, max_length=16)
    grade: str = Field(index=True, max_length=1)
    classification: str = Field(index=True, max_length=16)
    owner: str = Field(index=True, max_length=64)
    custodian: str | None = Field(default=None, max_length=64)
    department: str = Field(default="", index=True, max_length=64)
    status: str = Field(default=ArchiveStatus.ACTIVE.value, index=True, max_length=16)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    updated_at: datetime = _ts(nullable=False, default=utcnow)
    retention_until: date = Field(index=True)
    destroyed_at: datetime | None = _ts(nullable=True)

    # Envelope: the archive's DEK sealed under the level's KEK (erased on destroy).
    kek_version: int = Field(default=1)
    dek_version: int = Field(default=1)
    wrapped_dek: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))
    # Sealed under the DEK: every field group's revision and digest (vault.manifest).
    manifest: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))
    # The customer list's masked name (王**), sealed under the vault's customer-list
    # key and bound to the archive number (vault.masked_names); erased on destroy.
    masked_name_ct: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))

    # Consent (PIPL Art 14, 29): what the customer agreed to, when and how.
    consent_notice: str = Field(default="", max_length=64)
    consent_at: datetime | None = _ts(nullable=True)
    consent_channel: str = Field(default="", max_length=32)
    consent_groups: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON))
    consent_sensitive_groups: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON))


class ArchiveContact(SQLModel, table=True):
    """Extra company contacts of an important customer (篇七: two or more contacts)."""

    __tablename__ = "archive_contact"

    archive_id: int = Field(foreign_key="archive.id", primary_key=True)
    username: str = Field(primary_key=True, index=True, max_length=64)


class SealedGroup(SQLModel, table=True):
    """One field group of one archive, sealed under the archive's DEK."""

    __tablename__ = "archive_content"

    archive_id: int = Field(foreign_key="archive.id", primary_key=True)
    group_name: str = Field(primary_key=True, max_length=32)
    revision: int = 1
    ciphertext: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))
    updated_at: datetime = _ts(nullable=False, default=utcnow)


class ContentHistory(SQLModel, table=True):
    """Superseded revisions of a group, still sealed (kept until consent is withdrawn)."""

    __tablename__ = "content_history"
    __table_args__ = (sa.Index("ix_history_archive_group", "archive_id", "group_name"),)

    id: int | None = Field(default=None, primary_key=True)
    archive_id: int = Field(foreign_key="archive.id")
    group_name: str = Field(max_length=32)
    revision: int
    ciphertext: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))
    superseded_at: datetime = _ts(nullable=False, default=utcnow)


class BlindIndex(SQLModel, table=True):
    """Truncated HMAC of a normalised value: many archives share a bucket by design."""

    __tablename__ = "blind_index"
    __table_args__ = (sa.Index("ix_blind_lookup", "field", "value"),)

    archive_id: int = Field(foreign_key="archive.id", primary_key=True)
    field: str = Field(primary_key=True, max_length=32)
    value: int


class Interaction(SQLModel, table=True):
    """A letter, fax, call, visit or revisit filed in the archive; its text is sealed."""

    __tablename__ = "interaction"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, max_length=32)
    archive_id: int = Field(foreign_key="archive.id", index=True)
    occurred_on: date
    channel: str = Field(max_length=16)
    author: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    ciphertext: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))


class Attachment(SQLModel, table=True):
    """A scan or contract; its name and type are sealed, its bytes sealed in chunks."""

    __tablename__ = "attachment"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, max_length=32)
    archive_id: int = Field(foreign_key="archive.id", index=True)
    author: str = Field(max_length=64)
    size: int = 0
    chunk_count: int = 0
    complete: bool = False
    created_at: datetime = _ts(nullable=False, default=utcnow)
    meta_ct: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary))


class AttachmentChunk(SQLModel, table=True):
    __tablename__ = "attachment_chunk"

    attachment_id: int = Field(foreign_key="attachment.id", primary_key=True)
    seq: int = Field(primary_key=True)
    ciphertext: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))


class UploadQuota(SQLModel, table=True):
    """Bytes of attachments one user uploaded on one (UTC) day, counted atomically."""

    __tablename__ = "upload_quota"

    username: str = Field(primary_key=True, max_length=64)
    day: date = Field(primary_key=True)
    used: int = Field(default=0, sa_column=Column(sa.BigInteger, nullable=False))


class ArchiveCounter(SQLModel, table=True):
    """Next archive number per year, bumped inside the creating transaction."""

    __tablename__ = "archive_counter"

    year: int = Field(primary_key=True)
    last: int = 0


class RotationState(SQLModel, table=True):
    """Per-level rotation in progress: target version, so a rerun resumes, not restarts."""

    __tablename__ = "rotation_state"

    classification: str = Field(primary_key=True, max_length=16)
    target_version: int
    started_at: datetime = _ts(nullable=False, default=utcnow)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a table model, for Core statements and bulk inserts.

    SQLModel sets ``__table__`` on table models at class creation but does not
    declare it, so the type checker cannot see it; this is the one place that says so.
    """
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    return table
