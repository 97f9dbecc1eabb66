"""Approval chains as data: load and check ``chains.toml``.

The loader refuses anything that would weaken the workflow (a loan limit above
Art 19.5's three days, an unknown role, a kind without stages, a stage a person
could never sign) so a bad edit fails at start-up rather than approving requests
it should not. Chains are resolved against a concrete request (classification,
external requester) with :meth:`KindSpec.stages_for`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from policies.errors import ConfigError
from policies.roles import CHANGE_KINDS, Action, RequestKind, Role

CHAINS_FILE = Path(__file__).resolve().parent / "chains.toml"
# Art 19.5: "a loan may not exceed three days". Configuration may lower it only.
LOAN_HOURS_CEILING = 72
# Administrators start a handover and file role requests (they manage users), but
# never finish either: a second person signs. They file nothing that reads content.
ADMIN_FILES = frozenset({RequestKind.HANDOVER, RequestKind.ROLE})
_CLASSIFICATIONS = ("internal", "secret", "top_secret")
# change_department: a department head signs only for the department the change
# concerns (the archive's or the leaver's); the stage's other roles sign for any.
_SCOPES = ("any", "requester_department", "change_department")
_ALTERNATE_WHEN = ("no_usual_signer_left", "filer")


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One signature on a request: who signs, when it applies, what rule it serves."""

    name: str
    roles: tuple[str, ...]
    label: str
    article: str = ""
    custodian: bool = False
    scope: str = "any"
    when_classification: tuple[str, ...] = ()
    when_external: bool | None = None
    # Who signs instead when no usual signer is left (every chain must be
    # finishable): the usual signers are the enabled accounts the stage names,
    # less the requester, whoever signed an earlier stage of the request, and the
    # people a change gives access to (``policies.reach``).
    alternate_roles: tuple[str, ...] = ()
    alternate_label: str = ""
    # When alternates may sign: "no_usual_signer_left" (the default), or "filer" when
    # only the requester's being the usual signer hands the stage on. A stage whose
    # role the rule names in person (the general manager's approval of a report,
    # Art 10-11) is never signed by someone else because that person is away or was
    # disabled: such a request waits, or is refused when filed.
    alternate_when: str = "no_usual_signer_left"

    def applies(self, *, classification: str, external: bool) -> bool:
        if self.when_classification and classification not in self.when_classification:
            return False
        return not (self.when_external is not None and self.when_external != external)

    def as_dict(self) -> dict[str, Any]:
        """The stage as stored with a request (a snapshot, immune to later edits)."""
        return {
            "name": self.name,
            "roles": list(self.roles),
            "label": self.label,
            "article": self.article,
            "custodian": self.custodian,
            "scope": self.scope,
            # Stored with the request so that who may sign instead is fixed when it
            # is filed, like the rest of the stage.
            "alternate_roles": list(self.alternate_roles),
            "alternate_label": self.alternate_label,
            "alternate_when": self.alternate_when,
        }


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: RequestKind
    title: str
    article: str
    filers: frozenset[str]
    grants: tuple[Action, ...]
    stages: tuple[StageSpec, ...]
    needs_archives: bool = True
    grant_hours: int | None = None
    requires_retention_expired: bool = False
    # A change request (reassign, reclassify, role, handover): no grant; the change
    # is applied at the final signature. ``filed_at`` says where it is asked for.
    change: bool = False
    filed_at: str = ""

    def stages_for(self, *, classification: str, external: bool) -> tuple[StageSpec, ...]:
        return tuple(
            s for s in self.stages if s.applies(classification=classification, external=external)
        )

    def describe(self, *, classification: str, external: bool, custodian: str | None) -> str:
        """'file a view request; it needs your department head and an information officer'."""
        labels = []
        for stage in self.stages_for(classification=classification, external=external):
            label = stage.label
            if stage.custodian and custodian:
                label = f"{label} ({custodian})"
            labels.append(label)
        article = "an" if self.kind.value[0] in "aeiou" else "a"
        return f"file {article} {self.kind.value} request; it needs {_join(labels)}"


