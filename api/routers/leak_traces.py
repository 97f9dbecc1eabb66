"""Tracing a leaked file to its export, on a leak case (compliance and the handlers).

The body is the leaked file itself (CSV or JSON, as exported or as a spreadsheet
saved it), read only after the caller is authenticated and allowed, and only up
to the size limit; it is scored in memory and never stored or logged: the case
keeps the verdict alone (``policies.attribution``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import parse_options_header

from api.deps import ClaimsDep, ServicesDep, caller_for, client_address
from api.errors import ApiProblem
from policies.attribution import MAX_BYTES

router = APIRouter(prefix="/leaks", tags=["leaks"])
CaseUid = Annotated[str, Path(pattern=r"^LK-[0-9A-F]{10}$")]
# Types a leaked CSV or JSON file arrives with (spreadsheets label CSV as Excel's).
ACCEPTED = {
    "text/csv",
    "application/csv",
    "text/plain",
    "application/json",
    "application/vnd.ms-excel",
    "application/octet-stream",
}
OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            f"The leaked file or an excerpt, as the raw body (CSV or JSON, at most "
            f"{MAX_BYTES // (1024 * 1024)} MiB). Read only once the caller is allowed; "
            "never stored."
        ),
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "string"}},
        },
    }
}


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BYTES:
        raise ApiProblem(413, "too-large", f"the file is larger than {MAX_BYTES} bytes")
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > MAX_BYTES:
            raise ApiProblem(413, "too-large", f"the file is larger than {MAX_BYTES} bytes")
    return bytes(data)


@router.post("/{uid}/fingerprint", openapi_extra=OPENAPI_BODY)
async def trace(
    uid: CaseUid, request: Request, services: ServicesDep, claims: ClaimsDep
) -> dict[str, Any]:
    """Name the export a leaked file came from (requester, approvers, recipient,
    confidence), or none; the verdict is recorded on the case and audited."""
    caller = await run_in_threadpool(caller_for, services, claims, client_address(request))
    await run_in_threadpool(
        services.in_transaction,
        lambda s: services.traces.check(s, uid, caller.principal, caller.actor, services.clock()),
    )
    mime, _ = parse_options_header(request.headers.get("content-type"))
    if mime.decode("latin-1").lower() not in ACCEPTED:
        raise ApiProblem(
            415,
            "unsupported-file",
            "upload the leaked file as the body, as text/csv or application/json",
        )
    data = await _body(request)
    result: dict[str, Any] = await run_in_threadpool(
        services.in_transaction,
        lambda s: services.traces.attribute(
            s, uid, caller.principal, caller.actor, services.clock(), data
        ),
    )
    return result
