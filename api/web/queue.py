"""Waiting for me: the requests an approver may sign now, and the decision forms.

The queue is ``RequestService.queue`` (what ``GET /requests?role=to_approve``
lists), each request with every fact its signer judges on. Approving and
denying call ``RequestService.approve``/``deny`` (the API's routes' calls) with
the form checked by the API's ``ApproveIn``/``DenyIn``: an approver narrows the
hours, field groups or copies, never widens them, and a denial states its reason.
Whoever may not sign gets the API's refusal (audited by the service) as a page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.datastructures import FormData

from api.routers.requests import ApproveIn, DenyIn, Uid
from api.web import request_kit as kit
from api.web.kit import Form, SignedIn, field_text
from api.web.request_pages import render_request

router = APIRouter()


@router.get("/ui/queue")
def queue(page: SignedIn) -> Response:
    caller = page.me()
    requests = kit.service(page)
    waiting = requests.queue(caller)
    facts = requests.facts(caller, waiting)
    rows = [(r, facts.get(r.uid, {})) for r in waiting]
    return page.render(
        "queue_list.html",
        rows=[(r, f, kit.stages(r, f)) for r, f in rows],
        banner=kit.banner_of(rows),
    )


def _optional(form: FormData, name: str, values: dict[str, Any]) -> None:
    text = field_text(form, name, limit=40)
    if text:
        values[name] = text


@router.post("/ui/requests/{uid}/approve")
def approve(page: SignedIn, uid: Uid, form: Form) -> Response:
    caller = page.me()
    values: dict[str, Any] = {"note": field_text(form, "note", limit=2001)}
    for name in ("hours", "copies", "expected_version"):
        _optional(form, name, values)
    if field_text(form, "narrow_groups", limit=8) == "1":
        # The form lists the request's groups, all ticked: sending them narrows
        # nothing, unticking one narrows; unticking all is no request at all.
        values["groups"] = [g for g in form.getlist("groups") if isinstance(g, str)]
    body, errors = kit.check(page, ApproveIn, values)
    if body is not None and body.groups is not None and not body.groups:
        errors = {"groups": page._("Keep at least one field group, or deny the request.")}
    if body is None or errors:
        return render_request(page, uid, status=422, errors=errors, values=values)
    kit.service(page).approve(
        caller,
        uid,
        groups=body.groups,
        hours=body.hours,
        note=body.note,
        expected_version=body.expected_version,
        copies=body.copies,
    )
    return page.redirect("/ui/queue", flash=page._("You approved the request."))


@router.post("/ui/requests/{uid}/deny")
def deny(page: SignedIn, uid: Uid, form: Form) -> Response:
    caller = page.me()
    values: dict[str, Any] = {"reason": field_text(form, "reason", limit=2001)}
    _optional(form, "expected_version", values)
    body, errors = kit.check(page, DenyIn, values)
    if body is None:
        return render_request(page, uid, status=422, errors=errors, values=values)
    kit.service(page).deny(caller, uid, reason=body.reason, expected_version=body.expected_version)
    return page.redirect("/ui/queue", flash=page._("You denied the request."))
