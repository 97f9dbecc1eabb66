"""The custodians of secret and top-secret archives (Art 22), problems first.

What ``archive-vault custodians`` shows (``policies.custodians.review``), for
information officers and the supervisor only (``custodians.review_for`` decides
and audits the look). Metadata only: numbers, markings, usernames.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.web.kit import SignedIn
from policies.custodians import review_for

router = APIRouter()


@router.get("/ui/custodians")
def custodians_page(page: SignedIn, problems: bool = False) -> Response:
    caller = page.me()
    services = page.services
    rows = services.in_transaction(
        lambda s: [
            (a.archive_no, a.classification, a.owner, a.custodian or "", problem)
            for a, problem in review_for(
                s, caller.principal, actor=caller.actor, audit=services.audit
            )
        ]
    )
    broken = sum(problem is not None for *_rest, problem in rows)
    shown = [r for r in rows if r[4] is not None] if problems else rows
    highest = (
        "top_secret" if any(r[1] == "top_secret" for r in shown) else ("secret" if shown else None)
    )
    return page.render(
        "officer_custodians.html",
        rows=shown,
        checked=len(rows),
        broken=broken,
        problems_only=problems,
        highest=highest,
    )
