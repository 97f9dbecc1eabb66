"""Archives past their retention (Art 25), each with a form to propose its destruction.

The list is the customer list's service (``ArchiveActs.list_archives`` with
``retention_before`` today, as ``GET /customers`` and ``archive-vault sweep``
list them): decided and audited there. Proposing destruction files a destroy
request through ``RequestService.file``, as ``POST /requests`` does, with the body
checked by that route's ``RequestIn`` first (the service trusts its caller with the
reason's text, which the signers read); the chain of ``chains.toml`` decides who
signs, and the filing decides who may file.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from api.routers.requests import RequestIn, new_request, request_service
from api.web.kit import Form, Page, SignedIn, field_text
from api.web.request_kit import check
from vault.records import ARCHIVE_NO

router = APIRouter()
PAGE = 50
PURPOSE = "retention_expired"
ArchiveNo = Annotated[str, Path(pattern=f"^{ARCHIVE_NO.pattern}$")]
_RANK = {"internal": 0, "secret": 1, "top_secret": 2}


def _render(
    page: Page, offset: int, *, status: int = 200, error_for: str = "", error: str = ""
) -> Response:
    caller = page.me()
    found = page.services.acts.list_archives(
        caller,
        status="active",
        retention_before=page.services.clock().date(),
        offset=offset,
        limit=PAGE,
    )
    highest = max((m.classification for m in found.items), key=_RANK.__getitem__, default=None)
    return page.render(
        "officer_retention.html",
        status=status,
        found=found,
        highest=highest,
        error_for=error_for,
        error=error,
    )


@router.get("/ui/retention")
def retention_page(
    page: SignedIn, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0
) -> Response:
    return _render(page, offset)


@router.post("/ui/retention/{archive_no}/destroy")
def propose_destruction(archive_no: ArchiveNo, page: SignedIn, form: Form) -> Response:
    reason = field_text(form, "reason")
    if not reason:
        return _render(
            page,
            0,
            status=422,
            error_for=archive_no,
            error=page._("Reason: say why this archive should be destroyed."),
        )
    body, _errors = check(
        page,
        RequestIn,
        {"kind": "destroy", "purpose": PURPOSE, "reason": reason, "archives": [archive_no]},
    )
    if body is None:
        return _render(
            page,
            0,
            status=422,
            error_for=archive_no,
            error=page._("%(field)s: this value is not valid.", field=page._("Reason")),
        )
    req = request_service(page.services).file(page.me(), new_request(body))
    return page.redirect(
        "/ui/retention",
        flash=page._(
            "Destruction of %(no)s proposed: request %(uid)s waits for its signers.",
            no=archive_no,
            uid=req.uid,
        ),
    )
