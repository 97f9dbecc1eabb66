"""The configurable profile schema: which fields exist and how each is handled.

Loaded from a TOML file so that a company can add and drop items per project
without touching code. The loader refuses configurations that would weaken the
vault (a blind index on a health field, a low-entropy index, a field in an
undeclared group) so a bad edit fails at start-up, not in production data.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from vault.errors import SchemaError, ValidationFailed
from vault.formats import FORBIDDEN_IN_TEXT, MASKS, NORMALISERS, InvalidValue, check_text

SHIPPED_SCHEMA_FILE = Path(__file__).resolve().parent / "profile_schema.toml"

FIELD_TYPES = ("text", "name", "mobile", "landline", "id_number", "plate", "date", "choice")
SENSITIVE_KINDS = (
    "health",
    "financial",
    "minor",
    "whereabouts",
    "identity_document",
    "biometric",
    "religion",
)
# Types whose values have enough entropy for an exact-match index.
INDEXABLE_TYPES = ("text", "name", "mobile", "landline", "id_number", "plate")
# PIPL-sensitive kinds that must never be indexed, whatever their type.
NEVER_INDEXED = ("health", "financial", "minor", "biometric", "religion")
_DEFAULT_MASK = {
    "name": "name",
    "mobile": "mobile",
    "landline": "landline",
    "id_number": "id_number",
    "plate": "plate",
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    group: str
    zh: str
    en: str
    type: str = "text"
    searchable: bool = False
    normaliser: str = "text"
    mask: str = "redact"
    sensitive: str | None = None
    max_chars: int | None = None
    choices: tuple[str, ...] = ()

    def normalise(self, value: Any, limit: int) -> str:
        if not isinstance(value, str):
            raise InvalidValue(f"must be a string, not {_type_name(value)}")
        cap = self.max_chars or limit
        if len(value) > cap:
            raise InvalidValue(f"is longer than {cap} characters")
        # Before any normaliser, which could fold a control character into a space.
        value = check_text(value, multiline=self.type == "text")
        out = NORMALISERS[self.normaliser](value)
        if self.choices and out not in self.choices:
            raise InvalidValue("must be one of " + ", ".join(self.choices))
        return out

    def masked(self, value: str) -> str:
        return MASKS[self.mask](value)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "zh": self.zh,
            "en": self.en,
            "type": self.type,
            "searchable": self.searchable,
            "normaliser": self.normaliser,
            "mask": self.mask,
            "sensitive": self.sensitive,
            "choices": list(self.choices),
        }


# group, max_chars, multi-line, normaliser (None: plain text), choices
_Plain = tuple[str, int | None, bool, Callable[[str], str] | None, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    zh: str
    en: str
    fields: tuple[str, ...] = ()
    sensitive: bool = False


@dataclass(frozen=True)
class ProfileSchema:
    fields: dict[str, FieldSpec]
    groups: dict[str, GroupSpec]
    source: str = ""
    searchable: tuple[str, ...] = field(default=())

    @cached_property
    def sensitive_groups(self) -> frozenset[str]:
        return frozenset(g.name for g in self.groups.values() if g.sensitive)

    @cached_property
    def _group_order(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.groups)}

    @cached_property
    def _plain(self) -> dict[str, _Plain]:
        """Per field what the fast path needs of its spec (``_fast_profile``)."""
        return {
            name: (
                spec.group,
                spec.max_chars,
                spec.type == "text",
                None if spec.normaliser == "text" else NORMALISERS[spec.normaliser],
                spec.choices,
            )
            for name, spec in self.fields.items()
        }

    def check_groups(self, groups: Any, what: str = "groups") -> list[str]:
        if isinstance(groups, str):
            groups = [g for g in groups.split(",") if g]
        if not isinstance(groups, list | tuple | set | frozenset) or not all(
            isinstance(g, str) for g in groups
        ):
            raise ValidationFailed(f"{what} must be a list of field group names")
        unknown = sorted(set(groups) - self.groups.keys())
        if unknown:
            # The names are not repeated: they are what the caller sent, not the schema's words.
            raise ValidationFailed(
                f"unknown field group(s) in {what}: {len(unknown)} name(s) not in the schema "
                f"(known: {', '.join(self.groups)})"
            )
        return sorted(set(groups), key=self._group_order.__getitem__)

    def validate_profile(
        self, profile: Any, *, limit: int, allow_null: bool = False
    ) -> dict[str, dict[str, str | None]]:
        """Normalise a profile and split it by group; collects every problem at once."""
        if not allow_null and type(profile) is dict:
            fast = self._fast_profile(profile, limit)
            if fast is not None:
                return fast
        if not isinstance(profile, Mapping):
            raise ValidationFailed("profile must be an object keyed by field name")
        out: dict[str, dict[str, str | None]] = {}
        problems: list[str] = []
        for key, value in profile.items():
            spec = self.fields.get(key) if isinstance(key, str) else None
            if spec is None:
                problems.append(f"unknown field {key!r} (see `archive-vault schema`)")
                continue
            if value is None or value == "":
                if allow_null:
                    out.setdefault(spec.group, {})[key] = None
                continue
            try:
                out.setdefault(spec.group, {})[key] = spec.normalise(value, limit)
            except InvalidValue as exc:
                problems.append(f"field {key!r}: {exc}")
        if problems:
            raise ValidationFailed("; ".join(problems), problems=problems)
        return out

    def _fast_profile(
        self, profile: dict[Any, Any], limit: int
    ) -> dict[str, dict[str, str | None]] | None:
        """``validate_profile``'s answer for a profile with nothing to refuse, else None.

        The same checks and normalisers as ``FieldSpec.normalise``, without its
        per-field calls: an import validates some forty fields per archive. The
        forbidden-character test runs once over all the one-line values and once
        over all the multi-line ones (joined by a space, which neither rule
        forbids, so a joined text holds a forbidden character exactly when one of
        the values does). Windows line ends are never rewritten here: a carriage
        return is itself forbidden, so a value holding one leaves this path. Any
        value that might be refused (an unknown key, a non-text value, anything
        too long, a forbidden character, a normaliser that raises, a value outside
        a field's choices) returns None, and the caller takes the field-by-field
        path, which names every problem as it always has.
        """
        plain = self._plain
        lines: list[str] = []
        blocks: list[str] = []
        todo: list[tuple[str, str, _Plain]] = []
        for key, value in profile.items():
            entry = plain.get(key) if type(key) is str else None
            if entry is None:
                return None
            if value is None or value == "":
                continue
            if type(value) is not str or len(value) > (entry[1] or limit):
                return None
            (blocks if entry[2] else lines).append(value)
            todo.append((key, value, entry))
        if _ONE_LINE_REFUSED(" ".join(lines)) or _MULTILINE_REFUSED(" ".join(blocks)):
            return None
        out: dict[str, dict[str, str | None]] = {}
        normalize = unicodedata.normalize
        try:
            for key, value, (group, _cap, _multiline, normaliser, choices) in todo:
                if normaliser is None:  # formats.text, inlined
                    value = normalize("NFC", value).strip()
                    if not value:
                        return None
                else:
                    value = normaliser(value)
                if choices and value not in choices:
                    return None
                bucket = out.get(group)
                if bucket is None:
                    bucket = out[group] = {}
                bucket[key] = value
        except InvalidValue:
            return None
        return out


_ONE_LINE_REFUSED = re.compile(f"[\t\n{FORBIDDEN_IN_TEXT}]").search
_MULTILINE_REFUSED = re.compile(f"[{FORBIDDEN_IN_TEXT}]").search


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _str(entry: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{where}: {key!r} must be a non-empty string")
    return value


def parse_schema(data: Mapping[str, Any], source: str = "") -> ProfileSchema:
    if data.get("version") != 1:
        raise SchemaError(f"{source}: unsupported schema version {data.get('version')!r}")
    raw_groups = data.get("groups")
    if not isinstance(raw_groups, Mapping) or not raw_groups:
        raise SchemaError(f"{source}: [groups] must declare at least one group")
    fields: dict[str, FieldSpec] = {}
    members: dict[str, list[str]] = {g: [] for g in raw_groups}
    sensitive_groups: set[str] = set()
    for i, entry in enumerate(data.get("fields") or []):
        where = f"{source}: field #{i + 1}"
        if not isinstance(entry, Mapping):
            raise SchemaError(f"{where} must be a table")
        name = _str(entry, "name", where)
        where = f"{source}: field {name!r}"
        if not name.isidentifier() or not name.islower():
            raise SchemaError(f"{where}: names are lower_case identifiers")
        if name in fields:
            raise SchemaError(f"{where} is declared twice")
        group = _str(entry, "group", where)
        if group not in members:
            raise SchemaError(f"{where}: group {group!r} is not declared under [groups]")
        ftype = entry.get("type", "text")
        if ftype not in FIELD_TYPES:
            raise SchemaError(f"{where}: type must be one of {', '.join(FIELD_TYPES)}")
        normaliser = entry.get("normaliser", ftype if ftype in NORMALISERS else "text")
        if normaliser not in NORMALISERS:
            raise SchemaError(f"{where}: normaliser must be one of {', '.join(NORMALISERS)}")
        mask = entry.get("mask", _DEFAULT_MASK.get(ftype, "redact"))
        if mask not in MASKS:
            raise SchemaError(f"{where}: mask must be one of {', '.join(MASKS)}")
        sensitive = entry.get("sensitive") or None
        if sensitive is not None and sensitive not in SENSITIVE_KINDS:
            raise SchemaError(f"{where}: sensitive must be one of {', '.join(SENSITIVE_KINDS)}")
        searchable = bool(entry.get("searchable", False))
        if searchable and ftype not in INDEXABLE_TYPES:
            raise SchemaError(f"{where}: a {ftype} field has too little entropy to be indexed")
        if searchable and sensitive in NEVER_INDEXED:
            raise SchemaError(f"{where}: {sensitive} information is never indexed")
        choices = tuple(entry.get("choices") or ())
        if ftype == "choice" and not choices:
            raise SchemaError(f"{where}: a choice field lists its choices")
        max_chars = entry.get("max_chars")
        if max_chars is not None and (not isinstance(max_chars, int) or max_chars < 1):
            raise SchemaError(f"{where}: max_chars must be a positive integer")
        fields[name] = FieldSpec(
            name=name,
            group=group,
            zh=_str(entry, "zh", where),
            en=_str(entry, "en", where),
            type=ftype,
            searchable=searchable,
            normaliser=normaliser,
            mask=mask,
            sensitive=sensitive,
            max_chars=max_chars,
            choices=choices,
        )
        members[group].append(name)
        if sensitive:
            sensitive_groups.add(group)
    if not fields:
        raise SchemaError(f"{source}: no fields declared")
    groups = {
        g: GroupSpec(
            name=g,
            zh=_str(spec, "zh", f"{source}: group {g!r}"),
            en=_str(spec, "en", f"{source}: group {g!r}"),
            fields=tuple(members[g]),
            sensitive=g in sensitive_groups,
        )
        for g, spec in raw_groups.items()
        if members[g]
    }
    indexed = tuple(f.name for f in fields.values() if f.searchable)
    return ProfileSchema(fields=fields, groups=groups, source=source, searchable=indexed)


@cache
def load_schema(path: Path) -> ProfileSchema:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"schema file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"schema file {path} is not valid TOML: {exc}") from None
    return parse_schema(data, source=str(path))
