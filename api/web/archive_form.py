"""The archive form, generated from the profile schema, and the way back from it.

A form is flat text; the API takes one line of the import format
(``api.schemas.ArchiveCreate``/``ArchivePatch``). This module turns the schema
into the form's fields, the submitted form into that shape (validated by the
same pydantic models as the API), and the problems the service reports
(``ValidationFailed.problems``, worded by the vault, never echoing a value)
into messages next to the field they name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from vault.schema import ProfileSchema

META_CHOICES: dict[str, tuple[str, ...]] = {
    "category": ("general", "special"),
    "grade": ("A", "B", "C", "D"),
    "classification": ("internal", "secret", "top_secret"),
}
META_TEXT = ("custodian", "retention_until", "contacts")
CONSENT_TEXT = ("notice", "at", "channel")
CONSENT_LISTS = ("groups", "sensitive_groups")
# Problems name their field in the vault's words; the longest names are tried first.
_FIELD = re.compile(r"field '([a-z_]+)'")
_NAMED = re.compile(r"\bfield (contacts|custodian)\b")
_KEYS = sorted(
    [f"consent.{k}" for k in (*CONSENT_TEXT, *CONSENT_LISTS)] + [*META_CHOICES, *META_TEXT],
    key=len,
    reverse=True,
)


@dataclass
class Filled:
    """What the user typed (kept on an error) and the messages for each field."""

    values: dict[str, str] = field(default_factory=dict)
    chosen: dict[str, set[str]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        key = problem_key(message)
        if key is None:
            self.general.append(message)
        else:
            self.errors.setdefault(key, []).append(message)

    def error(self, key: str) -> str:
        return " ".join(self.errors.get(key, []))


def problem_key(message: str) -> str | None:
    """The form key a problem is about (``p.<field>``, ``consent.groups``, ``grade``…)."""
    found = _FIELD.search(message)
    if found:
        return "p." + found.group(1)
    found = _NAMED.search(message)
    if found:
        return found.group(1)
    if "consent.sensitive_groups" in message:
        return "consent.sensitive_groups"
    if "consent.groups" in message:
        return "consent.groups"
    if "named custodian" in message:
        return "custodian"
    for key in _KEYS:
        if message.startswith(key):
            return key
    return None


def fieldsets(schema: ProfileSchema, lang: str, only: str | None = None) -> list[dict[str, Any]]:
    """The profile's groups and their fields as form inputs, labelled in ``lang``."""
    out = []
    for g in schema.groups.values():
        if only is not None and g.name != only:
            continue
        specs = [schema.fields[f] for f in g.fields]
        out.append(
            {
                "name": g.name,
                "label": g.zh if lang == "zh" else g.en,
                "sensitive": g.sensitive,
                "fields": [
                    {
                        "key": "p." + s.name,
                        "label": s.zh if lang == "zh" else s.en,
                        "kind": "select"
                        if s.choices
                        else "textarea"
                        if s.type == "text"
                        else "text",
                        "choices": [(c, c) for c in s.choices],
                        "max": s.max_chars,
                    }
                    for s in specs
                ],
            }
        )
    return out


def _text(form: FormData, key: str, limit: int = 20_000) -> str:
    value = form.get(key)
    return value.strip()[:limit] if isinstance(value, str) else ""


def read_profile(form: FormData, schema: ProfileSchema, filled: Filled) -> dict[str, str]:
    """The non-empty profile fields of the form (all of them kept in ``filled``)."""
    out: dict[str, str] = {}
    for name in schema.fields:
        value = _text(form, "p." + name)
        filled.values["p." + name] = value
        if value:
            out[name] = value
    return out


def read_consent(form: FormData, schema: ProfileSchema, filled: Filled) -> dict[str, Any] | None:
    """The consent record of the form, or None when none of it was filled in."""
    raw: dict[str, Any] = {}
    for key in CONSENT_TEXT:
        filled.values["consent." + key] = raw[key] = _text(form, "consent." + key, 200)
    for key in CONSENT_LISTS:
        picked = [g for g in form.getlist("consent." + key) if g in schema.groups]
        filled.chosen["consent." + key] = set(picked)
        raw[key] = picked
    if not any(raw.values()):
        return None
    return raw


def read_meta(form: FormData, filled: Filled) -> dict[str, Any]:
    """The metadata of a new archive; blank optional fields are left out."""
    data: dict[str, Any] = {}
    for key in META_CHOICES:
        value = filled.values[key] = _text(form, key, 32)
        if value:
            data[key] = value
    for key in META_TEXT:
        value = filled.values[key] = _text(form, key, 2000)
        if not value:
            continue
        data[key] = (
            [c.strip() for c in value.split(",") if c.strip()] if key == "contacts" else value
        )
    return data


def add_pydantic(filled: Filled, exc: ValidationError, prefix: str = "") -> None:
    """The model's complaints, by field; never the value (``input`` is not shown)."""
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        if loc[:1] == ["profile"] and len(loc) > 1:
            key = "p." + loc[1]
        elif loc[:1] == ["consent"] and len(loc) > 1:
            key = "consent." + loc[1]
        elif loc:
            key = loc[0]
        else:
            key = ""
        message = f"{'.'.join(loc)}: {e.get('msg', '')}"
        if key:
            filled.errors.setdefault(prefix + key, []).append(message)
        else:
            filled.general.append(message)
