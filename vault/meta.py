"""An archive's clear metadata: the one description of an archive that lists show
and decisions look at. It never holds content."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from vault.models import Archive, Classification


@dataclass(frozen=True, slots=True)
class ArchiveMeta:
    """What the customer list (客户一览表) shows and what a decision is about.

    The first three fields are all a decision needs to be asked about an archive
    that has not been stored yet (the policy tests build such ones); everything
    read from the database fills every field.
    """

    archive_no: str
    classification: str
    owner: str
    custodian: str | None = None
    department: str = ""
    contacts: tuple[str, ...] = ()
    status: str = "active"
    category: str = ""
    grade: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    retention_until: date | None = None
    destroyed_at: datetime | None = None
    # The masked view of the customer's name (王**), filled by the customer list and
    # the search only (``vault.masked_names``); never the name, never a decision's input.
    masked_name: str | None = None

    @classmethod
    def of(
        cls, archive: Archive, contacts: Iterable[str] = (), masked_name: str | None = None
    ) -> ArchiveMeta:
        return cls(
            archive_no=archive.archive_no,
            classification=archive.classification,
            owner=archive.owner,
            custodian=archive.custodian,
            department=archive.department,
            contacts=tuple(sorted(contacts)),
            status=archive.status,
            category=archive.category,
            grade=archive.grade,
            created_at=archive.created_at,
            updated_at=archive.updated_at,
            retention_until=archive.retention_until,
            destroyed_at=archive.destroyed_at,
            masked_name=masked_name,
        )

    @property
    def marking(self) -> str:
        return Classification(self.classification).marking

    def public(self) -> dict[str, Any]:
        return {
            "archive_no": self.archive_no,
            "category": self.category,
            "grade": self.grade,
            "classification": self.classification,
            "remarks": self.marking,
            "owner": self.owner,
            "contacts": list(self.contacts),
            "custodian": self.custodian,
            "department": self.department,
            "status": self.status,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "retention_until": _iso(self.retention_until),
            "destroyed_at": _iso(self.destroyed_at),
            "masked_name": self.masked_name,
        }


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None