@dataclass(frozen=True, slots=True)
class Chains:
    kinds: Mapping[RequestKind, KindSpec]
    purposes: Mapping[str, str]
    pending_expiry_hours: int
    max_loan_hours: int
    source: str = ""

    def kind(self, kind: str) -> KindSpec:
        try:
            return self.kinds[RequestKind(kind)]
        except (ValueError, KeyError):
            raise ConfigError(f"no approval chain for request kind {kind!r}") from None


def _join(items: Sequence[str]) -> str:
    if not items:
        return "no signature"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of names")
    return tuple(value)


def _positive_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where} must be a positive whole number")
    return value


def _stage(raw: Any, where: str) -> StageSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string")
    where = f"{where} ({name})"
    custodian = bool(raw.get("custodian", False))
    roles = _str_list(raw.get("roles", []), f"{where}: roles")
    if custodian == bool(roles):
        raise ConfigError(f"{where}: a stage is signed either by roles or by the custodian")
    unknown = [r for r in roles if r not in Role.__members__.values()]
    if unknown:
        raise ConfigError(f"{where}: unknown role(s) {', '.join(unknown)}")
    alternates = _str_list(raw.get("alternate_roles", []), f"{where}: alternate_roles")
    for role in (*roles, *alternates):
        if role not in Role.__members__.values():
            raise ConfigError(f"{where}: unknown role {role}")
        if role in (Role.ADMIN, Role.COMPLIANCE, Role.EXTERNAL):
            raise ConfigError(f"{where}: admin, compliance and external never sign requests")
    # An alternate holding the stage's own role would be a usual signer already:
    # the line would read as a fallback and change nothing.
    same = [r for r in alternates if r in roles]
    if same:
        raise ConfigError(f"{where}: alternate role(s) {', '.join(same)} sign the stage already")
    if len(set(alternates)) != len(alternates):
        raise ConfigError(f"{where}: alternate_roles lists a role twice")
    alternate_label = str(raw.get("alternate_label", ""))
    if alternates and not alternate_label:
        raise ConfigError(f"{where}: alternate_label (who signs instead, in words) is required")
    alternate_when = raw.get("alternate_when", "no_usual_signer_left")
    if alternate_when not in _ALTERNATE_WHEN:
        raise ConfigError(f"{where}: alternate_when must be one of {', '.join(_ALTERNATE_WHEN)}")
    scope = raw.get("scope", "any")
    if scope not in _SCOPES:
        raise ConfigError(f"{where}: scope must be one of {', '.join(_SCOPES)}")
    when = raw.get("when", {})
    if not isinstance(when, Mapping) or set(when) - {"classification", "external"}:
        raise ConfigError(f"{where}: when may only test classification and external")
    classes = _str_list(when.get("classification", []), f"{where}: when.classification")
    if set(classes) - set(_CLASSIFICATIONS):
        raise ConfigError(f"{where}: classifications are {', '.join(_CLASSIFICATIONS)}")
    external = when.get("external")
    if external is not None and not isinstance(external, bool):
        raise ConfigError(f"{where}: when.external must be true or false")
    label = raw.get("label")
    if not isinstance(label, str) or not label:
        raise ConfigError(f"{where}: label (who signs, in words) is required")
    return StageSpec(
        name=name,
        roles=roles,
        label=label,
        article=str(raw.get("article", "")),
        custodian=custodian,
        scope=scope,
        when_classification=classes,
        when_external=external,
        alternate_roles=alternates,
        alternate_label=alternate_label,
        alternate_when=alternate_when,
    )


