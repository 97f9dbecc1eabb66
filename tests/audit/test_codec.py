"""The verifier's fast re-hashing path gives exactly the canonical bytes of the definition."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.codec import canonical_from_row, dump_json, event_fields, leaves_from_rows
from audit.events import Actor, AuditAction, AuditEvent
from audit.merkle import canonical_entry_bytes, leaf_hash
from audit.stored import ACTION_CODES, OUTCOME_CODES, time_micros

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
maybe = st.none() | text
json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text
detail = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
).filter(lambda v: isinstance(v, dict)) | st.dictionaries(text, json_leaf, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(1, 2**62),
    actor=text,
    role=text,
    action=text,
    outcome=text,
    archives=st.lists(text, max_size=4),
    groups=st.lists(text, max_size=4),
    grant=maybe,
    purpose=maybe,
    reason=maybe,
    client=maybe,
    detail=detail,
    prev=st.binary(min_size=32, max_size=32),
    time=text,
)
def test_fast_row_path_equals_the_definition(
    seq,
    actor,
    role,
    action,
    outcome,
    archives,
    groups,
    grant,
    purpose,
    reason,
    client,
    detail,
    prev,
    time,
) -> None:
    row = (
        seq,
        time,
        actor,
        role,
        action,
        outcome,
        dump_json(archives),
        dump_json(groups),
        grant,
        purpose,
        reason,
        client,
        dump_json(detail),
        prev,
        b"",
    )
    expected = canonical_entry_bytes(
        {
            "action": action,
            "actor": actor,
            "actor_role": role,
            "archives": archives,
            "client": client,
            "detail": detail,
            "grant_id": grant,
            "groups": groups,
            "outcome": outcome,
            "prev_hash": prev.hex(),
            "purpose": purpose,
            "reason": reason,
            "seq": seq,
            "time": time,
            "v": 1,
        }
    )
    assert canonical_from_row(row) == expected


def test_non_canonical_json_columns_take_the_definitional_path() -> None:
    base = [
        1,
        "t",
        "a",
        "r",
        "x",
        "o",
        '["A"]',
        "[]",
        None,
        None,
        None,
        None,
        '{"a":1,"b":2}',
        b"\0" * 32,
        b"",
    ]
    good = canonical_from_row(tuple(base))
    spaced = list(base)
    spaced[12] = '{"b": 2, "a": 1}'
    assert canonical_from_row(tuple(spaced)) == good  # same values, same canonical bytes
    spliced = list(base)
    spliced[6] = '["A"],"client":"x"'
    try:
        result = canonical_from_row(tuple(spliced))
    except ValueError:
        return
    assert result != good and json.loads(result)["client"] is None


def test_empty_detail_strings_are_recorded_as_absent() -> None:
    fields = event_fields(
        AuditEvent(
            action=AuditAction.USER_CHANGE,
            actor=Actor("admin", "admin"),
            detail={"department": "", "nested": {"x": ""}},
        )
    )
    assert '"department":null' in fields["detail"] and '"x":null' in fields["detail"]


# Rows as the verifier reads them straight from the driver: integers where the log
# stores them (``audit.stored``), then a column or two replaced by what a hand-edit in
# SQLite could leave there instead, so the batch meets every way out of its fast path.
_T0 = time_micros("2024-01-01T00:00:00.000000Z")
_SURROGATE = st.just("a\udc80b")
_ODD = st.none() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=4) | st.floats()
_NEAR_JSON = st.sampled_from(
    ['["A"],"client":"x"', '["A", "B"]', '["\\u00e9"]', '["a\\"b"]', "[1]", "[", '"x"', "{}"]
)
_ODD_COLUMNS = [
    _ODD | st.integers(1, 9).map(str),  # seq
    _ODD
    | st.integers(-(2**40), 1_999_999)
    | st.integers(2**58, 2**62)
    | st.just("2024-01-01T00:00:00.000000Z"),  # time
    _ODD | _SURROGATE | st.just('q"\\\n'),  # actor
    _ODD | _SURROGATE,  # role
    _ODD | st.integers(-1, 60) | st.just("archive:read"),  # action
    _ODD | st.integers(-1, 5) | st.just("allowed"),  # outcome
    _ODD | _NEAR_JSON | st.just('["KH-1\x7f"]') | st.just('["\u00e9"]'),  # archives
    _ODD | _NEAR_JSON,  # groups
    _ODD | _SURROGATE,  # grant
    _ODD,  # purpose
    _ODD,  # reason
    _ODD,  # client
    _ODD | _NEAR_JSON | st.just('{"b": 2, "a": 1}') | st.just("[]"),  # detail
    # prev_hash; no large integer: bytes(n) is n zero bytes, one by one as in a batch
    st.none()
    | st.integers(-1, 64)
    | st.floats()
    | text
    | st.binary(max_size=33)
    | st.binary(min_size=32, max_size=32).map(bytearray),
]
_ROW = st.tuples(
    st.integers(1, 2**62),
    st.integers(_T0, _T0 + 9_999_999),  # ten seconds: cached and uncached ones alike
    text,
    text,
    st.sampled_from(sorted(ACTION_CODES.values())),
    st.sampled_from(sorted(OUTCOME_CODES.values())),
    st.from_regex(r'\["[A-Z0-9-]{1,12}"\]', fullmatch=True)
    | st.lists(text, max_size=3).map(dump_json),
    st.lists(text, max_size=3).map(dump_json),
    maybe,
    maybe,
    maybe,
    maybe,
    detail.map(dump_json),
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=32),  # entry_hash: not hashed
    st.none() | st.binary(max_size=32),  # mac: not hashed
)


@st.composite
def _rows(draw: st.DrawFn) -> tuple:
    row = list(draw(_ROW))
    for column in draw(st.lists(st.integers(0, len(_ODD_COLUMNS) - 1), max_size=2)):
        row[column] = draw(_ODD_COLUMNS[column])
    return tuple(row)


def _one_by_one(row: tuple) -> bytes | type[Exception]:
    try:
        return leaf_hash(canonical_from_row(row))
    except (ValueError, TypeError) as exc:
        return type(exc)


@settings(max_examples=500, deadline=None)
@given(st.lists(_rows(), min_size=1, max_size=4))
def test_batched_leaves_are_the_leaves_of_the_rows_one_by_one(rows: list[tuple]) -> None:
    """Whatever a row holds, the batch gives its leaf or raises as the row alone does."""
    expected = [_one_by_one(row) for row in rows]
    failures = [e for e in expected if isinstance(e, type)]
    if failures:
        try:
            leaves_from_rows(rows)
        except (ValueError, TypeError) as exc:
            assert type(exc) is failures[0]
        else:
            raise AssertionError("a row that cannot be canonicalised was hashed in a batch")
    else:
        assert leaves_from_rows(rows) == expected


def test_batched_leaves_of_ordinary_rows_take_the_inlined_path() -> None:
    """The rows of a real log give the same leaves, a second's first row included."""
    base = time_micros("2025-03-04T05:06:07.000000Z")
    rows = [
        (
            i + 1,
            base + i * 997_331,  # a new second every row or so: cached and uncached alike
            "user001",
            'sales\u00e9 "q"',  # escaped and non-ASCII text
            ACTION_CODES["archive:read"],
            OUTCOME_CODES["allowed"],
            f'["KH-2024-{i:06d}"]' if i % 3 else '["KH-1","KH-2"]',
            '["contact","identity"]',
            None if i % 2 else f"grant-{i}",
            "client follow-up",
            None,
            "10.0.0.1",
            '{"fields":4}',
            bytes([i]) * 32,
            b"",
            None,
        )
        for i in range(50)
    ]
    assert leaves_from_rows(rows) == [leaf_hash(canonical_from_row(row)) for row in rows]
    leaf = leaves_from_rows(rows[:1])[0]
    assert json.loads(canonical_from_row(rows[0]))["time"] == "2025-03-04T05:06:07.000000Z"
    assert leaf == leaf_hash(canonical_from_row(rows[0]))
