"""The loan register (客户资料外借登记册) for those who keep it: overdue lines first.

The lines are ``RequestService.loans``, as ``GET /loans`` answers a register
keeper; returning a line is ``RequestService.return_loan``, as
``POST /loans/{uid}/return`` (the borrower or an information officer, decided
there). Only register keepers open this page: a borrower's own lines are on
"My loans".
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response
from sqlmodel import Session, col, select

from api.routers.requests import request_service
from api.web.kit import Form, Page, PageError, SignedIn
from api.web.request_kit import highest
from policies.models import AccessRequest
from policies.roles import Action, LoanState
from policies.visibility import LOAN_REGISTER_READERS

router = APIRouter()
Uid = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{4,40}$")]
_ORDER = {LoanState.OVERDUE: 0, LoanState.OUT: 1, LoanState.RETURNED: 2}


def keeper_only(page: Page) -> None:
    """The register is the keepers' (``visibility.LOAN_REGISTER_READERS``)."""
    if not LOAN_REGISTER_READERS & page.me().principal.roles:
        raise PageError(403, page._("Only the keepers of the loan register see it."))


@router.get("/ui/register")
def register_page(page: SignedIn) -> Response:
    keeper_only(page)
    caller = page.me()
    views = request_service(page.services).loans(caller, overdue=False, open_only=False)
    views.sort(key=lambda v: (_ORDER[v.status], v.entry.due_at))
    may_return = page.services.decide(caller.principal, Action.REGISTER_LOAN, None).allowed
    # Each line's marking is its request's level (the highest among its archives).
    ids = {v.entry.request_id for v in views}
    with Session(page.services.engine) as session:
        levels: dict[int | None, str] = {
            rid: level
            for rid, level in session.exec(
                select(AccessRequest.id, AccessRequest.classification).where(
                    col(AccessRequest.id).in_(ids)
                )
            ).all()
        }
    return page.render(
        "officer_register.html",
        views=views,
        levels=levels,
        banner=highest(levels.values()),
        overdue=sum(v.status is LoanState.OVERDUE for v in views),
        may_return=may_return,
    )


@router.post("/ui/register/{uid}/return")
def return_line(uid: Uid, page: SignedIn, _form: Form) -> Response:
    keeper_only(page)
    request_service(page.services).return_loan(page.me(), uid)
    return page.redirect(
        "/ui/register", flash=page._("Loan %(uid)s is registered as returned.", uid=uid)
    )
