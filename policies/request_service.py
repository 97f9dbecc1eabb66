"""Access requests and the loan register as the API serves them: one call per route.

Each method opens its own unit of work (a read session, or a transaction through
the caller's ``run``, which audits a refused step in a transaction of its own),
checks that the caller may know the request or loan line exists (``visibility``:
anything else is answered as an unknown id), and calls the workflow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from audit.events import Actor, AuditAction, AuditEvent, AuditSink, Outcome
from policies import rechain
from policies.decision import Principal
from policies.errors import Refused
from policies.loans import LoanView, loan_status
from policies.models import AccessRequest, LoanEntry, Notification, RequestSignature
from policies.request_facts import facts_for
from policies.roles import Action, LoanState, Role
from policies.visibility import (
    LOAN_REGISTER_READERS,
    REQUEST_READERS,
    RequestQuery,
    newest_notifications,
    request_levels,
    requests_page,
    search_requests,
    signatures,
    visible_loan,
    visible_request,
)
from policies.workflow import Workflow

T = TypeVar("T")
# Who lists the customer list when no policy engine is wired in (policy.csv's list lines).
_LISTERS = {
    Role.SALESPERSON,
    Role.DEPARTMENT_HEAD,
    Role.INFORMATION_OFFICER,
    Role.INFO_SUPERVISOR,
    Role.CS_MANAGER,
    Role.GENERAL_MANAGER,
    Role.COMPLIANCE,
}


class Runner(Protocol):
    """Runs one step in one transaction; a refused step's audit event is still
    appended, in a transaction of its own."""

    def __call__(self, fn: Callable[[Session], T], /) -> T: ...


class Caller(Protocol):
    """Who calls: the principal for decisions and the actor for audit entries."""

    @property
    def principal(self) -> Principal: ...
    @property
    def actor(self) -> Actor: ...
    @property
    def username(self) -> str: ...


@dataclass(frozen=True, slots=True)
class NewRequest:
    """What a filer states (Art 18.1)."""

    kind: str
    purpose: str
    reason: str
    archives: Sequence[str] = ()
    groups: Sequence[str] = ()
    hours: int | None = None
    material: str = ""
    copies: int = 0
    recipient: str = ""
    credential_ref: str | None = None
    export_format: str | None = None
    scope: str | None = None
    items: Sequence[str] | None = None


class RequestService:
    """The requests and loans routes' one service."""

    def __init__(
        self,
        *,
        engine: Engine,
        workflow: Workflow,
        audit: AuditSink,
        run: Runner,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._workflow = workflow
        self._audit = audit
        self._run = run
        self._clock = clock

    # -- requests ---------------------------------------------------------------------
    def file(self, caller: Caller, new: NewRequest) -> AccessRequest:
        return self._run(
            lambda s: self._workflow.filing.file(
                s,
                caller.principal,
                kind=new.kind,
                purpose=new.purpose,
                reason=new.reason,
                now=self._clock(),
                archives=new.archives,
                groups=new.groups,
                hours=new.hours,
                material=new.material,
                copies=new.copies,
                recipient=new.recipient,
                credential_ref=new.credential_ref,
                export_format=new.export_format,
                scope=new.scope,
                items=new.items,
            )
        )

    @property
    def purposes(self) -> Mapping[str, str]:
        """The configured purposes (``chains.toml``) with their labels."""
        return self._workflow.chains.purposes

    def facts(self, caller: Caller, requests: Sequence[AccessRequest]) -> dict[str, dict[str, Any]]:
        """What the signers judge on, by request id (``policies.request_facts``), for
        requests the caller was shown: check visibility first. A caller the policy
        does not let list the customer list (a visitor) sees of each archive only its
        number and marking, as ``GET /customers`` would tell them nothing either."""
        may_list = self._workflow.may(caller.principal, Action.LIST, _LISTERS, self._clock())
        with Session(self._engine) as session:
            return facts_for(session, requests, self._workflow.chains.purposes, may_list=may_list)

    def search(self, caller: Caller, query: RequestQuery) -> tuple[list[AccessRequest], int]:
        """Every request, filtered, for compliance and the information supervisor. The
        search is an audit entry committed before anything is shown; a refused one is
        audited as denied (``run`` appends the refusal's event on its own)."""

        def run(session: Session) -> tuple[list[AccessRequest], int]:
            if not REQUEST_READERS & caller.principal.roles:
                message = (
                    "only compliance and the information supervisor search all requests; "
                    "role=mine lists yours, role=to_approve those you may sign now"
                )
                raise Refused(
                    message,
                    rule="request-readers",
                    event=AuditEvent(
                        action=AuditAction.REQUEST_LIST,
                        actor=caller.actor,
                        outcome=Outcome.DENIED,
                        reason=message,
                        detail={"filters": query.filters(), "rule": "request-readers"},
                    ),
                )
            items, total = search_requests(session, query)
            self._audit.append(
                session,
                AuditEvent(
                    action=AuditAction.REQUEST_LIST,
                    actor=caller.actor,
                    detail={
                        "filters": query.filters(),
                        "offset": query.offset,
                        "limit": query.limit,
                        "count": len(items),
                        "total": total,
                    },
                ),
            )
            return items, total

        return self._run(run)

    def mine_page(
        self, caller: Caller, *, state: str | None, offset: int, limit: int
    ) -> tuple[list[AccessRequest], int]:
        """One page of the caller's own requests (of one state if given) and their count."""
        with Session(self._engine) as session:
            return requests_page(session, caller.username, state=state, offset=offset, limit=limit)

    def my_notifications(self, caller: Caller, *, newest: int) -> list[Notification]:
        """The caller's ``newest`` notifications, oldest of them first."""
        with Session(self._engine) as session:
            return newest_notifications(session, caller.username, newest)

    def queue(self, caller: Caller) -> list[AccessRequest]:
        """The pending requests whose next stage the caller may sign now."""
        with Session(self._engine) as session:
            return self._workflow.signing.queue_for(session, caller.principal, now=self._clock())

    def show(self, caller: Caller, uid: str) -> tuple[AccessRequest, list[RequestSignature]]:
        """One request with its signatures; one the caller may not see is an unknown id."""
        with Session(self._engine) as session:
            req = visible_request(
                session, self._workflow.signing, caller.principal, uid, now=self._clock()
            )
            return req, signatures(session, uid)

    def approve(
        self,
        caller: Caller,
        uid: str,
        *,
        groups: Sequence[str] | None,
        hours: int | None,
        note: str,
        expected_version: int | None,
        copies: int | None = None,
    ) -> AccessRequest:
        """Sign the next stage. The chain is first re-derived from the archives'
        current state in a transaction of its own, so a change (a raised
        classification, a new custodian) is recorded and told to the requester even
        when it turns this approver away."""
        self._on_request(
            caller,
            uid,
            AuditAction.REQUEST_APPROVE,
            lambda s: rechain.refresh_uid(
                s,
                uid,
                self._workflow,
                actor=caller.actor,
                now=self._clock(),
            ),
        )
        return self._on_request(
            caller,
            uid,
            AuditAction.REQUEST_APPROVE,
            lambda s: self._workflow.signing.approve(
                s,
                uid,
                caller.principal,
                now=self._clock(),
                groups=groups,
                hours=hours,
                note=note,
                expected_version=expected_version,
                copies=copies,
            ),
        )

    def deny(
        self, caller: Caller, uid: str, *, reason: str, expected_version: int | None
    ) -> AccessRequest:
        """Deny at the current stage, after re-deriving the chain as approving does, so
        a former custodian is no longer the one who decides."""
        # A chain that can no longer be finished (recorded and audited as such) is
        # still denied: a denial never widens access.
        with contextlib.suppress(Refused):
            self._on_request(
                caller,
                uid,
                AuditAction.REQUEST_DENY,
                lambda s: rechain.refresh_uid(
                    s, uid, self._workflow, actor=caller.actor, now=self._clock()
                ),
            )
        return self._on_request(
            caller,
            uid,
            AuditAction.REQUEST_DENY,
            lambda s: self._workflow.signing.deny(
                s,
                uid,
                caller.principal,
                reason=reason,
                now=self._clock(),
                expected_version=expected_version,
            ),
        )

    def withdraw(self, caller: Caller, uid: str) -> AccessRequest:
        return self._on_request(
            caller,
            uid,
            AuditAction.REQUEST_WITHDRAW,
            lambda s: self._workflow.signing.withdraw(s, uid, caller.principal, now=self._clock()),
        )

    # -- the loan register --------------------------------------------------------------
    def loans(self, caller: Caller, *, overdue: bool, open_only: bool) -> list[LoanView]:
        """The register; keepers see every line, borrowers their own."""
        keeper = bool(LOAN_REGISTER_READERS & caller.principal.roles)
        return self._loan_lines(caller, overdue=overdue, open_only=open_only, own=not keeper)

    def own_loans(self, caller: Caller) -> list[tuple[LoanView, str | None]]:
        """The caller's own register lines, each with its request's marking (the highest
        classification among its archives), whatever else the caller keeps."""
        views = self._loan_lines(caller, overdue=False, open_only=False, own=True)
        ids = {v.entry.request_id for v in views}
        with Session(self._engine) as session:
            levels = request_levels(session, caller.username, ids)
        return [(v, levels.get(v.entry.request_id)) for v in views]

    def _loan_lines(
        self, caller: Caller, *, overdue: bool, open_only: bool, own: bool
    ) -> list[LoanView]:
        with Session(self._engine) as session:
            views = self._workflow.loans.register(
                session,
                now=self._clock(),
                open_only=open_only,
                borrower=caller.username if own else None,
            )
        return [v for v in views if not overdue or v.status is LoanState.OVERDUE]

    def confirm_loan(self, caller: Caller, uid: str) -> LoanView:
        """The borrower confirms the register line (Art 19.5)."""
        entry = self._on_loan(
            caller,
            uid,
            AuditAction.LOAN,
            lambda s: self._workflow.loans.confirm(s, uid, caller.principal, now=self._clock()),
        )
        return LoanView(entry, loan_status(entry, self._clock()))

    def return_loan(self, caller: Caller, uid: str) -> LoanView:
        """Close the register line (Art 20): the access ends now and for good."""
        entry = self._on_loan(
            caller,
            uid,
            AuditAction.LOAN_RETURN,
            lambda s: self._workflow.loans.close(s, uid, caller.principal, now=self._clock()),
        )
        return LoanView(entry, loan_status(entry, self._clock()))

    # -- visibility first -----------------------------------------------------------------
    def _on_request(
        self, caller: Caller, uid: str, attempt: AuditAction, step: Callable[[Session], T]
    ) -> T:
        """Run a step on a request the caller may see; any other id gets the unknown
        id's 404 (and the attempt is audited as denied)."""

        def run(session: Session) -> T:
            visible_request(
                session,
                self._workflow.signing,
                caller.principal,
                uid,
                now=self._clock(),
                attempt=attempt,
            )
            return step(session)

        return self._run(run)

    def _on_loan(
        self,
        caller: Caller,
        uid: str,
        attempt: AuditAction,
        step: Callable[[Session], LoanEntry],
    ) -> LoanEntry:
        def run(session: Session) -> LoanEntry:
            visible_loan(session, caller.principal, uid, attempt=attempt)
            return step(session)

        return self._run(run)