def parse_chains(data: Mapping[str, Any], source: str = "") -> Chains:
    settings = data.get("settings", {})
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{source}: [settings] must be a table")
    expiry = _positive_int(
        settings.get("pending_expiry_hours", 168), f"{source}: pending_expiry_hours"
    )
    max_loan = _positive_int(
        settings.get("max_loan_hours", LOAN_HOURS_CEILING), f"{source}: max_loan_hours"
    )
    if max_loan > LOAN_HOURS_CEILING:
        raise ConfigError(
            f"{source}: max_loan_hours {max_loan} exceeds Art 19.5's {LOAN_HOURS_CEILING} hours"
        )
    purposes = data.get("purposes", {})
    if (
        not isinstance(purposes, Mapping)
        or not purposes
        or not all(isinstance(v, str) for v in purposes.values())
    ):
        raise ConfigError(f"{source}: [purposes] must list at least one purpose with a label")
    raw_kinds = data.get("kinds", {})
    if not isinstance(raw_kinds, Mapping):
        raise ConfigError(f"{source}: [kinds] must be a table")
    kinds: dict[RequestKind, KindSpec] = {}
    for kind in RequestKind:
        raw = raw_kinds.get(kind.value)
        where = f"{source}: kinds.{kind.value}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} is missing: every request kind needs a chain")
        stages = tuple(
            _stage(s, f"{where}.stages[{i}]") for i, s in enumerate(raw.get("stages") or [])
        )
        if not stages:
            raise ConfigError(f"{where}: a chain needs at least one stage")
        if len({s.name for s in stages}) != len(stages):
            raise ConfigError(f"{where}: stage names must be unique")
        filers = _str_list(raw.get("filers", []), f"{where}: filers")
        if set(filers) - set(Role.__members__.values()):
            raise ConfigError(f"{where}: unknown filer role(s)")
        change = kind in CHANGE_KINDS
        if Role.COMPLIANCE in filers or (Role.ADMIN in filers and kind not in ADMIN_FILES):
            raise ConfigError(f"{where}: admin and compliance never file content requests")
        try:
            grants = tuple(Action(a) for a in _str_list(raw.get("grants", []), f"{where}: grants"))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if change and (grants or raw.get("grant_hours") is not None):
            raise ConfigError(f"{where}: a change request grants nothing (no grants, no hours)")
        if not grants and not change:
            raise ConfigError(f"{where}: grants must name at least one action")
        grant_hours = raw.get("grant_hours")
        if grant_hours is not None:
            grant_hours = _positive_int(grant_hours, f"{where}: grant_hours")
        elif kind is not RequestKind.LOAN and not change:
            raise ConfigError(f"{where}: grant_hours is required (how long a grant lasts)")
        kinds[kind] = KindSpec(
            kind=kind,
            title=str(raw.get("title", kind.value)),
            article=str(raw.get("article", "")),
            filers=frozenset(filers),
            grants=grants,
            stages=stages,
            needs_archives=bool(raw.get("needs_archives", True)),
            grant_hours=grant_hours,
            requires_retention_expired=bool(raw.get("requires_retention_expired", False)),
            change=change,
            filed_at=str(raw.get("filed_at", "")),
        )
    _check_handover_follows_reassign(kinds, source)
    extra = set(raw_kinds) - {k.value for k in RequestKind}
    if extra:
        raise ConfigError(f"{source}: unknown request kind(s) {', '.join(sorted(extra))}")
    return Chains(
        kinds=kinds,
        purposes=dict(purposes),
        pending_expiry_hours=expiry,
        max_loan_hours=max_loan,
        source=source,
    )


def _signers_of(stage: StageSpec) -> tuple[Any, ...]:
    """What decides who signs a stage and when (its words and article aside)."""
    return (
        stage.name,
        stage.roles,
        stage.custodian,
        stage.scope,
        stage.when_classification,
        stage.when_external,
        stage.alternate_roles,
        stage.alternate_when,
    )


def _check_handover_follows_reassign(kinds: Mapping[RequestKind, KindSpec], source: str) -> None:
    """A handover moves the leaver's archives as reassignments would: a handover chain
    weaker than the reassignment chain would let it move a secret archive on fewer
    signatures than reassigning that same archive needs."""
    handover = kinds.get(RequestKind.HANDOVER)
    reassign = kinds.get(RequestKind.REASSIGN)
    if handover is None or reassign is None:
        return
    if [_signers_of(s) for s in handover.stages] != [_signers_of(s) for s in reassign.stages]:
        raise ConfigError(
            f"{source}: kinds.handover must have the stages of kinds.reassign (same names, "
            "roles, scope, conditions and alternates): a handover moves archives as a "
            "reassignment does"
        )


@cache
def load_chains(path: Path = CHAINS_FILE) -> Chains:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"chains file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"chains file {path} is not valid TOML: {exc}") from None
    return parse_chains(data, source=str(path))
