"""Containment from a leak case (Art 27 "remedial action at once"): one audited step.

A handler (``handle_leaks``: the information supervisor or the customer-service
manager) names an account on an open case, and in one transaction the vault

1. ends the account's web sessions and revokes its API tokens (the token
   generation moves on, so its next request on any worker is a 401);
2. revokes its active grants (stamped with the next grant revision, so every
   worker's policy engine drops them at its next sync) and withdraws its pending
   requests, so no signature given afterwards hands it a new grant;
3. recalls its open loans (``Loans.recall``: due now, the keepers told);
4. if asked, disables the account (it cannot sign in again until re-enabled).

Each of these is an event of kind ``containment`` on the case (counts and
identifiers, the handler's reason sealed) and an audit entry; both handlers are
told. It only ever removes access: nothing here gives anyone a grant, a role or
an archive, and re-enabling a disabled account brings none of its grants back.

Who may be contained: any account that exists, administrators included. An
administrator reads no content, but a leak can run through what an
administrator does (creating accounts, issuing password resets), and cutting
an account off is never a way to read more; the operator can always re-enable
an administrator from the command line. Refused: an unknown account (404), the
handler themself (403: the other handler contains them, and it would end the
session the handler is acting from), and a closed case (422).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies.decision import Principal
from policies.directory import disable_user, revoke_tokens
from policies.errors import InvalidInput, NotFound, Refused
from policies.leaks import CaseState, LeakCases
from policies.loans import Loans
from policies.revocation import end_web_sessions, revoke_grants, withdraw_requests
from policies.roles import NotificationEvent
from vault.models import User


@dataclass
class Contained:
    """What one containment did (identifiers and counts only)."""

    case: str
    account: str
    sessions_ended: int = 0
    token_generation: int = 0
    grants_ended: list[str] = field(default_factory=list)
    requests_withdrawn: list[str] = field(default_factory=list)
    loans_recalled: list[str] = field(default_factory=list)
    user_disabled: bool = False
    was_disabled: bool = False


class Containment:
    """Cuts one account off from a case, in the caller's one transaction."""

    def __init__(self, leaks: LeakCases, loans: Loans) -> None:
        self.leaks = leaks
        self.loans = loans

    def contain(
        self,
        session: Session,
        uid: str,
        principal: Principal,
        actor: Actor,
        now: datetime,
        *,
        account: str,
        disable: bool,
        reason: str,
    ) -> dict[str, Any]:
        case = self.leaks._handler_case(session, uid, principal, actor, now)
        if case.state == CaseState.CLOSED:
            raise InvalidInput("the case is closed: open a new one to contain an account")
        if not reason.strip():
            raise InvalidInput("say why (reason)")
        if account == principal.username:
            raise Refused(
                "you cannot contain your own account: the other handler does it",
                rule="contain-self",
                event=AuditEvent(
                    action=AuditAction.LEAK_CHANGE,
                    actor=actor,
                    outcome=Outcome.DENIED,
                    detail={"case": case.uid, "kind": "containment", "account": account},
                ),
            )
        user = session.exec(select(User).where(User.username == account)).first()
        if user is None:
            raise NotFound(f"no account {account[:64]!r}")
        done = Contained(case=case.uid, account=account, was_disabled=bool(user.disabled))
        done.sessions_ended = end_web_sessions(session, account, now)
        done.token_generation = revoke_tokens(session, account)
        done.grants_ended = revoke_grants(session, account, now)
        done.requests_withdrawn = withdraw_requests(session, account, now, by=principal.username)
        done.loans_recalled = self.loans.recall(
            session, account, by=actor, case_uid=case.uid, now=now
        )
        if disable and not user.disabled:
            disable_user(session, account, audit=self.leaks.desk.audit, actor=actor)
            done.user_disabled = True
        steps: list[tuple[str, dict[str, Any]]] = [
            ("sessions_ended", {"count": done.sessions_ended}),
            ("tokens_revoked", {"generation": done.token_generation}),
            (
                "grants_ended",
                {
                    "count": len(done.grants_ended),
                    "grants": done.grants_ended,
                    "requests_withdrawn": done.requests_withdrawn,
                },
            ),
            ("loans_recalled", {"count": len(done.loans_recalled), "loans": done.loans_recalled}),
        ]
        if disable:
            steps.append(("user_disabled", {"already": done.was_disabled}))
        for action, detail in steps:
            self.leaks.record(
                session,
                case,
                actor,
                now,
                kind="containment",
                detail={"action": action, "account": account} | detail,
                reason=reason,
            )
        self.leaks.tell_handlers(session, case, NotificationEvent.LEAK_CHANGED, now)
        return asdict(done)
