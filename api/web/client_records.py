"""An archive's business records as pages: interactions (calls, visits, revisits…)
and attachments, through the services behind ``/customers/{no}/interactions`` and
``/customers/{no}/attachments``.

An upload is a multipart form whose CSRF field comes before the file: the body is
streamed through ``api.uploads`` (never spooled to disk), and the token is
checked when the file part begins, before its first byte is fed, so a forged
form stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from api.downloads import download_headers
from api.schemas import ArchiveNo, InteractionIn
from api.uploads import FormGate, receive_attachment
from api.web.kit import CsrfRefused, Form, Page, SignedIn, field_text
from api.web.profile import refused
from policies.errors import AccessDenied, PolicyError
from vault.errors import ValidationFailed

router = APIRouter()
ArchivePath = Annotated[ArchiveNo, Path()]
CHANNELS = ("letter", "fax", "call", "visit", "revisit")


def _records_refused(exc: PolicyError) -> bool:
    """A refusal the caller can act on by asking for the records' group."""
    return isinstance(exc, AccessDenied) or getattr(exc, "code", "") == "access-denied"


def _interactions(
    page: Page, no: str, status: int = 200, errors: dict[str, str] | None = None, **typed: str
) -> Response:
    caller = page.me()
    try:
        items = page.services.acts.interactions(caller, no)
    except PolicyError as exc:
        if not _records_refused(exc):
            raise
        return refused(page, no, exc, None)
    meta = page.services.acts.describe(caller, no).public()
    return page.render(
        "clients_interactions.html",
        status=status,
        meta=meta,
        items=items,
        channels=CHANNELS,
        errors=errors or {},
        typed=typed,
    )


@router.get("/ui/clients/{archive_no}/interactions")
def interactions_page(page: SignedIn, archive_no: ArchivePath) -> Response:
    return _interactions(page, archive_no)


@router.post("/ui/clients/{archive_no}/interactions")
def add_interaction(page: SignedIn, archive_no: ArchivePath, form: Form) -> Response:
    caller = page.me()
    typed = {k: field_text(form, k, limit=20_000) for k in ("occurred_on", "channel", "text")}
    errors: dict[str, str] = {}
    try:
        body = InteractionIn.model_validate(typed)
    except ValidationError as exc:
        for e in exc.errors():
            errors[str(e["loc"][0])] = page._("This field is missing or not valid.")
        return _form_again(page, archive_no, errors, typed)
    try:
        page.services.acts.add_interaction(
            caller, archive_no, occurred_on=body.occurred_on, channel=body.channel, text=body.text
        )
    except ValidationFailed as exc:
        return _form_again(page, archive_no, {"text": exc.message}, typed)
    return page.redirect(
        f"/ui/clients/{archive_no}/interactions", flash=page._("Interaction recorded.")
    )


def _form_again(page: Page, no: str, errors: dict[str, str], typed: dict[str, str]) -> Response:
    """The form with its messages; the list is not read again (no second audited read)."""
    meta = page.services.acts.describe(page.me(), no).public()
    return page.render(
        "clients_interactions.html",
        status=422,
        meta=meta,
        items=None,
        channels=CHANNELS,
        errors=errors,
        typed=typed,
    )


@router.get("/ui/clients/{archive_no}/attachments")
def attachments_page(page: SignedIn, archive_no: ArchivePath) -> Response:
    caller = page.me()
    try:
        items = page.services.acts.attachments(caller, archive_no)
    except PolicyError as exc:
        if not _records_refused(exc):
            raise
        return refused(page, archive_no, exc, None)
    meta = page.services.acts.describe(caller, archive_no).public()
    return page.render("clients_attachments.html", meta=meta, items=items)


def _csrf_gate(page: Page) -> FormGate:
    def check(fields: Mapping[str, str]) -> None:
        key = page.live.key if page.live is not None else None
        if not page.web.sessions.csrf_ok(key, fields.get("csrf")):
            raise CsrfRefused

    return FormGate(fields=("csrf",), check=check)


@router.post("/ui/clients/{archive_no}/attachments")
async def upload(page: SignedIn, archive_no: ArchivePath, request: Request) -> Response:
    """Decided before the body is read (as the API's upload); CSRF before the file's bytes."""
    caller = page.me()
    services = page.services
    await run_in_threadpool(services.acts.may_upload, caller, archive_no)
    await receive_attachment(request, services, caller.actor, archive_no, None, _csrf_gate(page))
    return page.redirect(
        f"/ui/clients/{archive_no}/attachments", flash=page._("Attachment stored, encrypted.")
    )


@router.get("/ui/clients/{archive_no}/attachments/{uid}")
def download(
    page: SignedIn,
    archive_no: ArchivePath,
    uid: Annotated[str, Path(pattern="^[0-9a-f]{32}$")],
) -> StreamingResponse:
    """The API's download (decided and audited before the first byte), always saved as a file."""
    meta, chunks = page.services.acts.open_attachment(page.me(), archive_no, uid)

    def body() -> Iterator[bytes]:
        yield from chunks

    media_type, headers = download_headers(meta["content_type"], meta["filename"], meta["size"])
    headers["Content-Disposition"] = headers["Content-Disposition"].replace(
        "inline;", "attachment;", 1
    )
    return StreamingResponse(body(), media_type=media_type, headers=headers)
