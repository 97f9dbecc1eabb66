"""Containment, notification duties and evidence of a leak case, as pages (Art 27, PIPL Art 57).

The forms on ``/ui/leaks/{uid}`` post here; each handler checks its input with
the API's own body model (``api.routers.leak_duties`` / ``leak_evidence``) and
calls the service the API route calls, so a page refuses exactly what the API
refuses (compliance reads but acts on nothing: the service says 403). The notice
page and the evidence pages read through the same services as
``GET /leaks/{uid}/notice`` and ``/evidence/{ev}``: identifiers and group names
only, never what anyone typed into the report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlmodel import Session
from starlette.datastructures import FormData

from api.routers.leak_duties import ContainIn, DutiesIn, NotifiedIn
from api.routers.leak_evidence import EvidenceIn
from api.web.i18n import BEIJING
from api.web.kit import Form, Page, SignedIn, field_text
from api.web.labels import N_
from api.web.leak_pages import CASE_UID, case_page
from policies import leaks
from policies.errors import InvalidInput
from policies.leak_evidence_check import EvidenceQuery

router = APIRouter()
EVIDENCE_UID = r"^EV-[0-9A-F]{10}$"
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
# The form fields' names as the pages label them (for "check this field" messages).
FIELDS = {
    "account": N_("Account"),
    "reason": N_("Why"),
    "customers": N_("Number of customers"),
    "groups": N_("Field groups"),
    "archives": N_("Archives"),
    "cause": N_("Cause"),
    "pi_affected": N_("Personal information affected"),
    "whom": N_("Who was told"),
    "reference": N_("Reference"),
    "kind": N_("Evidence about"),
    "since": N_("From (Beijing time)"),
    "until": N_("To (Beijing time)"),
}


def _checked(page: Page, model: type[M], values: dict[str, Any]) -> M:
    """``values`` checked by the API's body model; a bad field is named, never echoed."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        loc = (exc.errors()[0].get("loc") or ("",))[0]
        label = page._(FIELDS.get(str(loc), str(loc)))
        raise _Bad(page._("%(field)s: this value is not valid.", field=label)) from None


