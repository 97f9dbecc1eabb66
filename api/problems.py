"""The problem+json body (RFC 9457) every error answer has, in one place, so the
error handlers and the last-resort middleware answer alike."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PROBLEM = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    423: "Locked",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
    507: "Insufficient storage",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"urn:archive-vault:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def internal_error(path: str, error_id: str) -> JSONResponse:
    """The 500 for an unexpected exception: no content, an id to find its log line."""
    return problem(
        500,
        "internal-error",
        "internal error; no content was returned",
        instance=path,
        error_id=error_id,
    )
