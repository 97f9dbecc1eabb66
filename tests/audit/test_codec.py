"""The verifier's fast re-hashing path gives exactly the canonical bytes of the definition."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from audit.codec import canonical_from_row, dump_json, event_fields
from audit.events import Actor, AuditAction, AuditEvent
from audit.merkle import canonical_entry_bytes

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
