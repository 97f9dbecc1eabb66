"""The caller's own notifications (the in-app channel of ``policies.notifications``).

Only ever the caller's: someone else's notification id is answered exactly as
an id that does not exist. Marking read changes nothing else and may be repeated.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlmodel import Session

from api.deps import CallerDep, ServicesDep
from policies import notifications
from policies.models import Notification

router = APIRouter(prefix="/notifications", tags=["notifications"])
# Past the column's range an id is refused here, not by the database as a server error.
NotificationId = Annotated[int, Path(ge=1, le=notifications.MAX_ID)]


def notification_public(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "request": n.request_uid,
        "event": n.event,
        "message": n.message,
        "at": n.created_at.isoformat(),
        "read_at": n.read_at.isoformat() if n.read_at else None,
    }


@router.get("")
def list_notifications(
    services: ServicesDep,
    caller: CallerDep,
    unread: Annotated[bool, Query(description="Only those not yet marked read.")] = False,
    limit: Annotated[int, Query(ge=1, le=notifications.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=notifications.MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Your notifications, newest first; ``unread`` counts all you have not read."""
    with Session(services.engine) as session:
        page = notifications.page_for(
            session, caller.principal.username, unread_only=unread, limit=limit, offset=offset
        )
    return {
        "items": [notification_public(n) for n in page.items],
        "unread": page.unread,
        "total": page.total,
        "limit": page.limit,
        "offset": page.offset,
        "more": page.more,
    }


@router.post("/read-all")
def read_all(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Mark every notification of yours read."""
    marked = services.in_transaction(
        lambda s: notifications.mark_all_read(s, caller.principal.username, services.clock())
    )
    return {"marked": marked}


@router.post("/{notification_id}/read")
def read_one(
    notification_id: NotificationId, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Mark one notification of yours read (again: unchanged)."""
    note = services.in_transaction(
        lambda s: notifications.mark_read(
            s, caller.principal.username, notification_id, services.clock()
        )
    )
    return notification_public(note)
