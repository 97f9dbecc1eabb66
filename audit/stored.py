"""How an entry's time, action and outcome are stored: compact, and exactly reversible.

The canonical bytes (``audit.merkle``) carry the time as fixed-width ISO-8601
text and the action and outcome as their names. Stored that way they cost 27,
up to 30 and up to 7 bytes in every row, and again in every index that holds
them, for values a log repeats millions of times. So the columns hold
integers, and these types turn them back into the very text that was hashed:

* **time**: microseconds since 1970-01-01 UTC. Only the canonical form
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` is accepted on the way in, so the text read
  back is always byte for byte the text written; integer order is time order,
  so range queries and the indexes work unchanged.
* **action and outcome**: a small integer from a fixed table, spelled out
  here (a test holds it to ``audit.events``). A code is never reused or
  renumbered: a new action takes the next free number.

SQLAlchemy applies the types on every Core and ORM statement, both ways
(a window's bounds are converted like any value). Readers that take rows
straight from the driver for speed (verification, bundle export) get the
integers and convert them with ``time_text`` and the ``*_NAMES`` tables;
a value no code names reads as ``?`` plus the number, which no canonical entry
contains, so an edited code shows up as an edited entry instead of an error.
"""

from __future__ import annotations

import calendar
import time as _time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

ACTION_CODES: dict[str, int] = {
    "archive:read": 1,
    "archive:search": 2,
    "archive:list": 3,
    "archive:create": 4,
    "archive:update": 5,
    "archive:import": 6,
    "archive:export": 7,
    "archive:report": 8,
    "archive:reassign": 9,
    "archive:reclassify": 10,
    "archive:destroy": 11,
    "archive:consent-withdraw": 12,
    "archive:consent-record": 13,
    "archive:interaction-add": 14,
    "archive:interaction-read": 15,
    "archive:attachment-add": 16,
    "archive:attachment-read": 17,
    "archive:attachment-list": 18,
    "loan:open": 19,
    "loan:return": 20,
    "request:file": 21,
    "request:approve": 22,
    "request:deny": 23,
    "request:withdraw": 24,
    "request:expire": 25,
    "request:rechain": 26,
    "request:list": 27,
    "auth:login": 28,
    "auth:login-failed": 29,
    "auth:logout": 30,
    "user:change": 31,
    "user:list": 32,
    "keys:rotate": 33,
    "policy:change": 34,
    "vault:init": 35,
    "vault:seal-manifests": 36,
    "vault:mask-names": 37,
    "audit:read": 38,
    "audit:verify": 39,
    "leak:report": 40,
    "leak:change": 41,
    "leak:read": 42,
    "vault:inspect": 43,
    "inspection:read": 44,
    "detection:decoy-mark": 45,
    "detection:decoy-list": 46,
    "archive:access-report": 47,
    "health:ready": 48,
    "vault:backup": 49,
    "vault:restore": 50,
}
OUTCOME_CODES: dict[str, int] = {
    "allowed": 1,
    "denied": 2,
    "error": 3,
}
ACTION_NAMES: dict[int, str] = {code: name for name, code in ACTION_CODES.items()}
OUTCOME_NAMES: dict[int, str] = {code: name for name, code in OUTCOME_CODES.items()}
# The names as JSON strings, for the verifier's fast path (none needs escaping).
ACTION_JSON: dict[int, str] = {code: f'"{name}"' for code, name in ACTION_NAMES.items()}
OUTCOME_JSON: dict[int, str] = {code: f'"{name}"' for code, name in OUTCOME_NAMES.items()}

_SECOND_FORMAT = "%Y-%m-%dT%H:%M:%S"
_TIME_WIDTH = 27  # YYYY-MM-DDTHH:MM:SS.ffffffZ
_MICROS = 1_000_000
_CACHE_LIMIT = 4096
# Entries come in time order, so consecutive rows share their second: both ways
# cache the second's text, and the microseconds are the only per-row work.
_seconds_of: dict[str, int] = {}
SECOND_TEXT: dict[int, str] = {}
SECOND_QUOTED: dict[int, str] = {}


def time_micros(text: str) -> int:
    """The stored integer of a canonical time text; ValueError for anything else."""
    if (
        type(text) is not str
        or len(text) != _TIME_WIDTH
        or text[19] != "."
        or text[26] != "Z"
        or not text[20:26].isdigit()
        or not text[20:26].isascii()
    ):
        raise ValueError(f"not an audit time (YYYY-MM-DDTHH:MM:SS.ffffffZ): {text!r:.40}")
    prefix = text[:19]
    seconds = _seconds_of.get(prefix)
    if seconds is None:
        try:
            moment = datetime.strptime(prefix, _SECOND_FORMAT)
        except ValueError:
            moment = None
        # Compared back, so a one-digit field that strptime took is refused too.
        if moment is None or moment.strftime(_SECOND_FORMAT) != prefix:
            raise ValueError(f"not an audit time (YYYY-MM-DDTHH:MM:SS.ffffffZ): {text!r:.40}")
        seconds = calendar.timegm(moment.timetuple())
        if len(_seconds_of) >= _CACHE_LIMIT:
            _seconds_of.clear()
        _seconds_of[prefix] = seconds
    return seconds * _MICROS + int(text[20:26])


