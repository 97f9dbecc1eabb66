"""Who could sign a request's stages: reachability when filed, who may sign now.

Every chain must be finishable (DOMAIN.md). A stage's *usual* signers are the
enabled accounts it names: holders of its roles (a department head only of the
department the stage is scoped to) or, for a custodian's stage, the archive's
custodian. When a stage is reached, the usual signers still *left* are those
less the requester, anyone who already signed an earlier stage of the request
and, for a change, the people it gives access to. While one is left only they
sign; when none is, a holder of one of the stage's ``alternate_roles`` may
(less the same people). One person signs at most one stage.

Whether alternates may sign depends on who signed before, so whether a chain
can be finished is a search, not a check per stage: is there a sequence of
distinct signers, one per stage in order, each eligible when their stage is
reached? :func:`unfinishable_stage` answers it exactly (a small depth-first
search, memoised on the stage and on the already-used people who still matter
for later stages). A stage-by-stage count would be wrong both ways: it accepts
the demo's top-secret view whose only information officer is also the
custodian when no supervisor exists (the officer cannot sign both stages),
and, made to count people once, it refuses that view when a supervisor does
exist, not seeing that the officer's signature is what lets the supervisor
sign the custodian's stage.

:func:`signers_now` is the same rule for a request in flight, shared by
signing (``Signing.check_signer`` lets an alternate sign only when it is
empty of usual signers), the approvers' queue and the notifications that tell
signers a stage waits for them. Stages are the snapshots stored with requests
(``StageSpec.as_dict``); a snapshot stored before alternates existed has none.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlmodel import Session, col, select

from policies.custodians import CUSTODIAN_ROLES
from policies.desk import Desk
from policies.models import AccessRequest, RequestSignature
from policies.roles import CHANGE_KINDS, NotificationEvent, RequestState, Role
from vault.models import User, UserRole

# Appended to the role a signature records when it was signed as an alternate
# ("general_manager (alternate)"; the signature row's role holds 32 characters).
ALTERNATE = " (alternate)"

Stage = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Person:
    """An enabled account as the signer rules see it."""

    username: str
    department: str
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The first stage nobody could sign, why, and what would fix it (words for people)."""

    stage: Mapping[str, Any]
    why: str
    fix: str

    @property
    def name(self) -> str:
        return str(self.stage.get("name", ""))

    def message(self, what: str) -> str:
        """'no one could sign stage custodian (the archive's custodian) of <what>: …; fix: …'."""
        return (
            f"no one could sign stage {self.name} ({self.stage.get('label', '')}) of {what}: "
            f"{self.why}; fix: {self.fix}"
        )


# -- who is a usual signer ----------------------------------------------------------------


def is_usual(
    stage: Stage,
    username: str,
    roles: Collection[str],
    user_department: str,
    *,
    custodian: str | None,
    department: str,
) -> bool:
    """Whether this account signs ``stage`` as its usual signer (requester etc. aside).

    ``department`` is the one the stage's scope names: the requester's for
    ``requester_department``, the change's for ``change_department``. The rule is
    the one ``Signing.check_signer`` and ``changes.signer_problem`` enforce.
    """
    scope = stage.get("scope", "any")
    in_department = bool(user_department) and user_department == department
    if stage.get("custodian"):
        # The named keeper signs only while they hold a role a keeper needs (Art 22):
        # one who lost it is no usual signer, so the stage falls to its alternate.
        if not custodian or username != custodian or not CUSTODIAN_ROLES & set(roles):
            return False
        return scope == "any" or in_department
    held = set(stage.get("roles", ())) & set(roles)
    if not held:
        return False
    if scope == "requester_department":
        return in_department
    if scope == "change_department" and held <= {Role.DEPARTMENT_HEAD}:
        return in_department
    return True


def alternate_roles_held(stage: Stage, roles: Collection[str]) -> list[str]:
    """The stage's alternate roles this account holds, in a stable order."""
    return sorted(set(stage.get("alternate_roles", ())) & set(roles))


def _people(session: Session, roles: Iterable[str], names: Iterable[str]) -> list[Person]:
    """Enabled accounts holding any of ``roles`` (their relevant roles), and the named ones."""
    wanted = sorted(set(roles))
    found: dict[str, tuple[str, set[str]]] = {}
    if wanted:
        rows = session.exec(
            select(User.username, User.department, UserRole.role)
            .join(UserRole, col(UserRole.user_id) == col(User.id))
            .where(col(UserRole.role).in_(wanted), User.disabled == False)  # noqa: E712
        ).all()
        for username, department, role in rows:
            found.setdefault(username, (department, set()))[1].add(role)
    named = sorted({n for n in names if n} - set(found))
    if named:
        for username, department in session.exec(
            select(User.username, User.department).where(
                col(User.username).in_(named),
                User.disabled == False,  # noqa: E712
            )
        ).all():
            found[username] = (department, set())
    return [Person(u, d, frozenset(r)) for u, (d, r) in sorted(found.items())]


