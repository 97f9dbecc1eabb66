"""Between events, table rows and canonical entry bytes.

Validation lives here because it is where customer content would slip in: an
event may carry identifiers, codes and counts, nothing else. The checks are
mechanical (lengths, types, no control characters, no floats) and cannot
recognise a name or a phone number, so callers pass anything person-revealing
as a keyed HMAC, as ``audit.events`` requires.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from audit.errors import AuditWriteFailed
from audit.events import AuditAction, AuditEvent, Outcome
from audit.merkle import ENTRY_FORMAT_VERSION, TIME_FORMAT, canonical_entry_bytes
from audit.models import entry_table
from audit.stored import (
    ACTION_JSON,
    OUTCOME_JSON,
    SECOND_QUOTED,
    as_bytes,
    second_quoted,
    time_text,
    written,
)

MAX_ID_CHARS = 200
MAX_TEXT_CHARS = 2000
MAX_DETAIL_STRING = 500
MAX_LIST_ITEMS = 50_000
MAX_DETAIL_DEPTH = 4
MAX_ENTRY_BYTES = 2 * 1024 * 1024

_COMPACT = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# For re-hashing rows in verification only: the stored JSON columns were written
# sorted, and json.loads keeps their order, so not sorting again yields the same
# bytes for honest rows and different bytes (a detected edit) for any other.
_UNSORTED = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# C0 and C1 controls, DEL and lone surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

ENTRY_COLUMNS: tuple[sa.Column[Any], ...] = tuple(
    entry_table.c[name]
    for name in (
        "seq",
        "time",
        "actor",
        "actor_role",
        "action",
        "outcome",
        "archives",
        "groups",
        "grant_id",
        "purpose",
        "reason",
        "client",
        "detail",
        "prev_hash",
        "entry_hash",
    )
)


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise AuditWriteFailed("audit time must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def dump_json(value: Any) -> str:
    return _COMPACT.encode(value)


def _check_text(value: Any, what: str, limit: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not optional):
        raise AuditWriteFailed(f"audit {what} must be a non-empty string")
    if len(value) > limit:
        raise AuditWriteFailed(f"audit {what} is longer than {limit} characters")
    # Control characters would let a value rewrite a compliance officer's terminal or table.
    if _CONTROL.search(value):
        raise AuditWriteFailed(f"audit {what} contains control characters")
    return value


def _check_detail(value: Any, path: str, depth: int) -> Any:
    if depth > MAX_DETAIL_DEPTH:
        raise AuditWriteFailed(f"audit detail nests deeper than {MAX_DETAIL_DEPTH} at {path}")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        raise AuditWriteFailed(f"audit detail {path} is a float; use an integer count")
    if isinstance(value, str):
        if not value:
            return None  # an empty optional value in detail is recorded as absent
        return _check_text(value, f"detail {path}", MAX_DETAIL_STRING)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditWriteFailed(f"audit detail {path} has a non-string key")
            _check_text(key, f"detail key in {path}", 100)
            out[key] = _check_detail(item, f"{path}.{key}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        if len(value) > MAX_LIST_ITEMS:
            raise AuditWriteFailed(f"audit detail {path} has too many items")
        return [_check_detail(v, f"{path}[]", depth + 1) for v in value]
    raise AuditWriteFailed(f"audit detail {path} has unsupported type {type(value).__name__}")


def _check_ids(values: Sequence[Any], what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise AuditWriteFailed(f"audit {what} must be a list of identifiers")
    if len(values) > MAX_LIST_ITEMS:
        raise AuditWriteFailed(f"audit {what} lists more than {MAX_LIST_ITEMS} identifiers")
    return [str(_check_text(v, what, MAX_ID_CHARS)) for v in values]


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """The validated column values of an event, before seq, time and hashes are assigned."""
    try:
        action = AuditAction(event.action)
        outcome = Outcome(event.outcome)
    except ValueError as exc:
        raise AuditWriteFailed(f"unknown audit action or outcome: {exc}") from None
    actor = event.actor
    return {
        "actor": _check_text(actor.username, "actor", MAX_ID_CHARS),
        "actor_role": _check_text(actor.role, "actor role", 100),
        "action": action.value,
        "outcome": outcome.value,
        "archives": dump_json(_check_ids(event.archives, "archives")),
        "groups": dump_json(_check_ids(event.groups, "groups")),
        "grant_id": _check_text(event.grant_id, "grant id", MAX_ID_CHARS, optional=True),
        "purpose": _check_text(event.purpose, "purpose", MAX_TEXT_CHARS, optional=True),
        "reason": _check_text(event.reason, "reason", MAX_TEXT_CHARS, optional=True),
        "client": _check_text(actor.client, "client address", MAX_ID_CHARS, optional=True),
        "detail": dump_json(_check_detail(dict(event.detail), "detail", 0)),
    }


def canonical_for_columns(columns: Mapping[str, Any]) -> bytes:
    """Canonical bytes for a new row (the definitive, key-checked path).

    The time, action and outcome may also come as stored (``audit.stored``).
    """
    time, action, outcome = written(columns["time"], columns["action"], columns["outcome"])
    entry = {
        "action": action,
        "actor": columns["actor"],
        "actor_role": columns["actor_role"],
        "archives": json.loads(columns["archives"]),
        "client": columns["client"],
        "detail": json.loads(columns["detail"]),
        "grant_id": columns["grant_id"],
        "groups": json.loads(columns["groups"]),
        "outcome": outcome,
        "prev_hash": columns["prev_hash"].hex(),
        "purpose": columns["purpose"],
        "reason": columns["reason"],
        "seq": columns["seq"],
        "time": time,
        "v": ENTRY_FORMAT_VERSION,
    }
    try:
        data = canonical_entry_bytes(entry)
    except (ValueError, UnicodeEncodeError) as exc:
        raise AuditWriteFailed(f"audit entry cannot be encoded: {exc}") from None
    if len(data) > MAX_ENTRY_BYTES:
        raise AuditWriteFailed(f"audit entry is larger than {MAX_ENTRY_BYTES} bytes")
    return data


_escape = json.encoder.encode_basestring  # the C escaper json.dumps(ensure_ascii=False) uses
# A JSON list of strings free of control characters, escaped as json.dumps escapes
# them (only \" and \\): such text is necessarily canonical. The string pattern is
# unrolled (runs of plain characters between escapes) so the engine does not branch
# on every character.
_PLAIN = r'[^"\\\x00-\x1f\x7f-\x9f]'
_STR = rf'"{_PLAIN}*(?:\\["\\]{_PLAIN}*)*"'
_SIMPLE_LIST = re.compile(rf"\[(?:{_STR}(?:,{_STR})*)?\]")
_VALID_LISTS: set[str] = set()
_VALID_OBJECTS: set[str] = set()
_CACHE_LIMIT = 100_000


# ``["..."]`` around printable ASCII other than ``"`` and ``\``: the common archives
# column (one archive number), necessarily canonical. One C call proves it; archive
# numbers seldom repeat, so it is proven anew on every row rather than cached.
_ONE_PLAIN = re.compile(r'\["[ !#-\[\]-~]*"\]')


def _one_plain_string(text: Any) -> bool:
    """``["..."]`` around printable ASCII with nothing to escape (see ``_ONE_PLAIN``)."""
    return type(text) is str and _ONE_PLAIN.fullmatch(text) is not None


def _is_canonical(text: Any, kind: type) -> bool:
    """True when a stored JSON column is exactly the canonical text of a value of ``kind``.

    Only then may it be spliced into the canonical bytes as-is: a column that
    is one well-formed canonical JSON value cannot shift bytes between fields.
    Results are cached because a log repeats the same few groups and details.
    """
    cache = _VALID_LISTS if kind is list else _VALID_OBJECTS
    if text in cache:
        return True
    if kind is list and _one_plain_string(text):
        return True
    if kind is list and type(text) is str and _SIMPLE_LIST.fullmatch(text):
        ok = True  # the common case (groups, several archives), proven without parsing
    else:
        ok = _parses_canonical(text, kind)
    if ok:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache.add(text)
    return ok


def _parses_canonical(text: Any, kind: type) -> bool:
    try:
        value = json.loads(text)
        ok = isinstance(value, kind) and _COMPACT.encode(value) == text
        if ok and kind is list:
            ok = all(isinstance(v, str) for v in value)
    except (ValueError, TypeError):
        return False
    return ok


def canonical_from_row(row: Sequence[Any]) -> bytes:
    """Re-derive the hashed bytes from a stored row (ENTRY_COLUMNS order), never trusting it.

    Columns after ``ENTRY_COLUMNS`` (the MAC) may follow and are ignored.

    The fast path writes the canonical JSON directly (keys in sorted order,
    strings escaped exactly as ``json.dumps`` does) and splices in JSON columns
    proven canonical; it is about three times faster than building and
    encoding a dict, which is what keeps a million-entry verification within
    budget. Anything unusual takes the definitional path. Raises ValueError
    when a JSON column no longer parses: an edit, reported as such.

    ``leaves_from_rows`` repeats this fast path inline for the verifier's
    batches: a change to one is a change to both (a test holds them equal).
    """
    (
        seq,
        time,
        actor,
        role,
        action,
        outcome,
        archives,
        groups,
        grant_id,
        purpose,
        reason,
        client,
        detail,
        prev_hash,
    ) = row[:14]  # the stored hash and the MAC that may follow are outside the canonical bytes
    lists, objects, escape = _VALID_LISTS, _VALID_OBJECTS, _escape
    # Rows straight from the driver carry the stored integers (``audit.stored``):
    # their JSON text comes from tables of names known to need no escaping, and
    # the time's second from a cache, so the common row costs no escaping here.
    if type(time) is int and time >= 1_000_000:
        # Its last six decimal digits are the microseconds: no division, no padding.
        prefix = SECOND_QUOTED.get(time // 1_000_000) or second_quoted(time // 1_000_000)
        time_json = prefix + str(time)[-6:] + 'Z"' if prefix else escape(f"?{time}")
    elif type(time) is int:
        time_json = escape(time_text(time))
    else:
        time_json = escape(time) if type(time) is str else ""
    action_json = ACTION_JSON.get(action) if type(action) is int else None
    if action_json is None:
        action = written(None, action, None)[1]
        action_json = escape(action) if type(action) is str else None
    outcome_json = OUTCOME_JSON.get(outcome) if type(outcome) is int else None
    if outcome_json is None:
        outcome = written(None, None, outcome)[2]
        outcome_json = escape(outcome) if type(outcome) is str else None
    if (
        time_json
        and action_json is not None
        and outcome_json is not None
        and type(seq) is int
        # A log repeats its groups and details: a set lookup settles most rows.
        and (_one_plain_string(archives) or _is_canonical(archives, list))
        and (groups in lists or _is_canonical(groups, list))
        and (detail in objects or _is_canonical(detail, dict))
    ):
        try:
            # Two f-strings: past 30 parts CPython builds one through a list and str.join.
            return (
                f'{{"action":{action_json},"actor":{escape(actor)},'
                f'"actor_role":{escape(role)},"archives":{archives},'
                f'"client":{"null" if client is None else escape(client)},"detail":{detail},'
                f'"grant_id":{"null" if grant_id is None else escape(grant_id)},'
                f'"groups":{groups},"outcome":{outcome_json},'
                + f'"prev_hash":"{as_bytes(prev_hash).hex()}",'
                f'"purpose":{"null" if purpose is None else escape(purpose)},'
                f'"reason":{"null" if reason is None else escape(reason)},'
                f'"seq":{seq},"time":{time_json},"v":{ENTRY_FORMAT_VERSION}}}'
            ).encode()
        except (TypeError, UnicodeEncodeError):
            pass  # a NULL or non-text value where text belongs: fall through
    time, action, outcome = written(time, action, outcome)
    return _COMPACT.encode(
        {
            "action": action,
            "actor": actor,
            "actor_role": role,
            "archives": json.loads(archives),
            "client": client,
            "detail": json.loads(detail),
            "grant_id": grant_id,
            "groups": json.loads(groups),
            "outcome": outcome,
            "prev_hash": as_bytes(prev_hash).hex(),
            "purpose": purpose,
            "reason": reason,
            "seq": seq,
            "time": time,
            "v": ENTRY_FORMAT_VERSION,
        }
    ).encode("utf-8")


def leaves_from_rows(rows: Sequence[Sequence[Any]]) -> list[bytes]:
    """The leaf hash of each stored row: ``leaf_hash(canonical_from_row(row))``, batched.

    This is what a million-entry verification spends most of its time on, so
    the common row's bytes are built here in one loop rather than through a
    call per row: the fast path of ``canonical_from_row`` inlined, with the
    leaf's 0x00 prefix written into the same string instead of copied in
    front of it afterwards. It takes exactly the rows that path takes, by the
    same tests, and builds the same bytes; any other row (a second not yet
    cached included) goes through ``canonical_from_row`` itself. Raises as
    that does.
    """
    lists, objects, escape, one_plain = _VALID_LISTS, _VALID_OBJECTS, _escape, _ONE_PLAIN.fullmatch
    seconds, actions, outcomes = SECOND_QUOTED, ACTION_JSON, OUTCOME_JSON
    canonical, sha, version = canonical_from_row, hashlib.sha256, ENTRY_FORMAT_VERSION
    leaves: list[bytes] = []
    append = leaves.append
    for row in rows:
        (
            seq,
            time,
            actor,
            role,
            action,
            outcome,
            archives,
            groups,
            grant_id,
            purpose,
            reason,
            client,
            detail,
            prev_hash,
        ) = row[:14]
        if (
            type(time) is int
            and time >= 1_000_000  # its last six decimal digits are the microseconds
            and (second := seconds.get(time // 1_000_000)) is not None
            and type(action) is int
            and (action_json := actions.get(action)) is not None
            and type(outcome) is int
            and (outcome_json := outcomes.get(outcome)) is not None
            and type(seq) is int
            and type(prev_hash) is bytes
            and (
                (type(archives) is str and one_plain(archives) is not None)
                or archives in lists
                or _is_canonical(archives, list)
            )
            and (groups in lists or _is_canonical(groups, list))
            and (detail in objects or _is_canonical(detail, dict))
        ):
            try:
                data = (
                    f'\x00{{"action":{action_json},"actor":{escape(actor)},'
                    f'"actor_role":{escape(role)},"archives":{archives},'
                    f'"client":{"null" if client is None else escape(client)},"detail":{detail},'
                    f'"grant_id":{"null" if grant_id is None else escape(grant_id)},'
                    f'"groups":{groups},"outcome":{outcome_json},'
                    + f'"prev_hash":"{prev_hash.hex()}",'
                    f'"purpose":{"null" if purpose is None else escape(purpose)},'
                    f'"reason":{"null" if reason is None else escape(reason)},'
                    f'"seq":{seq},"time":{second}{str(time)[-6:]}Z",'
                    f'"v":{version}}}'
                ).encode()
            except (TypeError, UnicodeEncodeError):
                data = b"\x00" + canonical(row)  # as canonical_from_row falls through
        else:
            data = b"\x00" + canonical(row)
        append(sha(data).digest())
    return leaves


def entry_dict_from_row(row: Sequence[Any]) -> dict[str, Any]:
    """A row as it appears in a bundle: the canonical fields plus the stored hash."""
    (
        seq,
        time,
        actor,
        role,
        action,
        outcome,
        archives,
        groups,
        grant_id,
        purpose,
        reason,
        client,
        detail,
        prev_hash,
        stored,
    ) = row
    time, action, outcome = written(time, action, outcome)  # as stored, from the driver

    def parsed(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return text  # exported as found; the verifier reports the entry as edited

    return {
        "action": action,
        "actor": actor,
        "actor_role": role,
        "archives": parsed(archives),
        "client": client,
        "detail": parsed(detail),
        "grant_id": grant_id,
        "groups": parsed(groups),
        "outcome": outcome,
        "prev_hash": as_bytes(prev_hash).hex(),
        "purpose": purpose,
        "reason": reason,
        "seq": seq,
        "time": time,
        "v": ENTRY_FORMAT_VERSION,
        "entry_hash": as_bytes(stored).hex(),
    }