def second_text(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a second since the epoch, cached; '' if out of range."""
    prefix = SECOND_TEXT.get(seconds)
    if prefix is None:
        try:
            prefix = _time.strftime(_SECOND_FORMAT, _time.gmtime(seconds))
        except (OverflowError, OSError, ValueError):
            return ""
        if len(prefix) != 19:  # a year outside 0001..9999: never written by the vault
            return ""
        if len(SECOND_TEXT) >= _CACHE_LIMIT:
            SECOND_TEXT.clear()
        SECOND_TEXT[seconds] = prefix
    return prefix


def second_quoted(seconds: int) -> str:
    """``"YYYY-MM-DDTHH:MM:SS.`` (a JSON string's opening), cached; '' if out of range."""
    prefix = second_text(seconds)
    if not prefix:
        return ""
    if len(SECOND_QUOTED) >= _CACHE_LIMIT:
        SECOND_QUOTED.clear()
    SECOND_QUOTED[seconds] = quoted = f'"{prefix}.'
    return quoted


def time_text(micros: int) -> str:
    """The canonical text of a stored time; ``?`` and the number if it is none."""
    seconds, fraction = divmod(micros, _MICROS)
    prefix = SECOND_TEXT.get(seconds) or second_text(seconds)
    return f"{prefix}.{fraction:06d}Z" if prefix else f"?{micros}"


def written(time: Any, action: Any, outcome: Any) -> tuple[Any, Any, Any]:
    """Time, action and outcome as the canonical bytes carry them, from either form."""
    if type(time) is int:
        time = time_text(time)
    if type(action) is int:
        action = ACTION_NAMES.get(action, f"?{action}")
    if type(outcome) is int:
        outcome = OUTCOME_NAMES.get(outcome, f"?{outcome}")
    return time, action, outcome


def as_stored(time: Any, action: Any, outcome: Any) -> tuple[Any, Any, Any]:
    """The integers a raw statement writes (the types do this for Core and the ORM)."""
    if type(time) is str:
        time = time_micros(time)
    if type(action) is str:
        action = ACTION_CODES[action]
    if type(outcome) is str:
        outcome = OUTCOME_CODES[outcome]
    return time, action, outcome


def micros_of(moment: datetime) -> int:
    """A timezone-aware moment as stored, truncated to the microsecond as the text is."""
    if moment.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _MICROS + delta.microseconds


class AuditTime(sa.types.TypeDecorator[str]):
    """The canonical time text in Python, its microseconds in the database."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> int | None:
        if value is None or type(value) is int:
            return value
        if isinstance(value, datetime):
            return micros_of(value)
        return time_micros(value)

    def process_literal_param(self, value: Any, dialect: sa.Dialect) -> str:
        return str(self.process_bind_param(value, dialect))

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None or type(value) is str:
            return value  # a text a hand-edit left in SQLite: hashed as found
        return time_text(int(value))

    @property
    def python_type(self) -> type[str]:
        return str


class AuditCode(sa.types.TypeDecorator[str]):
    """An action's or outcome's name in Python, its fixed small number in the database."""

    impl = sa.SmallInteger
    cache_ok = True

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in ("action", "outcome"):
            raise ValueError(f"unknown audit code kind {kind!r}")
        self.kind = kind

    def _codes(self) -> dict[str, int]:
        return ACTION_CODES if self.kind == "action" else OUTCOME_CODES

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> int | None:
        if value is None or type(value) is int:
            return value
        code = self._codes().get(str(value))
        if code is None:
            raise ValueError(f"unknown audit {self.kind}: {value!r:.80}")
        return code

    def process_literal_param(self, value: Any, dialect: sa.Dialect) -> str:
        return str(self.process_bind_param(value, dialect))

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None or type(value) is str:
            return value
        names = ACTION_NAMES if self.kind == "action" else OUTCOME_NAMES
        return names.get(int(value), f"?{value}")

    @property
    def python_type(self) -> type[str]:
        return str


def as_bytes(value: Any) -> bytes:
    """A hash or MAC column as bytes; anything that is not a byte string cannot match one.

    Never ``bytes(value)`` on what a row holds: of an integer that makes that many
    zero bytes, so one edited SQLite column could exhaust the memory of whoever reads it.
    """
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return b""
