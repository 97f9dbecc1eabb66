"""Leak reports and cases as pages (Art 27), on the same ``LeakCases`` service as ``/leaks``.

Anyone signed in files a report here; the information supervisor and the
customer-service manager move cases on and record what was done; compliance
reads every case; a reporter sees the state of their own reports. The text of a
report is shown only to those the service shows it to.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from sqlmodel import Session

from api.web.i18n import BEIJING
from api.web.kit import Form, Page, SignedIn, field_text
from api.web.labels import N_
from policies import leak_duties, leaks
from policies.errors import InvalidInput
from policies.leak_duties import clocks
from policies.leaks import Access, LeakReport

router = APIRouter()
CASE_UID = r"^LK-[0-9A-F]{10}$"
PAGE = 50
STATES = ("reported", "investigating", "contained", "closed")
# The causes of policies.leak_duties.CAUSES, as the pages name them.
CAUSE_LABELS = {
    "under_investigation": N_("Under investigation"),
    "insider_disclosure": N_("Disclosure by a member of staff"),
    "unauthorised_access": N_("Access without authorisation"),
    "lost_material": N_("Material lost"),
    "misdirected_transmission": N_("Material sent to the wrong recipient"),
    "external_attack": N_("Attack from outside"),
    "system_fault": N_("System fault"),
    "other": N_("Other cause"),
}


def _form_page(page: Page, status: int = 200, error: str = "", values: Any = None) -> Response:
    return page.render(
        "leaks_new.html",
        status=status,
        error=error,
        values=values or {},
        channels=leaks.CHANNELS,
    )


@router.get("/ui/leaks")
def leak_list(
    page: SignedIn,
    state: str = Query("", max_length=16),
    offset: int = Query(0, ge=0, le=10**6),
) -> Response:
    caller = page.me()
    services = page.services
    now = services.clock()
    chosen = state if state in STATES else None
    full = services.leaks.may_list_all(caller.principal, now)
    with Session(services.engine) as session:
        rows, total = services.leaks.page(
            session, caller.principal, now, state=chosen, limit=PAGE, offset=offset
        )
        duties = (
            services.leak_duties.of_cases(session, [c.id for c in rows if c.id]) if full else {}
        )
    overdue = {c.uid for c in rows if full and clocks(duties.get(c.id or 0), now)["overdue"]}
    return page.render(
        "leaks_list.html",
        cases=rows,
        total=total,
        limit=PAGE,
        offset=offset,
        state=chosen or "",
        states=STATES,
        full=full,
        overdue=overdue,
    )


@router.get("/ui/leaks/new")
def leak_form(page: SignedIn) -> Response:
    page.me()
    return _form_page(page)


def _noticed(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        local = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("noticed at: not a date and time") from None
    return local.replace(tzinfo=BEIJING) if local.tzinfo is None else local


@router.post("/ui/leaks/new")
def file_leak(page: SignedIn, form: Form) -> Response:
    caller = page.me()
    services = page.services
    values = {
        name: field_text(form, name, limit=leaks.MAX_TEXT)
        for name in ("what_seen", "how_found", "remedial_action", "archives", "noticed_at")
    }
    values["channel"] = field_text(form, "channel", limit=32) or "unknown"
    if not values["what_seen"]:
        return _form_page(page, 422, page._("Say what was seen."), values)
    try:
        report = LeakReport(
            what_seen=values["what_seen"],
            noticed_at=_noticed(values["noticed_at"]),
            how_found=values["how_found"],
            archives=tuple(values["archives"].replace(",", " ").split()),
            channel=values["channel"],
            remedial_action=values["remedial_action"],
        )
        case = services.in_transaction(
            lambda s: services.leaks.file_report(
                s, caller.principal, caller.actor, report, services.clock()
            )
        )
    except InvalidInput as exc:
        return _form_page(page, 422, exc.message, values)
    return page.redirect(
        f"/ui/leaks/{case.uid}",
        flash=page._("Report %(no)s filed. The handlers have been told.", no=case.uid),
    )


def case_page(page: Page, uid: str, *, status: int = 200, error: str = "") -> Response:
    """The case as its caller may see it; handlers and compliance also its duties,
    clocks and evidence (each read through its service, audited)."""
    caller = page.me()
    services = page.services
    now = services.clock()

    def run(session: Session) -> tuple[dict[str, Any], Access, dict[str, Any] | None]:
        case, access = services.leaks.load(session, uid, caller.principal, caller.actor, now)
        duties = None
        if access != Access.REPORTER:
            duties = services.leak_duties.view(services.leak_duties.of(session, case), now)
        return services.leaks.view(session, case, access), access, duties

    view, access, duties = services.in_transaction(run)
    evidence = (
        services.evidence.index(caller.principal, caller.actor, uid)
        if access != Access.REPORTER
        else []
    )
    since = now.astimezone(BEIJING) - timedelta(days=30)
    until = now.astimezone(BEIJING) + timedelta(minutes=1)
    return page.render(
        "leaks_case.html",
        status=status,
        error=error,
        case=view,
        access=access.value,
        moves=leaks.MOVES.get(view["state"], ()),
        outcomes=leaks.OUTCOMES,
        actions=leaks.ACTIONS,
        duties=duties,
        evidence=evidence,
        causes=[(c, CAUSE_LABELS.get(c, c)) for c in leak_duties.CAUSES],
        groups=list(services.store.schema.groups),
        default_since=since.strftime("%Y-%m-%dT%H:%M"),
        default_until=until.strftime("%Y-%m-%dT%H:%M"),
    )


@router.get("/ui/leaks/{uid}")
def leak_case(page: SignedIn, uid: str = Path(pattern=CASE_UID)) -> Response:
    return case_page(page, uid)


@router.post("/ui/leaks/{uid}/state")
def move_leak(page: SignedIn, form: Form, uid: str = Path(pattern=CASE_UID)) -> Response:
    caller = page.me()
    services = page.services
    services.in_transaction(
        lambda s: services.leaks.move(
            s,
            uid,
            caller.principal,
            caller.actor,
            services.clock(),
            to_state=field_text(form, "state", limit=16),
            reason=field_text(form, "reason", limit=leaks.MAX_TEXT),
            outcome=field_text(form, "outcome", limit=16),
        )
    )
    return page.redirect(f"/ui/leaks/{uid}", flash=page._("The case was moved on."))


@router.post("/ui/leaks/{uid}/actions")
def record_leak_action(page: SignedIn, form: Form, uid: str = Path(pattern=CASE_UID)) -> Response:
    caller = page.me()
    services = page.services
    services.in_transaction(
        lambda s: services.leaks.act(
            s,
            uid,
            caller.principal,
            caller.actor,
            services.clock(),
            action=field_text(form, "action", limit=32),
            reason=field_text(form, "reason", limit=leaks.MAX_TEXT),
        )
    )
    return page.redirect(f"/ui/leaks/{uid}", flash=page._("The action was recorded."))
