"""The call list a leaver's handover leaves behind (篇七): who tells which customer.

Archive numbers, usernames and dates only: the caller opens the archive through
the ordinary decided and audited read to find how to reach the customer.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import StringConstraints

from api.deps import CallerDep, ServicesDep
from api.schemas import PlainText, Strict
from policies import handover_calls
from policies.models import HandoverCall

router = APIRouter(prefix="/handovers", tags=["handovers"])
CallId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class CallDoneIn(Strict):
    channel: Literal["phone", "visit", "letter", "email", "other"]
    at: date
    note: Annotated[PlainText, StringConstraints(max_length=500)] = ""


def call_public(call: HandoverCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "archive_no": call.archive_no,
        "request": call.request_uid,
        "leaver": call.leaver,
        "new_owner": call.new_owner,
        "department": call.department,
        "created_at": call.created_at.isoformat(),
        "done_at": call.done_at.isoformat() if call.done_at else None,
        "channel": call.channel,
        "done_by": call.done_by,
        "note": call.note,
    }


@router.get("/calls")
def calls(
    services: ServicesDep,
    caller: CallerDep,
    open_only: Annotated[
        bool, Query(alias="open", description="Only the customers not told yet")
    ] = False,
) -> dict[str, Any]:
    """Your own calls to make; a department head sees their department's, information
    officers and compliance every line."""
    rows = services.in_transaction(
        lambda s: handover_calls.visible(s, caller.principal, open_only=open_only)
    )
    return {"items": [call_public(c) for c in rows]}


@router.post("/calls/{call_id}/done")
def call_done(
    call_id: CallId, body: CallDoneIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """The customer was told (day and channel): by the new owner or their department
    head; once only (409 the second time)."""
    call = services.in_transaction(
        lambda s: handover_calls.mark_done(
            services.workflow,
            s,
            caller.principal,
            call_id,
            channel=body.channel,
            on=body.at,
            note=body.note,
            now=services.clock(),
        )
    )
    return call_public(call)
