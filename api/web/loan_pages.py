"""My loans: the caller's lines of the loan register, confirmed and returned here.

The lines are ``RequestService.loans`` (what ``GET /loans`` lists) narrowed to the
caller's own (the keepers' whole register is a page of its own); confirming and
returning call ``confirm_loan``/``return_loan``, the ``/loans/{uid}/confirm`` and
``/loans/{uid}/return`` routes' calls, which refuse anyone but the borrower.
Overdue is the service's status at the clock's now.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.routers.requests import Uid
from api.web import request_kit as kit
from api.web.kit import Form, SignedIn
from policies.roles import LoanState

router = APIRouter()


@router.get("/ui/loans")
def my_loans(page: SignedIn) -> Response:
    caller = page.me()
    # Each line's marking is its request's level (the highest among its archives).
    rows = kit.service(page).own_loans(caller)
    return page.render(
        "loans_list.html",
        rows=rows,
        banner=kit.highest(level for _v, level in rows),
        OVERDUE=LoanState.OVERDUE,
        RETURNED=LoanState.RETURNED,
    )


@router.post("/ui/loans/{uid}/confirm")
def confirm(page: SignedIn, uid: Uid, _form: Form) -> Response:
    kit.service(page).confirm_loan(page.me(), uid)
    return page.redirect("/ui/loans", flash=page._("You confirmed the loan."))


@router.post("/ui/loans/{uid}/return")
def give_back(page: SignedIn, uid: Uid, _form: Form) -> Response:
    kit.service(page).return_loan(page.me(), uid)
    return page.redirect("/ui/loans", flash=page._("The loan was returned."))
