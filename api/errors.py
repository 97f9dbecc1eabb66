"""Every error leaves the API as RFC 7807 problem+json, mapped here and only here.

Services raise their own exceptions (``vault.errors``, ``policies.errors``)
and know nothing of HTTP. Each gets a stable ``type`` (``urn:archive-vault:<code>``)
and a status: 4xx for the caller's mistakes, 403 with what to do next for a
denial, 503 when the database is unavailable, 507 when its disk is full, and a content-free 500 for
anything unexpected. Validation errors never echo the submitted values, which
may be customer content.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.internal_errors import log_server_error
from api.observe import route_template
from api.problems import TITLES, problem
from api.security import InvalidToken
from audit.errors import AuditError, AuditQueryError, AuditWriteFailed
from foundation.db import is_storage_full
from policies import errors as perr
from policies.archive_acts import NotCovered
from vault import errors as verr
from vault.uploads import QuotaExceeded, UploadTooLarge

log = logging.getLogger("archive_vault.api")

_VAULT_STATUS: dict[type[verr.VaultError], int] = {
    verr.ConsentMissing: 422,
    verr.ValidationFailed: 422,
    verr.SchemaError: 500,
    verr.ArchiveNotFound: 404,
    verr.ArchiveDestroyed: 410,
    verr.Conflict: 409,
    verr.KeyFileError: 500,
    verr.NotInitialised: 503,
    verr.DecryptionFailed: 500,
    UploadTooLarge: 413,
    QuotaExceeded: 429,
}
_POLICY_STATUS: dict[type[perr.PolicyError], int] = {
    perr.AccessDenied: 403,
    NotCovered: 403,  # worded by the service, not a decision: no decision member
    perr.UnknownUser: 404,
    perr.UserDisabled: 403,
    perr.NotFound: 404,
    perr.InvalidInput: 422,
    perr.Refused: 403,
    perr.Conflict: 409,
    perr.Unfinishable: 409,  # who could sign, named in the detail with the fix
    perr.ConfigError: 500,
}


class ApiProblem(Exception):
    """Raised by routers for HTTP-level problems (bad token, locked account, …)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


def _status_for(exc: Exception, table: dict) -> int:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return 500


def policy_status(exc: perr.PolicyError) -> int:
    """The status the API answers a service's refusal with (for a page that shows the
    refusal on its form again instead of on an error page)."""
    return _status_for(exc, _POLICY_STATUS)


def _clean_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep where and what; drop ``input``/``ctx``, which echo what was sent."""
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in errors
    ]


def _storage_full(request: Request, exc: Exception) -> JSONResponse:
    """A write the database had no space for: rolled back, and the operator must free space."""
    log.error("database storage full on %s: %s", route_template(request.scope), type(exc).__name__)
    return problem(
        507,
        "storage-full",
        "the database's storage is full; nothing was changed. Try again once space is freed",
        instance=request.url.path,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(
            exc.status,
            exc.code,
            exc.detail,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(InvalidToken)
    async def _token(request: Request, exc: InvalidToken) -> JSONResponse:
        return problem(
            401,
            "invalid-token",
            str(exc),
            instance=request.url.path,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(verr.VaultError)
    async def _vault(request: Request, exc: verr.VaultError) -> JSONResponse:
        status = _status_for(exc, _VAULT_STATUS)
        extra: dict[str, Any] = {}
        if isinstance(exc, verr.ValidationFailed) and len(exc.problems) > 1:
            extra["errors"] = exc.problems
        if status >= 500:
            extra["error_id"] = log_server_error(exc, route_template(request.scope))
        return problem(status, exc.code, exc.message, instance=request.url.path, **extra)

    @app.exception_handler(perr.PolicyError)
    async def _policy(request: Request, exc: perr.PolicyError) -> JSONResponse:
        status = _status_for(exc, _POLICY_STATUS)
        extra: dict[str, Any] = {}
        if isinstance(exc, perr.AccessDenied):
            extra = {
                "decision": {
                    k: v
                    for k, v in exc.decision.as_dict().items()
                    if k in ("action", "why", "basis", "next_step")
                }
            }
        if isinstance(exc, perr.Refused):
            extra = {"rule": exc.rule}
        if isinstance(exc, perr.Unfinishable):
            extra = {"rule": exc.rule, "stage": exc.stage}
        return problem(status, exc.code, exc.message, instance=request.url.path, **extra)

    @app.exception_handler(AuditError)
    async def _audit(request: Request, exc: AuditError) -> JSONResponse:
        if isinstance(exc, AuditQueryError):
            return problem(422, exc.code, str(exc), instance=request.url.path)
        if is_storage_full(exc):
            return _storage_full(request, exc)
        # Fail closed: whatever the request was, nothing was returned or changed.
        error_id = log_server_error(exc, route_template(request.scope))
        status = 503 if isinstance(exc, AuditWriteFailed) else 500
        return problem(
            status,
            exc.code,
            "the audit log could not record this request, so nothing was read or changed",
            instance=request.url.path,
            error_id=error_id,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_errors(list(exc.errors()))
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(
                400,
                "malformed-json",
                "the request body is not valid JSON",
                instance=request.url.path,
            )
        where = ", ".join(
            ".".join(e["loc"][1:] if len(e["loc"]) > 1 else e["loc"]) for e in errors[:5]
        )
        return problem(
            422,
            "validation-failed",
            f"invalid request: {where}",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return problem(
            exc.status_code,
            code,
            detail,
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        if is_storage_full(exc):
            return _storage_full(request, exc)
        log.error(
            "database unavailable on %s: %s", route_template(request.scope), type(exc.orig).__name__
        )
        return problem(
            503,
            "database-unavailable",
            "the database is unavailable; nothing was read or changed",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def _db(request: Request, exc: DBAPIError) -> JSONResponse:
        if is_storage_full(exc):
            return _storage_full(request, exc)
        # The driver's message quotes the statement and its parameters: class name only.
        error_id = log_server_error(
            exc, route_template(request.scope), kind=type(exc.orig).__name__
        )
        return problem(
            500,
            "database-error",
            "the database refused the operation; nothing was changed",
            instance=request.url.path,
            error_id=error_id,
        )

    # No handler for Exception: Starlette would answer it and then re-raise it to
    # the server, which logs the traceback. ``api.internal_errors.InternalErrors``
    # (the outermost middleware) answers it with ``internal_error`` instead.
