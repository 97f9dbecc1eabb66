"""The caller's own notifications, as a page (the in-app channel of ``policies.notifications``)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlmodel import Session

from api.web.kit import Form, SignedIn
from policies import notifications

router = APIRouter()
PAGE = 50


@router.get("/ui/notifications")
def notifications_page(
    page: SignedIn,
    unread: bool = False,
    offset: int = Query(0, ge=0, le=notifications.MAX_OFFSET),
) -> Response:
    caller = page.me()
    with Session(page.services.engine) as session:
        found = notifications.page_for(
            session, caller.principal.username, unread_only=unread, limit=PAGE, offset=offset
        )
    return page.render("notifications.html", found=found, unread_only=unread)


@router.post("/ui/notifications/read-all")
def read_all(page: SignedIn, _form: Form) -> Response:
    caller = page.me()
    services = page.services
    services.in_transaction(
        lambda s: notifications.mark_all_read(s, caller.principal.username, services.clock())
    )
    return page.redirect("/ui/notifications", flash=page._("All notifications marked read."))