def _pools(
    stage: Stage,
    people: Sequence[Person],
    *,
    custodian: str | None,
    department: str,
    requester: str,
) -> tuple[frozenset[str], frozenset[str]]:
    """(usual signers, alternates) among ``people``, before anyone is left out. A stage
    whose alternates sign only for its own usual signer (``alternate_when = "filer"``)
    has none unless the requester is one."""
    usual = frozenset(
        p.username
        for p in people
        if is_usual(
            stage, p.username, p.roles, p.department, custodian=custodian, department=department
        )
    )
    if not alternates_open(stage, requester, usual):
        return usual, frozenset()
    alternates = frozenset(p.username for p in people if alternate_roles_held(stage, p.roles))
    return usual, alternates


def alternates_open(stage: Stage, requester: str, usual: Collection[str]) -> bool:
    """Whether the stage's alternates may sign at all for this requester, ``usual``
    being its usual signers before anyone is left out."""
    return stage.get("alternate_when", "no_usual_signer_left") != "filer" or requester in usual


def _relevant_roles(stages: Iterable[Stage]) -> set[str]:
    out: set[str] = set()
    for stage in stages:
        out |= set(stage.get("roles", ())) | set(stage.get("alternate_roles", ()))
        if stage.get("custodian"):
            out |= CUSTODIAN_ROLES
    return out


# -- the search ---------------------------------------------------------------------------


def _finishable(
    pools: Sequence[tuple[frozenset[str], frozenset[str]]], used: frozenset[str]
) -> bool:
    """Is there one distinct signer per stage, in order, under the alternates rule?

    ``pools`` hold each stage's usual signers and alternates with the excluded
    people already removed; ``used`` are those who signed before the first.
    """
    n = len(pools)
    later: list[frozenset[str]] = [frozenset()] * (n + 1)
    for i in range(n - 1, -1, -1):
        later[i] = later[i + 1] | pools[i][0] | pools[i][1]

    @cache
    def go(i: int, spent: frozenset[str]) -> bool:
        if i == n:
            return True
        usual, alternates = pools[i]
        pool = (usual - spent) or (alternates - spent)
        if not pool:
            return False
        # People no later stage names are interchangeable: one of them stands for all.
        free = pool - later[i + 1]
        options = ([min(free)] if free else []) + sorted(pool & later[i + 1])
        return any(go(i + 1, (spent | {c}) & later[i + 1]) for c in options)

    return go(0, used & later[0])


def _explain(
    stage: Stage,
    index: int,
    stages: Sequence[Stage],
    raw: Sequence[tuple[frozenset[str], frozenset[str]]],
    *,
    requester: str,
    custodian: str | None,
    department: str,
    excluded: frozenset[str],
    signed: frozenset[str],
    archives: Sequence[str],
) -> Unreachable:
    """Why stage ``index`` cannot be reached (every earlier one can) and what would fix it."""
    usual, alternates = raw[index]

    def earlier_for(name: str) -> str:
        """The earlier stages ``name`` is the only one left to sign, in words."""
        parts = []
        for j in range(index):
            u, a = raw[j]
            left = (u - excluded - signed) or (a - excluded - signed)
            if name in left and len(left) == 1:
                parts.append(f"stage {stages[j].get('name')}")
        if name in signed:
            return "signed an earlier stage"
        if parts:
            return "is the only one who can sign " + " and ".join(parts)
        return "must sign an earlier stage"

    def reason(name: str) -> str:
        if name == requester:
            return f"{name} filed it"
        if name in excluded:
            return f"{name} gains from the change"
        return f"{name} {earlier_for(name)}"

    roles = list(stage.get("roles", ()))
    alt = list(stage.get("alternate_roles", ()))
    scoped = stage.get("scope") in ("requester_department", "change_department")
    where = f" of department {department or '(none)'}" if scoped else ""
    if stage.get("custodian"):
        if not custodian:
            why = "no custodian is named"
        elif custodian not in usual:
            why = f"the custodian {custodian} has no enabled account"
        else:
            why = f"{custodian} is the custodian and " + reason(custodian).removeprefix(
                f"{custodian} "
            )
        first = archives[0] if archives else "{no}"
        fix = f"name another custodian (POST /customers/{first}/custodian)"
        earlier_roles = sorted(
            {r for j in range(index) if custodian in raw[j][0] for r in stages[j].get("roles", ())}
        )
        if custodian and earlier_roles:
            fix += f" or give a second account the {' or '.join(earlier_roles)} role"
    else:
        held = ", ".join(roles)
        if not usual:
            why = f"no enabled account{where} holds the {held} role"
        else:
            why = "; ".join(reason(n) for n in sorted(usual))
        fix = f"give {'another' if usual else 'an'} enabled account{where} the {held} role"
    if alt:
        alt_roles = " or ".join(alt)
        if not alternates:
            why += f"; and no enabled account holds the alternate role {alt_roles}"
        else:
            why += f"; and every alternate ({alt_roles}) is out: " + "; ".join(
                reason(n) for n in sorted(alternates)
            )
        fix += f", or give another account the {alt_roles} role (who signs instead)"
    else:
        why += "; and the stage has no alternate"
    return Unreachable(stage=stage, why=why, fix=fix)


