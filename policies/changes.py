"""Change requests: widening who can read is a request, never a single act.

Reassigning an archive or adding contacts, lowering a classification or changing
a custodian, giving an account a role that reads content, and a leaver's handover
each file an ``AccessRequest`` of a change kind (``chains.toml``: reassign,
reclassify, role, handover). The request carries its change (from -> to, and the
people it gives access to, ``subjects``); it is signed through the ordinary
workflow (``Signing.approve``), and the final signature applies the change in
the same transaction (``Signing`` calls the kind's applier), after checking that
the vault still looks as it did when the request was filed.

Rules added to the workflow's own (no self-approval, one person one stage, order):
  beneficiary       nobody signs a change that gives them access
  wrong-department  a department head signs only for the department the change
                    concerns (``scope = "change_department"``)
When the filer could sign a stage themselves (they head the department, they are
the custodian), the stage's configured alternate signs it instead, so the filer
never signs and the chain stays finishable. A chain nobody could finish is
refused when filed.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from sqlmodel import Session, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies import reach
from policies.chains import StageSpec
from policies.decision import Principal
from policies.desk import Desk
from policies.errors import InvalidInput, Refused, Unfinishable
from policies.models import AccessRequest
from policies.roles import CHANGE_KINDS, NotificationEvent, RequestKind, RequestState, Role
from vault.models import User, UserRole

PURPOSE = "other"


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.username, principal.role_label)


@contextlib.contextmanager
def audited_refusals(
    action: AuditAction, who: Principal, archives: Sequence[str] = ()
) -> Iterator[None]:
    """A refused attempt to widen access is audited: the refusal carries its event,
    which the caller appends after rolling back (``Services.in_transaction``)."""
    try:
        yield
    except (Refused, Unfinishable) as exc:
        if exc.event is None:
            exc.event = AuditEvent(
                action=action,
                actor=actor_of(who),
                outcome=Outcome.DENIED,
                archives=tuple(archives),
                reason=exc.message[:500],
                detail={"rule": exc.rule}
                | ({"stage": exc.stage} if isinstance(exc, Unfinishable) else {}),
            )
        raise


P = ParamSpec("P")
R = TypeVar("R")


def audits_refusals(
    action: AuditAction, *, who: str, archive: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a filing function: its refusals carry an audit event naming the
    principal passed as ``who`` (and the archive passed as ``archive``)."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs).arguments
            archives = [str(bound[archive])] if archive and bound.get(archive) else []
            with audited_refusals(action, bound[who], archives):
                return fn(*args, **kwargs)

        return inner

    return wrap


def is_change(kind: str) -> bool:
    return kind in {k.value for k in CHANGE_KINDS}


# -- people -------------------------------------------------------------------------


def person(session: Session, username: str) -> tuple[User, frozenset[str]]:
    """A user row and its roles; ``InvalidInput`` naming the user if there is none."""
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise InvalidInput(f"{username} is not a user of this vault")
    roles = frozenset(session.exec(select(UserRole.role).where(UserRole.user_id == user.id)).all())
    return user, roles


def check_reader(
    session: Session,
    username: str,
    *,
    department: str,
    what: str,
) -> None:
    """``username`` may be given an archive (as owner, contact or successor): an enabled
    salesperson of ``department``, never a visitor, never an account that holds or
    held ``admin``. Refusals say what is wrong in words."""
    user, roles = person(session, username)
    if user.ever_admin or Role.ADMIN in roles:
        raise Refused(
            f"{what} {username} holds or has held the admin role; administrators' "
            "accounts never receive archives",
            rule="ever-admin",
        )
    if user.external or Role.EXTERNAL in roles:
        raise Refused(
            f"{what} {username} is a visitor from outside the company; only the "
            "company's salespeople receive archives",
            rule="external",
        )
    if user.disabled:
        raise InvalidInput(f"{what} {username} is disabled")
    if Role.SALESPERSON not in roles:
        raise InvalidInput(
            f"{what} {username} is not a salesperson; archives go to salespeople of "
            f"department {department or '(none)'}"
        )
    if user.department != department:
        raise Refused(
            f"{what} {username} is in department {user.department or '(none)'}, not in "
            f"{department or '(none)'}; archives go to salespeople of their own department",
            rule="wrong-department",
        )


# -- filing ---------------------------------------------------------------------------


def _could_sign(stage: StageSpec, filer: Principal, custodian: str | None, department: str) -> bool:
    if stage.custodian:
        return custodian is None or custodian == filer.username
    held = set(stage.roles) & filer.roles
    if not held:
        return False
    if stage.scope == "change_department" and held == {Role.DEPARTMENT_HEAD}:
        return filer.department == department
    return True


def resolve_stages(
    stages: Sequence[StageSpec],
    filer: Principal,
    *,
    custodian: str | None,
    department: str,
) -> list[dict[str, Any]]:
    """The chain as stored with the request: a stage the filer could sign (or a
    custodian stage without a custodian) goes to its configured alternate."""
    out: list[dict[str, Any]] = []
    for stage in stages:
        snap = stage.as_dict()
        if _could_sign(stage, filer, custodian, department):
            if not stage.alternate_roles:
                if stage.custodian:
                    raise InvalidInput(
                        "this change needs the archive's custodian, and none is named"
                        if custodian is None
                        else "you are the archive's custodian and cannot sign your own change"
                    )
                # Otherwise another holder of the stage's role signs it.
            else:
                snap.update(
                    roles=list(stage.alternate_roles),
                    label=stage.alternate_label,
                    custodian=False,
                    scope="any",
                    alternate_for=stage.name,
                )
                # The alternate is now the stage's usual signer; it has none of its own.
                snap.pop("alternate_roles", None)
                snap.pop("alternate_label", None)
        out.append(snap)
    return out


def check_finishable(
    session: Session,
    stages: list[dict[str, Any]],
    *,
    filer: str,
    custodian: str | None,
    subjects: Iterable[str],
    department: str,
) -> None:
    """Refuse a chain that no one could finish, naming the stage and the fix.

    The same search as an access request's (``policies.reach``): stages kept as
    configured may still fall to their alternates when no usual signer is left
    (the archive's only department head gains from the change)."""
    blocked = reach.unfinishable_stage(
        session, stages, filer, custodian, department, excluded=subjects
    )
    if blocked is not None:
        raise Unfinishable(blocked.message("this change"), stage=blocked.name)


def file_change(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    kind: RequestKind,
    change: dict[str, Any],
    reason: str,
    now: datetime,
    archives: Sequence[str] = (),
    classification: str = "internal",
    custodian: str | None = None,
) -> AccessRequest:
    """File a change request; ``change`` holds ``department`` and ``subjects``."""
    spec = desk.chains.kind(kind.value)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a change states its reason")
    if len(reason) > 2000:
        raise InvalidInput("the reason is longer than 2000 characters")
    if not spec.filers & filer.roles:
        raise Refused(
            f"none of your roles may file a {kind.value} request "
            f"(filers: {', '.join(sorted(spec.filers))})",
            rule="filer",
        )
    department = str(change.get("department", ""))
    subjects = sorted(interested(change))
    stages = resolve_stages(
        spec.stages_for(classification=classification, external=False),
        filer,
        custodian=custodian,
        department=department,
    )
    check_finishable(
        session,
        stages,
        filer=filer.username,
        custodian=custodian,
        subjects=subjects,
        department=department,
    )
    req = AccessRequest(
        uid=f"R-{secrets.token_hex(5).upper()}",
        kind=kind.value,
        requester=filer.username,
        requester_department=filer.department,
        requester_external=False,
        archives=list(archives),
        classification=classification,
        custodian=custodian,
        purpose=PURPOSE,
        reason=reason,
        requested_groups=[],
        groups=[],
        stages=stages,
        next_stage=0,
        state=RequestState.PENDING.value,
        version=1,
        created_at=now,
        expires_at=now + timedelta(hours=desk.chains.pending_expiry_hours),
        change=change,
    )
    session.add(req)
    session.flush()
    desk.audit.append(
        session,
        AuditEvent(
            action=AuditAction.REQUEST_FILE,
            actor=actor_of(filer),
            archives=tuple(req.archives),
            purpose=PURPOSE,
            reason=reason,
            detail={
                "request": req.uid,
                "kind": req.kind,
                "classification": classification,
                "stages": [s["name"] for s in stages],
                "change": change,
            },
        ),
    )
    desk.notify(
        session,
        filer.username,
        req.uid,
        NotificationEvent.FILED,
        f"{kind.value} request {req.uid} filed; it needs "
        f"{', '.join(s['label'] for s in stages)}; it applies at the last signature",
        now,
    )
    reach.tell_next_signers(desk, session, req, now)  # whoever may sign its first stage
    return req


# -- signing --------------------------------------------------------------------------


def interested(change: dict[str, Any]) -> set[str]:
    """Who never signs a change: those it gives access (``subjects``) and those it is
    about (``parties``: a leaver signs nothing of their own handover)."""
    return {*change.get("subjects", ()), *change.get("parties", ())}


def signer_problem(
    req: AccessRequest, signer: Principal, stage: dict[str, Any]
) -> tuple[str, str] | None:
    """The change-specific reason ``signer`` may not sign ``stage``, as (rule, message)."""
    if not is_change(req.kind):
        return None
    change = req.change or {}
    if signer.username in change.get("subjects", ()):
        return (
            "beneficiary",
            f"request {req.uid} gives you access; someone else signs it",
        )
    if signer.username in change.get("parties", ()):
        return (
            "party",
            f"request {req.uid} is about you; someone else signs it",
        )
    if stage.get("scope") == "change_department":
        others = set(stage.get("roles", ())) - {Role.DEPARTMENT_HEAD}
        department = change.get("department", "")
        if not (others & signer.roles) and (
            not signer.department or signer.department != department
        ):
            return (
                "wrong-department",
                f"a department head signs only for their own department; request "
                f"{req.uid} concerns {department or 'no department'}",
            )
    return None


def stale(req: AccessRequest, what: str) -> Refused:
    """The vault changed since the request was filed: the signature cannot apply it."""
    return Refused(
        f"{what} changed since request {req.uid} was filed; deny it and file a new one",
        rule="stale",
    )


def next_label(req: AccessRequest) -> str | None:
    """Who signs next, in words (None once decided)."""
    if req.state != RequestState.PENDING or req.next_stage >= len(req.stages):
        return None
    stage = req.stages[req.next_stage]
    label = str(stage.get("label", ""))
    if stage.get("custodian") and req.custodian:
        label = f"{label} ({req.custodian})"
    return label
