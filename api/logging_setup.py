"""Log lines as JSON objects on stderr, one per line, each naming its request.

A log collector reads JSON without guessing at formats, and a request id in
every line (also returned to the client as ``X-Request-ID``) joins a user's
report, the access line and any error line of one request. The vault's own
loggers, uvicorn's and the access log all go through ``JsonFormatter`` (uvicorn
is given ``log_config``), so nothing reaches stderr in another shape.

What is logged is decided where it is logged: identifiers, counts, templates,
never customer content. This module only shapes lines; an exception's text
appears only as the message its logger chose (tracebacks only with
``VAULT_DEBUG=1``, see ``api.internal_errors``).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("archive_vault_request_id", default=None)
# An incoming id is kept only when it is short and plain: it is copied into every
# line, so it must not be able to carry a value, a line break or a long payload.
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Extra fields a line may carry (the access line's); others are left out, not guessed at.
FIELDS = ("method", "route", "status", "duration_ms", "client", "pid", "signal", "exitcode")
LEVELS = ("debug", "info", "warning", "error", "critical")
QUIET = ("sqlalchemy", "multipart", "python_multipart", "httpx", "httpcore")


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-ID`` if it is sane, else a new random one."""
    if incoming is not None and _SANE_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(8)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id"?, ...}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or REQUEST_ID.get()
        if rid:
            line["request_id"] = rid
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:  # only when an operator asked for tracebacks (VAULT_DEBUG=1)
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(level: str = "info") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of the service, for uvicorn's ``log_config``.

    The root logger writes JSON to stderr; uvicorn's loggers hand their records
    to it. uvicorn's own access log is off (``serve`` passes ``access_log=False``):
    it prints the raw path with its query string, which can carry searched
    values. ``api.observe`` writes the access line instead.
    """
    if level not in LEVELS:
        raise ValueError(f"log level is one of {', '.join(LEVELS)}, not {level!r:.20}")
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "api.logging_setup.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": upper},
        "loggers": {
            "uvicorn": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # Libraries that log what passes through them at info or debug level (SQL with
            # its parameters, form fields): warnings only, whatever the vault's level.
            **{name: {"level": "WARNING"} for name in QUIET},
        },
    }