def unfinishable_stage(
    session: Session,
    stages: Sequence[Stage],
    requester: str,
    custodian: str | None,
    department: str,
    excluded: Iterable[str] = (),
    *,
    signed: Iterable[str] = (),
    archives: Sequence[str] = (),
) -> Unreachable | None:
    """The first stage of ``stages`` that no sequence of signers could reach, or None.

    ``department`` is the one the stages' scopes name (the requester's for
    access requests, the change's for changes); ``excluded`` the people who may
    not sign at all besides the requester (a change's beneficiaries);
    ``signed`` who signed earlier stages already (a request in flight).
    """
    out = set(excluded) | {requester}
    people = _people(session, _relevant_roles(stages), [custodian or ""])
    raw = [
        _pools(s, people, custodian=custodian, department=department, requester=requester)
        for s in stages
    ]
    return _first_blocked(
        stages,
        raw,
        requester=requester,
        custodian=custodian,
        department=department,
        excluded=frozenset(out),
        signed=frozenset(signed),
        archives=archives,
    )


def _first_blocked(
    stages: Sequence[Stage],
    raw: Sequence[tuple[frozenset[str], frozenset[str]]],
    *,
    requester: str,
    custodian: str | None,
    department: str,
    excluded: frozenset[str],
    signed: frozenset[str],
    archives: Sequence[str],
) -> Unreachable | None:
    pools = [(u - excluded, a - excluded) for u, a in raw]
    if _finishable(pools, signed):
        return None
    # The first stage at which the chain so far can no longer be finished.
    index = next(i for i in range(len(stages)) if not _finishable(pools[: i + 1], signed))
    return _explain(
        stages[index],
        index,
        stages,
        raw,
        requester=requester,
        custodian=custodian,
        department=department,
        excluded=excluded,
        signed=signed,
        archives=archives,
    )


# -- a request in flight ----------------------------------------------------------------------


def scope_department(req: AccessRequest, stage: Stage) -> str:
    """The department a stage's scope names for this request."""
    if stage.get("scope") == "change_department":
        return str((req.change or {}).get("department", ""))
    return req.requester_department


def excluded_from(req: AccessRequest) -> frozenset[str]:
    """Who never signs this request: its requester, a change's beneficiaries and the
    people it is about (a leaver)."""
    subjects: Iterable[str] = ()
    if req.kind in {k.value for k in CHANGE_KINDS}:
        change = req.change or {}
        subjects = {*change.get("subjects", ()), *change.get("parties", ())}
    return frozenset({req.requester, *subjects})


def signed_by(session: Session, req: AccessRequest) -> frozenset[str]:
    """Everyone who signed a stage of the request (superseded signatures too)."""
    if req.id is None:
        return frozenset()
    return frozenset(
        session.exec(
            select(RequestSignature.signer).where(RequestSignature.request_id == req.id)
        ).all()
    )


def usual_left(session: Session, req: AccessRequest, stage: Stage) -> frozenset[str]:
    """The usual signers of ``stage`` still left for this request (see module doc)."""
    people = _people(session, _relevant_roles([stage]), [req.custodian or ""])
    usual, _ = _pools(
        stage,
        people,
        custodian=req.custodian,
        department=scope_department(req, stage),
        requester=req.requester,
    )
    return usual - excluded_from(req) - signed_by(session, req)