class _Bad(Exception):
    """Bad form input: the case page again, 422, with the message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _numbers(text: str) -> list[str]:
    return text.replace(",", " ").split()


def _when(page: Page, form: FormData, name: str, label: str) -> datetime | None:
    """A time typed in Beijing time (as on ``/ui/audit``), in UTC; bad input is a 422."""
    raw = field_text(form, name, limit=32)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=BEIJING)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Bad(
            page._("%(field)s: give a date and time such as 2026-03-01 09:30.", field=label)
        ) from None


def _act(page: Page, uid: str, work: Callable[[], R], flash: Callable[[R], str]) -> Response:
    """Run one form's work; bad input or a service's InvalidInput → the case page, 422."""
    try:
        result = work()
    except (_Bad, InvalidInput) as exc:
        return case_page(page, uid, status=422, error=exc.message)
    return page.redirect(f"/ui/leaks/{uid}", flash=flash(result))


@router.post("/ui/leaks/{uid}/contain")
def contain(page: SignedIn, form: Form, uid: str = Path(pattern=CASE_UID)) -> Response:
    caller = page.me()
    services = page.services

    def work() -> dict[str, Any]:
        body = _checked(
            page,
            ContainIn,
            {
                "account": field_text(form, "account", limit=64),
                "disable": form.get("disable") == "yes",
                "reason": field_text(form, "reason", limit=leaks.MAX_TEXT),
            },
        )
        return services.in_transaction(
            lambda s: services.containment.contain(
                s,
                uid,
                caller.principal,
                caller.actor,
                services.clock(),
                account=body.account,
                disable=body.disable,
                reason=body.reason,
            )
        )

    def flash(done: dict[str, Any]) -> str:
        text = page._(
            "Contained: %(sessions)s sessions ended, tokens revoked, %(grants)s grants ended, "
            "%(requests)s requests withdrawn, %(loans)s loans recalled.",
            sessions=done["sessions_ended"],
            grants=len(done["grants_ended"]),
            requests=len(done["requests_withdrawn"]),
            loans=len(done["loans_recalled"]),
        )
        return text + (" " + page._("The account was disabled.") if done["user_disabled"] else "")

    return _act(page, uid, work, flash)


@router.post("/ui/leaks/{uid}/duties")
def record_duties(page: SignedIn, form: Form, uid: str = Path(pattern=CASE_UID)) -> Response:
    caller = page.me()
    services = page.services

    def work() -> None:
        affected = field_text(form, "pi_affected", limit=8)
        customers = field_text(form, "customers", limit=12) or "0"
        body = _checked(
            page,
            DutiesIn,
            {
                "pi_affected": {"yes": True, "no": False}.get(affected, affected),
                "customers": customers,
                "groups": [g for g in form.getlist("groups") if isinstance(g, str)],
                "archives": _numbers(field_text(form, "archives", limit=leaks.MAX_TEXT)),
                "cause": field_text(form, "cause", limit=32) or "under_investigation",
                "reason": field_text(form, "reason", limit=leaks.MAX_TEXT),
            },
        )
        assessment = body.assessment()
        services.in_transaction(
            lambda s: services.leak_duties.assess(
                s, uid, caller.principal, caller.actor, services.clock(), assessment
            )
        )

    return _act(page, uid, work, lambda _r: page._("The duties were recorded."))


@router.post("/ui/leaks/{uid}/notified")
def record_notice(page: SignedIn, form: Form, uid: str = Path(pattern=CASE_UID)) -> Response:
    caller = page.me()
    services = page.services

    def work() -> None:
        body = _checked(
            page,
            NotifiedIn,
            {
                "whom": field_text(form, "whom", limit=16),
                "reference": field_text(form, "reference", limit=64) or None,
                "reason": field_text(form, "reason", limit=leaks.MAX_TEXT),
            },
        )
        services.in_transaction(
            lambda s: services.leak_duties.notified(
                s,
                uid,
                caller.principal,
                caller.actor,
                services.clock(),
                whom=body.whom,
                at=body.at,
                customers=body.customers,
                reference=body.reference or "",
                reason=body.reason,
            )
        )

    return _act(page, uid, work, lambda _r: page._("The notice was recorded."))


@router.post("/ui/leaks/{uid}/evidence")
def attach_evidence(page: SignedIn, form: Form, uid: str = Path(pattern=CASE_UID)) -> Response:
    caller = page.me()
    services = page.services

    def work() -> dict[str, Any]:
        kind = field_text(form, "kind", limit=16)
        body = _checked(
            page,
            EvidenceIn,
            {
                "kind": kind,
                "since": _when(page, form, "since", page._("From (Beijing time)")),
                "until": _when(page, form, "until", page._("To (Beijing time)")),
                "archives": _numbers(field_text(form, "archives", limit=leaks.MAX_TEXT))
                if kind == "archives"
                else [],
                "account": (field_text(form, "account", limit=64) or None)
                if kind == "account"
                else None,
            },
        )
        query = EvidenceQuery(
            kind=body.kind,
            since=body.since,
            until=body.until,
            archives=tuple(body.archives),
            account=body.account,
        )
        return services.evidence.attach(caller.principal, caller.actor, uid, query)

    return _act(
        page,
        uid,
        work,
        lambda ev: page._(
            "Evidence %(no)s attached: %(n)s audit entries.", no=ev["uid"], n=len(ev["items"])
        ),
    )


@router.get("/ui/leaks/{uid}/notice")
def notice(page: SignedIn, uid: str = Path(pattern=CASE_UID)) -> Response:
    caller = page.me()
    services = page.services

    def run(session: Session) -> tuple[dict[str, Any], dict[str, Any]]:
        case, duty = services.leak_duties.read(
            session, uid, caller.principal, caller.actor, services.clock()
        )
        return services.leak_duties.notice(session, case, duty), services.leak_duties.affected(duty)

    text, affected = services.in_transaction(run)
    return page.render("leaks_notice.html", uid=uid, notice=text, affected=affected)


@router.get("/ui/leaks/{uid}/evidence/{ev}")
def evidence(
    page: SignedIn, uid: str = Path(pattern=CASE_UID), ev: str = Path(pattern=EVIDENCE_UID)
) -> Response:
    caller = page.me()
    services = page.services
    record = services.evidence.read(caller.principal, caller.actor, uid, ev)
    check = services.evidence.check(caller.principal, caller.actor, uid, ev)
    return page.render("leaks_evidence.html", uid=uid, ev=record, check=check)
