"""Turning an incoming archive (API body, import line) into a validated record.

Validation is pure (no database, no keys) so the importer can check a whole
file before writing anything, and it collects every problem in a row at once so
a user fixes a file in one pass. Messages name fields, never values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, cast
from zoneinfo import ZoneInfo

from vault.errors import ConsentMissing, ValidationFailed
from vault.formats import InvalidValue, check_text
from vault.models import Category, Classification, Grade
from vault.schema import ProfileSchema

BEIJING = ZoneInfo("Asia/Shanghai")
ARCHIVE_NO = re.compile(r"KH-([0-9]{4})-([0-9]{6})")
USERNAME = re.compile(r"[a-z0-9][a-z0-9_.\-]{1,63}")
DEPARTMENT_MAX = 64
METADATA_KEYS = frozenset(
    {
        "archive_no",
        "category",
        "grade",
        "classification",
        "owner",
        "custodian",
        "department",
        "retention_until",
        "contacts",
        "profile",
        "consent",
    }
)
CONSENT_KEYS = frozenset({"notice", "at", "channel", "groups", "sensitive_groups"})
# Pseudo-groups for records filed in the archive; a schema may not reuse these names.
INTERACTIONS = "interactions"
ATTACHMENTS = "attachments"


@dataclass(frozen=True, slots=True)
class Consent:
    """What the customer agreed to (PIPL Art 14), with separate consent for sensitive groups."""

    notice: str = ""
    at: datetime | None = None
    channel: str = ""
    groups: tuple[str, ...] = ()
    sensitive_groups: tuple[str, ...] = ()

    def public(self) -> dict[str, Any]:
        return {
            "notice": self.notice,
            "at": self.at.isoformat() if self.at else None,
            "channel": self.channel,
            "groups": list(self.groups),
            "sensitive_groups": list(self.sensitive_groups),
        }


@dataclass(slots=True)
class NewArchive:
    """A validated archive ready to be sealed and inserted."""

    category: str
    grade: str
    classification: str
    owner: str
    department: str
    retention_until: date
    custodian: str | None = None
    archive_no: str | None = None
    contacts: tuple[str, ...] = ()
    consent: Consent = field(default_factory=Consent)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    # ``vault.rows.encode`` of each non-empty group, when computed ahead (an import's
    # worker process does it beside validation); None: filing encodes ``groups``.
    encoded: dict[str, bytes] | None = None
    # True when ``archive_no`` was given by the import that numbered the row (the next
    # numbers of the year's counter, in file order), not read from the row itself.
    numbered: bool = False
    # The archive's new DEK, its groups sealed under it and its sealed manifest, when
    # an import's worker process sealed them beside validation (``vault.envelope
    # .seal_new``); None: filing draws the DEK and seals. A record sealed so keeps in
    # ``groups`` only the fields filing still reads in clear: the searchable ones (blind
    # indexes) and the name (the customer list's masked name).
    sealed: NewSeal | None = None


@dataclass(frozen=True, slots=True)
class NewSeal:
    """A new archive sealed ahead of its insert: the raw DEK (wrapped by the filer, which
    alone holds the KEKs), each non-empty group's ciphertext and the sealed manifest."""

    dek: bytes
    groups: dict[str, bytes]
    manifest: bytes


# (Session, record) -> None, or raises: a rule from above ``vault`` (who may be named on
# a new archive) that creating or importing runs inside its own transaction.
RecordCheck = Callable[[Any, NewArchive], None]


def plain_text(value: Any, what: str, limit: int = 2000) -> str:
    """One line of free text that may be written to the audit log.

    Line breaks and tabs become one space; any other control character or a
    bidirectional override is refused (``vault.formats.check_text``).
    """
    if not isinstance(value, str):
        raise ValidationFailed(f"{what} must be text")
    text: str = _checked(re.sub(r"[\r\n\t]+", " ", value), what, multiline=False).strip()
    if len(text) > limit:
        raise ValidationFailed(f"{what} is longer than {limit} characters")
    return text


