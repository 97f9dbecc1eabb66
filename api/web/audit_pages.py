"""The audit trail for compliance (and the information supervisor): search, one entry's
proof, the offline bundle.

Each page calls ``AuditTrail`` as the ``/audit`` routes do: the decision (refusals
audited), the read, and an ``audit:read`` entry before anything is shown. The
search form is a GET form: its filters are identifiers (usernames, archive numbers,
actions), never customer values. Times are entered in Beijing time and taken to
UTC here, as the log stores them.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse

from api.audit_trail import TrailQuery
from api.web.i18n import BEIJING
from api.web.kit import Form, Page, PageError, SignedIn
from audit.events import AuditAction, Outcome
from vault.records import ARCHIVE_NO

router = APIRouter()
PAGE = 50
ACTIONS = [a.value for a in AuditAction]
OUTCOMES = [o.value for o in Outcome]
Actor = Annotated[
    str, Query(max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*$")
]
ArchiveFilter = Annotated[str, Query(max_length=14, pattern=f"^({ARCHIVE_NO.pattern})?$")]
ActionFilter = Annotated[str, Query(max_length=40)]
OutcomeFilter = Annotated[str, Query(pattern="^(allowed|denied|error)?$")]
When = Annotated[str, Query(max_length=32)]


def _beijing(page: Page, name: str, label: str, raw: str) -> datetime | None:
    """A time entered in Beijing time (a zone given is kept), in UTC; bad input is a 422."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=BEIJING)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise PageError(
            422, page._("%(field)s: give a date and time such as 2026-03-01 09:30.", field=label)
        ) from None


@router.get("/ui/audit")
def audit_page(
    page: SignedIn,
    actor: Actor = "",
    archive: ArchiveFilter = "",
    action: ActionFilter = "",
    outcome: OutcomeFilter = "",
    since: Annotated[str, Query(alias="from", max_length=32)] = "",
    until: Annotated[str, Query(alias="to", max_length=32)] = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    caller = page.me()
    trail = page.services.audit_trail
    if action and action not in ACTIONS:
        raise PageError(422, page._("Action: choose one from the list."))
    query = TrailQuery(
        actor=actor.strip() or None,
        archive=archive or None,
        action=action or None,
        outcome=outcome or None,
        since=_beijing(page, "from", page._("From"), since),
        until=_beijing(page, "to", page._("To"), until),
        offset=offset,
        limit=PAGE,
    )
    last = trail.last_verification(caller)
    head = trail.signed_head(caller)
    records = trail.search(caller, query)
    filters = {
        k: v
        for k, v in (
            ("actor", actor),
            ("archive", archive),
            ("action", action),
            ("outcome", outcome),
            ("from", since),
            ("to", until),
        )
        if v
    }
    base = "/ui/audit" + ("?" + urlencode(filters) if filters else "")
    return page.render(
        "audit_search.html",
        last=last,
        head=head,
        records=records,
        filters=filters,
        actions=ACTIONS,
        outcomes=OUTCOMES,
        offset=offset,
        limit=PAGE,
        base=base,
        sep="&" if filters else "?",
        signed_at=datetime.fromtimestamp(head.checkpoint.timestamp, UTC) if head else None,
    )


@router.post("/ui/audit/verify")
def audit_verify(page: SignedIn, _form: Form) -> Response:
    """Re-hash the whole log and check every signed checkpoint now (seconds on a big log)."""
    report = page.services.audit_trail.verify(page.me())
    if report.ok:
        return page.redirect(
            "/ui/audit",
            flash=page._(
                "Verified: %(n)s entries re-hashed, %(c)s signed checkpoints checked.",
                n=report.entries,
                c=report.checkpoints,
            ),
        )
    return page.redirect("/ui/audit", flash=page._("The log does NOT verify."))


@router.get("/ui/audit/bundle")
def audit_bundle(page: SignedIn) -> Response:
    """The bundle ``archive-vault audit export`` writes, streamed as an attachment."""
    chunks = page.services.audit_trail.bundle(page.me())
    stamp = page.services.clock().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        chunks,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="audit-bundle-{stamp}.json"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@router.get("/ui/audit/{seq}")
def audit_entry(seq: Annotated[int, Path(ge=1, le=2**62)], page: SignedIn) -> Response:
    record, inclusion = page.services.audit_trail.entry(page.me(), seq)
    cp = inclusion.checkpoint
    return page.render(
        "audit_entry.html",
        r=record,
        checkpoint=cp,
        proof=[base64.b64encode(p).decode() for p in inclusion.proof],
        signed_at=datetime.fromtimestamp(cp.timestamp, UTC) if cp else None,
    )