def alternates_may_sign(session: Session, req: AccessRequest, stage: Stage) -> bool:
    """Whether this request's requester opens the stage to its alternates at all."""
    if stage.get("alternate_when", "no_usual_signer_left") != "filer":
        return True
    people = _people(session, _relevant_roles([stage]), [req.requester])
    usual, _ = _pools(
        stage,
        people,
        custodian=req.custodian,
        department=scope_department(req, stage),
        requester=req.requester,
    )
    return req.requester in usual


def signers_now(session: Session, req: AccessRequest) -> list[str]:
    """Who may sign the request's next stage now: its usual signers still left, or,
    when none is, its alternates (less the same people). Empty once decided."""
    if req.state != RequestState.PENDING or req.next_stage >= len(req.stages):
        return []
    stage = req.stages[req.next_stage]
    people = _people(session, _relevant_roles([stage]), [req.custodian or ""])
    usual, alternates = _pools(
        stage,
        people,
        custodian=req.custodian,
        department=scope_department(req, stage),
        requester=req.requester,
    )
    out = excluded_from(req) | signed_by(session, req)
    return sorted((usual - out) or (alternates - out))


@dataclass(frozen=True, slots=True)
class NextSigners:
    """Who may sign a pending request's next stage now, and in which capacity."""

    stage: str
    label: str
    signers: tuple[str, ...]
    alternate: bool


def next_signers_for(
    session: Session, requests: Sequence[AccessRequest], signed: Mapping[str, Iterable[str]]
) -> dict[str, NextSigners]:
    """:func:`signers_now` for a page of requests in one query, with the words: the
    stage's label, or its ``alternate_label`` once no usual signer is left (a department
    head's own request reads "the customer-service manager or the general manager").
    ``signed`` holds each request's signers by uid (the caller has them already)."""
    pending = [
        r for r in requests if r.state == RequestState.PENDING and r.next_stage < len(r.stages)
    ]
    if not pending:
        return {}
    people = _people(
        session,
        _relevant_roles(r.stages[r.next_stage] for r in pending),
        [r.custodian or "" for r in pending],
    )
    out: dict[str, NextSigners] = {}
    for req in pending:
        stage = req.stages[req.next_stage]
        usual, alternates = _pools(
            stage,
            people,
            custodian=req.custodian,
            department=scope_department(req, stage),
            requester=req.requester,
        )
        left_out = excluded_from(req) | frozenset(signed.get(req.uid, ()))
        now_usual = usual - left_out
        alternate = not now_usual and bool(alternates)
        label = str(stage.get("label", ""))
        if alternate:
            label = str(stage.get("alternate_label") or label)
        elif stage.get("custodian") and req.custodian:
            label = f"{label} ({req.custodian})"
        out[req.uid] = NextSigners(
            stage=str(stage.get("name", "")),
            label=label,
            signers=tuple(sorted(now_usual or (alternates - left_out))),
            alternate=alternate,
        )
    return out


def unfinishable_request(session: Session, req: AccessRequest) -> Unreachable | None:
    """:func:`unfinishable_stage` for the stages a pending request still needs."""
    rest = req.stages[req.next_stage :]
    if req.state != RequestState.PENDING or not rest:
        return None
    people = _people(session, _relevant_roles(rest), [req.custodian or ""])
    raw = [
        _pools(
            s,
            people,
            custodian=req.custodian,
            department=scope_department(req, s),
            requester=req.requester,
        )
        for s in rest
    ]
    return _first_blocked(
        rest,
        raw,
        requester=req.requester,
        custodian=req.custodian,
        department=req.requester_department,
        excluded=excluded_from(req),
        signed=signed_by(session, req),
        archives=req.archives,
    )


def tell_next_signers(desk: Desk, session: Session, req: AccessRequest, now: datetime) -> list[str]:
    """Tell everyone who may sign the next stage now that it waits for them.

    The message names the request, its kind, archive numbers, requester and the
    stage: never customer content. Returns who was told."""
    people = signers_now(session, req)
    if not people:
        return []
    stage = req.stages[req.next_stage]
    usual = usual_left(session, req, stage)
    label = stage.get("label", "") if usual else stage.get("alternate_label", "")
    archives = ", ".join(req.archives) if req.archives else "no archives"
    message = (
        f"{req.kind} request {req.uid} from {req.requester} ({archives}) waits for "
        f"stage {stage.get('name')}: {label}"
    )
    for username in people:
        desk.notify(session, username, req.uid, NotificationEvent.STAGE_WAITING, message, now)
    return people
