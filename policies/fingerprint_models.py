"""The register of export fingerprints: one row per file that left the vault.

What attribution needs to recompute an export's marks and to name who is
behind it: the export's id (the key of its marks), the archive numbers and
field groups it held, its decoy rows' numbers, and the request, grant and copy
it was made under. Identifiers only, never a value; the export's audit entry
carries the same id (``detail.fingerprint``). Rows are never changed or deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

from vault.models import UTCDateTime


def _json() -> Any:
    return Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))


class ExportFingerprint(SQLModel, table=True):
    """One export's fingerprint: what it held and under which request."""

    __tablename__ = "export_fingerprint"

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(index=True, unique=True, max_length=32)
    request_uid: str = Field(index=True, max_length=32)
    grant_uid: str = Field(max_length=32)
    kind: str = Field(max_length=16)  # copy | external
    exported_by: str = Field(index=True, max_length=64)
    copy_no: int = 1
    format: str = Field(max_length=8)
    archives: list[str] = _json()
    groups: list[str] = _json()
    decoys: list[str] = _json()
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