def free_text(value: Any, what: str, limit: int) -> str:
    """Several lines of free text (an interaction record): tab and newline allowed."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{what} must be text")
    if len(value) > limit:
        raise ValidationFailed(f"{what} is longer than {limit} characters")
    return _checked(value, what, multiline=True).strip()


def _checked(value: str, what: str, *, multiline: bool) -> str:
    try:
        return check_text(value, multiline=multiline)
    except InvalidValue as exc:
        raise ValidationFailed(f"{what} {exc}") from None


def parse_username(value: Any, what: str) -> str:
    if not isinstance(value, str) or not USERNAME.fullmatch(value):
        raise ValidationFailed(
            f"{what} must be a username (2–64 of a-z, 0-9, '.', '_', '-', starting alphanumeric)"
        )
    return value


@functools.cache
def _values(enum: type[Enum]) -> tuple[str, ...]:
    return tuple(e.value for e in enum)


def _choice(value: Any, enum: type[Enum], what: str) -> str:
    allowed = _values(enum)
    if value not in allowed:
        raise ValidationFailed(f"{what} must be one of {', '.join(allowed)}")
    return str(value)


def _as_list(value: Any, what: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[\s,;|]+", value) if v]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValidationFailed(f"{what} must be a list of names")


def parse_datetime(value: Any, what: str, *, now: datetime) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationFailed(f"{what} must be an ISO 8601 time") from None
    else:
        raise ValidationFailed(f"{what} must be an ISO 8601 time")
    if parsed.tzinfo is None:
        # Times typed without a zone are Beijing time, the users' local time.
        parsed = parsed.replace(tzinfo=BEIJING)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01 in UTC+8 has no UTC form
        raise ValidationFailed(f"{what} is outside the calendar once taken to UTC") from None
    if parsed > now:
        raise ValidationFailed(f"{what} is in the future")
    return parsed


def parse_consent(raw: Any, schema: ProfileSchema, *, now: datetime) -> Consent:
    if raw is None or raw == {}:
        return Consent()
    if not isinstance(raw, Mapping):
        raise ValidationFailed("consent must be an object with notice, at, channel, groups")
    unknown = sorted(set(raw) - CONSENT_KEYS)
    if unknown:
        raise ValidationFailed(f"unknown consent key(s): {', '.join(map(str, unknown))}")
    notice, channel = raw.get("notice"), raw.get("channel")
    if not isinstance(notice, str) or not notice.strip() or len(notice) > 64:
        raise ValidationFailed("consent.notice must name the notice version (1–64 characters)")
    if not isinstance(channel, str) or not channel.strip() or len(channel) > 32:
        raise ValidationFailed("consent.channel must say how consent was given (1–32 characters)")
    notice = plain_text(notice, "consent.notice", 64)
    channel = plain_text(channel, "consent.channel", 32)
    if raw.get("at") in (None, ""):
        raise ValidationFailed("consent.at must give the time consent was given")
    at = parse_datetime(raw.get("at"), "consent.at", now=now)
    groups = schema.check_groups(_as_list(raw.get("groups"), "consent.groups"), "consent.groups")
    sensitive = schema.check_groups(
        _as_list(raw.get("sensitive_groups"), "consent.sensitive_groups"),
        "consent.sensitive_groups",
    )
    outside = sorted(set(sensitive) - set(groups))
    if outside:
        raise ValidationFailed(
            "consent.sensitive_groups must also be in consent.groups: " + ", ".join(outside)
        )
    return Consent(notice.strip(), at, channel.strip(), tuple(groups), tuple(sensitive))


def check_consent(groups: Any, consent: Consent, schema: ProfileSchema) -> None:
    """PIPL Art 14/29: content only in groups consented to; sensitive ones separately."""
    missing = sorted(g for g in groups if g not in consent.groups)
    if missing:
        raise _consent_error(
            f"no recorded consent for field group(s) {', '.join(missing)}; "
            "record the customer's consent (consent.groups) before storing them"
        )
    sensitive = sorted(
        g for g in groups if g in schema.sensitive_groups and g not in consent.sensitive_groups
    )
    if sensitive:
        raise _consent_error(
            f"field group(s) {', '.join(sensitive)} hold sensitive personal information "
            "(PIPL Art 28) and need separate consent (consent.sensitive_groups)"
        )


def _consent_error(message: str) -> ValidationFailed:
    return ConsentMissing(message)


def parse_archive(
    data: Any,
    schema: ProfileSchema,
    *,
    now: datetime,
    field_limit: int,
    retention_years: int,
    default_owner: str | None = None,
) -> NewArchive:
    """Validate one archive; raises ValidationFailed listing every problem found."""
    if not isinstance(data, Mapping):
        raise ValidationFailed("an archive must be a JSON object")
    problems: list[str] = []

    def attempt(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationFailed as exc:
            problems.extend(exc.problems)
            return None

    unknown = sorted(str(k) for k in data if k not in METADATA_KEYS)
    if unknown:
        problems.append(
            f'unknown key(s): {", ".join(unknown)} (profile fields go inside "profile")'
        )
    category = attempt(_choice, data.get("category", Category.GENERAL.value), Category, "category")
    grade = attempt(_choice, data.get("grade", Grade.C.value), Grade, "grade")
    classification = attempt(
        _choice,
        data.get("classification", Classification.INTERNAL.value),
        Classification,
        "classification",
    )
    owner_raw = data.get("owner") or default_owner
    owner = attempt(parse_username, owner_raw, "owner") if owner_raw else None
    if not owner_raw:
        problems.append("owner is missing (give an owner column or --owner)")
    custodian = None
    if data.get("custodian") not in (None, ""):
        custodian = attempt(parse_username, data.get("custodian"), "custodian")
    if classification == Classification.TOP_SECRET and not data.get("custodian"):
        problems.append("a top_secret archive needs a named custodian (Art 22)")
    department = data.get("department", "") or ""
    if not isinstance(department, str) or len(department) > DEPARTMENT_MAX:
        problems.append(f"department must be text of at most {DEPARTMENT_MAX} characters")
        department = ""
    else:
        department = attempt(plain_text, department, "department", DEPARTMENT_MAX) or ""
    retention = now.date().replace(year=now.year + retention_years)
    if data.get("retention_until") not in (None, ""):
        try:
            retention = date.fromisoformat(str(data["retention_until"]).strip())
        except ValueError:
            problems.append("retention_until must be a date (YYYY-MM-DD)")
        else:
            # Filed already past retention, an archive would be due for destruction
            # the day it is created; dates are the users' (Beijing) calendar days.
            if retention < now.astimezone(BEIJING).date():
                problems.append("retention_until is in the past (it must be today or later)")
    archive_no = data.get("archive_no") or None
    if archive_no is not None and (
        not isinstance(archive_no, str) or not ARCHIVE_NO.fullmatch(archive_no)
    ):
        problems.append("archive_no must look like KH-2026-000123")
        archive_no = None
    contacts = attempt(_as_list, data.get("contacts"), "contacts") or []
    for c in contacts:
        attempt(parse_username, c, "contacts")
    consent = attempt(parse_consent, data.get("consent"), schema, now=now) or Consent()
    groups: dict[str, dict[str, str]] = {}
    if data.get("profile") is not None:
        parsed = attempt(
            lambda p: schema.validate_profile(p, limit=field_limit), data.get("profile")
        )
        # Without allow_null, validate_profile leaves empty values out: no None to drop.
        groups = cast(dict[str, dict[str, str]], parsed or {})
    if groups and not problems:
        # Raised on its own (ConsentMissing) so callers can tell it from bad input.
        check_consent(groups, consent, schema)
    if problems:
        raise ValidationFailed("; ".join(problems), problems=problems)
    return NewArchive(
        category=category,
        grade=grade,
        classification=classification,
        owner=str(owner),  # present: a missing owner is one of the problems raised above
        department=department.strip(),
        retention_until=retention,
        custodian=custodian,
        archive_no=archive_no,
        contacts=tuple(dict.fromkeys(contacts)),
        consent=consent,
        groups=groups,
    )
