"""The bulk import's shortcuts give the very bytes, rows and answers of the general paths.

An import seals, encodes, indexes and validates in batches; every reader, the
integrity check and older archives still go through the general recipes. Each
shortcut is compared here with the recipe it stands for, on generated input.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.bulk import BulkInsert
from vault import crypto
from vault import manifest as mf
from vault.crypto import Sealer
from vault.envelope import Envelope, content_aad, content_aads
from vault.errors import ValidationFailed
from vault.formats import InvalidValue
from vault.models import Archive, table_of
from vault.rows import encode
from vault.schema import SHIPPED_SCHEMA_FILE, ProfileSchema, load_schema
from vault.seed import SyntheticArchives
from vault.store import ArchiveStore

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
_parts = st.lists(st.one_of(_text, st.integers(0, 10**9), st.binary(max_size=20)), max_size=5)


@given(st.dictionaries(_text, _text, max_size=12))
def test_encode_is_json_dumps(fields: dict[str, str]) -> None:
    expected = json.dumps(fields, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert encode(fields) == expected.encode()


def test_encode_falls_back_for_anything_but_text() -> None:
    for odd in ({"a": 1}, {"a": None}, {"b": "x", 1: "y"}):
        try:
            expected: Any = json.dumps(
                odd, ensure_ascii=False, separators=(",", ":"), sort_keys=True
            )
        except TypeError as exc:
            with pytest.raises(type(exc)):
                encode(odd)  # type: ignore[arg-type]
            continue
        assert encode(odd) == expected.encode()  # type: ignore[arg-type]


@given(_parts, _parts)
def test_aad_tail_joins_to_aad(head: list[Any], tail: list[Any]) -> None:
    assert crypto.aad(*head, *tail) == crypto.aad(*head) + crypto.aad_tail(*tail)


@given(_text, st.lists(_text, max_size=6, unique=True), st.sampled_from(["internal", "secret"]))
def test_content_aads_are_content_aad(number: str, groups: list[str], level: str) -> None:
    assert content_aads(number, groups, level, 3, 7) == {
        g: content_aad(number, g, level, 3, 7) for g in groups
    }


@given(st.dictionaries(_text, st.binary(max_size=64), max_size=12))
def test_new_manifest_encoding_is_the_documents(sealed: dict[str, bytes]) -> None:
    assert mf.encode_new(sealed) == mf.of_new_archive(sealed).encode()
    assert mf.Manifest.decode(mf.encode_new(sealed)) == mf.of_new_archive(sealed)


def test_seal_many_opens_like_seal_with_fresh_nonces() -> None:
    sealer = Sealer(crypto.new_key(), 4)
    items = [(f"plain {i}".encode(), f"aad {i}".encode()) for i in range(50)]
    blobs = sealer.seal_many(items)
    assert [sealer.open(b, ad) for b, (_, ad) in zip(blobs, items, strict=True)] == [
        p for p, _ in items
    ]
    assert all(crypto.key_version_of(b) == 4 for b in blobs)
    nonces = {b[crypto.HEADER_LEN : crypto.HEADER_LEN + crypto.NONCE_LEN] for b in blobs}
    assert len(nonces) == len(blobs)
    with pytest.raises(crypto.InvalidCiphertext):  # each bound to its own associated data
        sealer.open(blobs[0], items[1][1])
    assert sealer.seal_many([]) == []


def test_new_keys_are_distinct_keys() -> None:
    keys = crypto.new_keys(64)
    assert len(set(keys)) == 64 and all(len(k) == crypto.KEY_LEN for k in keys)


def test_wrap_many_unwraps_as_wrap_does(store: ArchiveStore) -> None:
    envelope: Envelope = store.envelope
    deks = crypto.new_keys(5)
    numbers = [f"KH-2026-{i:06d}" for i in range(1, 6)]
    wrapped = envelope.wrap_many(list(zip(deks, numbers, strict=True)), "secret", 1)
    for dek, no, blob in zip(deks, numbers, wrapped, strict=True):
        opened = envelope.dek(no, "secret", 1, 1, blob)
        probe = opened.seal(b"x", b"y")
        assert Sealer(dek, 1).open(probe, b"y") == b"x"
    with pytest.raises(Exception, match="does not open"):  # bound to its archive number
        envelope.dek(numbers[1], "secret", 1, 1, wrapped[0])


def test_masked_names_of_many_match_one_by_one(store: ArchiveStore) -> None:
    names = store.masked_names
    archives = [
        ("KH-2026-000001", {"identity": {"name": "王小明"}}),
        ("KH-2026-000002", {"contact": {"mobile_phone": "13800138000"}}),
        ("KH-2026-000003", {"identity": {"name": "John Smith"}}),
    ]
    sealed = names.of_many(archives)
    assert sealed[1] is None
    opened = names.open_many([(no, blob) for (no, _), blob in zip(archives, sealed, strict=True)])
    assert opened == {"KH-2026-000001": "王**", "KH-2026-000002": None, "KH-2026-000003": "John *"}


def test_blind_index_buckets_are_the_keyed_hash(store: ArchiveStore) -> None:
    index = store.index
    for field, value in (("mobile_phone", "13800138000"), ("name", "王小明"), ("name", "李四")):
        mac = hmac.new(store.keys.index_key(field), value.encode(), hashlib.sha256).digest()
        assert index.bucket(field, value) == int.from_bytes(mac[:4], "big") & index.mask
    groups = {"identity": {"name": "王小明"}, "contact": {"mobile_phone": "13800138000"}}
    assert index.buckets(groups) == [
        (f, index.bucket(f, v))
        for f, v in (("name", "王小明"), ("mobile_phone", "13800138000"))
        if f in store.schema.searchable
    ]


# -- validation: the fast path answers as the field-by-field one ---------------------


def _field_by_field(schema: ProfileSchema, profile: dict[str, Any], limit: int) -> Any:
    """``validate_profile`` as it was written before its fast path: the reference."""
    out: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for key, value in profile.items():
        spec = schema.fields.get(key) if isinstance(key, str) else None
        if spec is None:
            problems.append(f"unknown field {key!r} (see `archive-vault schema`)")
            continue
        if value is None or value == "":
            continue
        try:
            out.setdefault(spec.group, {})[key] = spec.normalise(value, limit)
        except InvalidValue as exc:
            problems.append(f"field {key!r}: {exc}")
    return ("refused", problems) if problems else out


_SCHEMA = load_schema(SHIPPED_SCHEMA_FILE)
_SAMPLES = [r["profile"] for r in SyntheticArchives(seed=5).many(40)]
_ODD = st.sampled_from(
    [
        "",
        None,
        " ",
        "\t",
        "a\nb",
        "a\r\nb",
        "a\rb",
        "\u202e",
        "\x00",
        "\x7f",
        "\x85",
        "e\u0301",
        "ｆｕｌｌ",
        "x" * 2001,
        "已婚",
        "男",
        "13800138000",
        "+86 138-0013-8000",
        "010-12345678",
        "浙A12345",
        3,
        True,
        ["a"],
        {"a": "b"},
    ]
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SAMPLES),
    st.lists(
        st.tuples(st.sampled_from([*_SCHEMA.fields, "shoe_size"]), st.one_of(_ODD, _text)),
        max_size=4,
    ),
)
def test_fast_validation_answers_as_field_by_field(
    base: dict[str, Any], changes: list[tuple[str, Any]]
) -> None:
    profile = {**base, **dict(changes)}
    expected = _field_by_field(_SCHEMA, profile, 2000)
    if isinstance(expected, tuple):
        with pytest.raises(ValidationFailed) as exc:
            _SCHEMA.validate_profile(profile, limit=2000)
        assert exc.value.problems == expected[1]
    else:
        got = _SCHEMA.validate_profile(profile, limit=2000)
        assert got == expected
        assert [list(g) for g in got.values()] == [list(g) for g in expected.values()]


# -- bulk rows: stored exactly as a Core insert stores them --------------------------


def test_bulk_insert_stores_what_a_core_insert_stores(store: ArchiveStore) -> None:
    table = table_of(Archive)
    now = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)

    def row(no: str) -> dict[str, Any]:
        return {
            "archive_no": no,
            "category": "general",
            "grade": "B",
            "classification": "secret",
            "owner": "zhang.wei",
            "custodian": None,
            "department": "销售一部",
            "status": "active",
            "created_at": now,
            "updated_at": now,
            "retention_until": date(2036, 1, 1),
            "kek_version": 1,
            "dek_version": 1,
            "wrapped_dek": b"\x00\x01wrapped",
            "consent_notice": "v3",
            "consent_at": None,
            "consent_channel": "书面",
            "consent_groups": ["identity", "contact"],
            "consent_sensitive_groups": [],
            "manifest": b"m",
            "masked_name_ct": None,
        }

    columns = list(row("x"))
    constant = ("status", "created_at", "dek_version")
    bulk = BulkInsert(table, [c for c in columns if c not in constant], constant)

    def values(no: str) -> tuple[Any, ...]:
        return tuple(v for c, v in row(no).items() if c not in constant)

    fixed = {c: row("x")[c] for c in constant}
    with store.engine.begin() as conn:
        conn.execute(sa.insert(table), [row("KH-2026-000001")])
        bulk.run(conn, [values(n) for n in ("KH-2026-000002", "KH-2026-000003")], fixed)
        raw = [
            tuple(r)[1:]  # id differs; every other column compared as the database holds it
            for r in conn.exec_driver_sql(
                "SELECT id, " + ", ".join(columns[1:]) + " FROM archive ORDER BY id"
            )
        ]
    assert len(raw) == 3 and raw[0] == raw[1] == raw[2]
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        bulk.run(conn, [values("KH-2026-000001")], fixed)
    with pytest.raises(ValueError, match="constant columns"), store.engine.begin() as conn:
        bulk.run(conn, [values("KH-2026-000004")])


def test_bulk_insert_converts_repeated_values_as_each_row_alone(store: ArchiveStore) -> None:
    """Repeated dates and tuples of text are converted once per call; equal instants in two
    zones (which a cache keyed by equality would merge) each store as their own Core insert."""
    from datetime import timedelta, timezone

    table = table_of(Archive)
    utc = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    beijing = utc.astimezone(timezone(timedelta(hours=8)))
    columns = (
        "archive_no", "category", "grade", "classification", "owner", "department",
        "status", "created_at", "updated_at", "retention_until", "kek_version",
        "dek_version", "consent_notice", "consent_at", "consent_channel",
        "consent_groups", "consent_sensitive_groups",
    )  # fmt: skip

    def row(no: str, at: datetime, groups: Any) -> tuple[Any, ...]:
        return (
            no, "general", "B", "secret", "zhang.wei", "", "active", utc, utc,
            date(2036, 1, 1), 1, 1, "v3", at, "书面", groups, ("identity",),
        )  # fmt: skip

    given_rows = [
        row("KH-2026-000001", utc, ("identity", "contact")),
        row("KH-2026-000002", beijing, ("identity", "contact")),
        row("KH-2026-000003", beijing, [1, True]),
        row("KH-2026-000004", utc, [True, 1]),
    ]
    bulk = BulkInsert(table, columns)
    select = "SELECT " + ", ".join(columns[1:]) + " FROM archive ORDER BY archive_no"
    with store.engine.begin() as conn:
        bulk.run(conn, given_rows)
        stored = [tuple(r) for r in conn.exec_driver_sql(select)]
        conn.execute(sa.delete(table))
        for r in given_rows:
            conn.execute(sa.insert(table), [dict(zip(columns, r, strict=True))])
        expected = [tuple(r) for r in conn.exec_driver_sql(select)]
        conn.execute(sa.delete(table))
    # Compared as text: 1 == True in Python, so [1, True] == [True, 1] would hide a merge.
    assert repr(stored) == repr(expected)
    assert repr(stored[2][-2]) != repr(stored[3][-2])
