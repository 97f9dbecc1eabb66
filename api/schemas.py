"""Wire shapes, separate from the table models: what the API accepts and returns."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from vault.archives import REPORT_ITEMS
from vault.errors import ValidationFailed
from vault.records import ARCHIVE_NO, USERNAME, plain_text

ArchiveNo = Annotated[str, StringConstraints(pattern=f"^{ARCHIVE_NO.pattern}$")]
Username = Annotated[str, StringConstraints(pattern=f"^{USERNAME.pattern}$")]
GroupName = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
Text = Annotated[str, StringConstraints(max_length=20_000)]


def one_line(value: str) -> str:
    """Free text that travels into the audit log (``vault.records.plain_text``'s rule)."""
    try:
        return plain_text(value, "text", limit=100_000)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None


PlainText = Annotated[str, AfterValidator(one_line)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentIn(Strict):
    notice: Annotated[PlainText, StringConstraints(min_length=1, max_length=64)]
    at: datetime | str
    channel: Annotated[PlainText, StringConstraints(min_length=1, max_length=32)]
    groups: list[GroupName] = Field(default_factory=list, max_length=64)
    sensitive_groups: list[GroupName] = Field(default_factory=list, max_length=64)


class ArchiveCreate(Strict):
    """One line of the import format (README: Import format)."""

    category: Literal["general", "special"] = "general"
    grade: Literal["A", "B", "C", "D"] = "C"
    classification: Literal["internal", "secret", "top_secret"] = "internal"
    owner: Username | None = None
    custodian: Username | None = None
    department: Annotated[PlainText, StringConstraints(max_length=64)] | None = None
    retention_until: date | None = None
    archive_no: ArchiveNo | None = None
    contacts: list[Username] = Field(default_factory=list, max_length=20)
    profile: dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=20_000)] | None,
    ] = Field(default_factory=dict, max_length=200)
    consent: ConsentIn | None = None


class ArchivePatch(Strict):
    """Changed fields (null removes one) and/or a newer consent record."""

    profile: dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=20_000)] | None,
    ] = Field(default_factory=dict, max_length=200)
    consent: ConsentIn | None = None


class ArchivePublic(BaseModel):
    archive_no: str
    category: str
    grade: str
    classification: str
    remarks: str
    owner: str
    contacts: list[str]
    custodian: str | None
    department: str
    status: str
    created_at: str
    updated_at: str
    retention_until: str
    destroyed_at: str | None = None
    # The customer list's masked name (王**: the surname and mask characters only),
    # in list and search answers; null elsewhere and while not yet computed.
    masked_name: str | None = None


class ArchivePage(BaseModel):
    items: list[ArchivePublic]
    total: int
    offset: int
    limit: int


class DecisionPublic(BaseModel):
    basis: str
    why: str
    grant_id: str | None = None
    purpose: str | None = None
    valid_until: str | None = None


class ArchiveContent(BaseModel):
    archive: ArchivePublic
    content: dict[str, dict[str, str]]
    masked_groups: list[str]
    decision: DecisionPublic


class InteractionIn(Strict):
    occurred_on: date
    channel: Literal["letter", "fax", "call", "visit", "revisit"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class Me(BaseModel):
    username: str
    roles: list[str]
    department: str
    clearance: str
    external: bool


def public(meta: Any) -> ArchivePublic:
    return ArchivePublic(**meta.public())


# What a statistical report may count (``vault.archives.REPORT_ITEMS``), as an enum a
# client can offer.
ReportItem = Literal[REPORT_ITEMS]  # type: ignore[valid-type]
