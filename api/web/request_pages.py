"""Filing a request, my requests, one request's page, and withdrawing it.

The filing form is checked with the API's ``RequestIn`` and filed through
``RequestService.file`` (what ``POST /requests`` calls), so a refusal is the
API's: a kind the caller may not file (403), a chain nobody could finish (409,
with the fix the service names), bad input (422). Each request is shown with the
facts ``GET /requests/{uid}`` returns; one the caller may not see is the API's 404.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.datastructures import FormData

from api.errors import policy_status
from api.routers.requests import RequestIn, StateName, Uid, new_request
from api.web import request_kit as kit
from api.web.kit import Form, Page, SignedIn, field_text
from policies.errors import PolicyError
from policies.roles import RequestKind
from vault.archives import REPORT_ITEMS

router = APIRouter()
PAGE = 20
FILED_KINDS = ("view", "loan", "copy", "external", "report", "destroy")
ARCHIVE_LIST = re.compile(r"[\s,;，；]+")
ArchivesQuery = Annotated[str, Query(max_length=2000, pattern=r"^[A-Z0-9\-,\s]*$")]


def _values(form: FormData, page: Page) -> dict[str, Any]:
    """The form as the API's body: only the fields the chosen kind states."""
    kind = field_text(form, "kind", limit=40)
    values: dict[str, Any] = {
        "kind": kind,
        "archives": [
            a for a in ARCHIVE_LIST.split(field_text(form, "archives", limit=20_000)) if a
        ],
        "groups": [g for g in form.getlist("groups") if isinstance(g, str)],
        "purpose": field_text(form, "purpose", limit=40),
        "reason": field_text(form, "reason", limit=2001),
    }
    wanted = {
        "hours": True,
        "material": kind == RequestKind.LOAN,
        "copies": kind in ("loan", "copy", "external"),
        "format": kind in ("copy", "external"),
        "recipient": kind == RequestKind.EXTERNAL,
        "scope": kind == RequestKind.REPORT,
        "credential_ref": page.me().principal.external,
    }
    for name, stated in wanted.items():
        text = field_text(form, name, limit=300)
        if stated and text:
            values[name] = text
    items = [i for i in form.getlist("items") if isinstance(i, str)]
    if kind == RequestKind.REPORT and items:
        values["items"] = items
    return values


def _form(
    page: Page,
    values: dict[str, Any],
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    problem: str = "",
) -> Response:
    requests = kit.service(page)
    principal = page.me().principal
    kinds = [
        k for k in FILED_KINDS if page.services.workflow.chains.kind(k).filers & principal.roles
    ]
    return page.render(
        "requests_new.html",
        status=status,
        values=values,
        errors=errors or {},
        problem=problem or (kit.error_summary(page, errors) if errors else ""),
        kinds=kinds,
        purposes=requests.purposes,
        known_groups=page.services.workflow.known_groups,
        report_items=REPORT_ITEMS,
        external=principal.external,
    )


@router.get("/ui/requests/new")
def new_request_form(
    page: SignedIn,
    archives: ArchivesQuery = "",
    kind: Literal["view", "loan", "copy", "external", "report", "destroy"] = "view",
) -> Response:
    page.me()
    numbers = [a for a in ARCHIVE_LIST.split(archives) if a]
    return _form(page, {"kind": kind, "archives": numbers, "groups": []})


@router.post("/ui/requests/new")
def file_request(page: SignedIn, form: Form) -> Response:
    caller = page.me()
    values = _values(form, page)
    body, errors = kit.check(page, RequestIn, values)
    if body is None:
        return _form(page, values, status=422, errors=errors)
    try:
        req = kit.service(page).file(caller, new_request(body))
    except PolicyError as exc:  # the API's refusal, shown on the form with its status
        return _form(page, values, status=policy_status(exc), problem=exc.message)
    return page.redirect(f"/ui/requests/{req.uid}", flash=page._("Your request was filed."))


@router.get("/ui/requests")
def my_requests(
    page: SignedIn,
    state: StateName | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    caller = page.me()
    requests = kit.service(page)
    shown, total = requests.mine_page(caller, state=state, offset=offset, limit=PAGE)
    facts = requests.facts(caller, shown)
    rows = [(r, facts.get(r.uid, {})) for r in shown]
    return page.render(
        "requests_list.html",
        rows=[(r, f, kit.stages(r, f)) for r, f in rows],
        banner=kit.banner_of(rows),
        state=state,
        states=("pending", "approved", "denied", "withdrawn", "expired"),
        total=total,
        limit=PAGE,
        offset=offset,
    )


def render_request(
    page: Page,
    uid: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    """One request with all its facts; the decision forms when the caller may sign
    it now, the withdraw button when it is theirs and pending."""
    caller = page.me()
    requests = kit.service(page)
    req, signatures = requests.show(caller, uid)
    facts = requests.facts(caller, [req]).get(req.uid, {})
    may_sign = req.state == "pending" and any(r.uid == uid for r in requests.queue(caller))
    return page.render(
        "requests_show.html",
        status=status,
        req=req,
        facts=facts,
        chain=kit.stages(req, facts),
        signatures=signatures,
        banner=kit.banner_of([(req, facts)]),
        may_sign=may_sign,
        may_withdraw=req.state == "pending" and req.requester == caller.username,
        errors=errors or {},
        problem=kit.error_summary(page, errors) if errors else "",
        values=values or {},
    )


@router.get("/ui/requests/{uid}")
def show_request(page: SignedIn, uid: Uid) -> Response:
    return render_request(page, uid)


@router.post("/ui/requests/{uid}/withdraw")
def withdraw(page: SignedIn, uid: Uid, _form: Form) -> Response:
    caller = page.me()
    kit.service(page).withdraw(caller, uid)
    return page.redirect(f"/ui/requests/{uid}", flash=page._("The request was withdrawn."))
