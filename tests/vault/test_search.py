"""Blind-index search: exact matches after normalisation, and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from audit.events import AuditAction
from audit.log import AuditLog
from tests.auditlog import entries
from tests.factories import SALES, archive
from vault.errors import ValidationFailed
from vault.models import BlindIndex
from vault.store import ArchiveStore

ID = "11010519491231002X"  # a well-formed resident ID (checksum X)


def test_search_finds_exact_matches_after_normalisation(
    store: ArchiveStore, sink: AuditLog
) -> None:
    target = store.filing.create(
        archive(
            profile={
                "name": "张三",
                "mobile_phone": "13800138000",
                "id_number": "11010519491231002X",
                "licence_plate": "京A12345",
            }
        ),
        actor=SALES,
    )
    store.filing.create(
        archive(profile={"name": "张三丰", "mobile_phone": "13800138001"}), actor=SALES
    )
    for query in ("13800138000", "138 0013 8000", "+86 138-0013-8000", "0086 13800138000"):
        assert [
            m.archive_no for m in store.archives.search("mobile_phone", query, actor=SALES)
        ] == [target.archive_no]
    assert [
        m.archive_no for m in store.archives.search("id_number", "11010519491231002x", actor=SALES)
    ] == [target.archive_no]
    assert [
        m.archive_no for m in store.archives.search("licence_plate", "京a 12345", actor=SALES)
    ] == [target.archive_no]
    assert [m.archive_no for m in store.archives.search("name", " 张 三 ", actor=SALES)] == [
        target.archive_no
    ]
    assert store.archives.search("name", "张", actor=SALES) == []
    assert store.archives.search("mobile_phone", "13800138002", actor=SALES) == []
    event = [e for e in entries(sink) if e.action == AuditAction.SEARCH][-1]
    assert "13800138002" not in repr(event)
    assert len(event.detail["query_hmac"]) == 64


def test_non_searchable_and_invalid_queries(store: ArchiveStore) -> None:
    with pytest.raises(ValidationFailed, match="not searchable"):
        store.archives.search("health", "高血压", actor=SALES)
    with pytest.raises(ValidationFailed, match="mobile_phone: a mobile number"):
        store.archives.search("mobile_phone", "12345", actor=SALES)


def test_index_is_truncated_so_buckets_are_shared(store: ArchiveStore) -> None:
    # With the vault's index size, many values share a bucket: the index alone proves nothing.
    assert store.vault.index_bits <= 16
    buckets = {store.index.bucket("mobile_phone", f"1380000{i:04d}") for i in range(5000)}
    assert len(buckets) < 5000
    assert max(buckets) < 2**store.vault.index_bits


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    digits=st.lists(
        st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), min_size=2, max_size=6, unique=True
    )
)
def test_collisions_are_confirmed_by_decrypting(store: ArchiveStore, digits: list[str]) -> None:
    store.index.mask = 0  # every value in one bucket: worst case for false positives
    made = {}
    for d in digits:
        made[d] = store.filing.create(archive(profile={"mobile_phone": d}), actor=SALES).archive_no
    for d in digits:
        found = [m.archive_no for m in store.archives.search("mobile_phone", d, actor=SALES)]
        assert made[d] in found
        for no in found:  # every hit really holds that number, whatever shared its bucket
            assert (
                store.reader.read(no, ["contact"], actor=SALES).content["contact"]["mobile_phone"]
                == d
            )
    with Session(store.engine) as s:
        assert {b.value for b in s.exec(select(BlindIndex))} == {0}


def test_candidates_are_not_opened_and_a_match_opens_only_the_searched_group(
    store: ArchiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The primitives a decided search is made of: a query names the group its field lives
    in (the group a read decision is asked about), candidates come from the index without
    decrypting anything, and confirming one opens only that group."""
    no = store.filing.create(
        archive(profile={"name": "张三", "mobile_phone": "13800138000", "id_number": ID}),
        actor=SALES,
    ).archive_no
    opened: list[list[str]] = []
    real_open = store.reader.decrypt

    def spy(session, archive, groups):  # type: ignore[no-untyped-def]
        opened.append(list(groups))
        return real_open(session, archive, groups)

    monkeypatch.setattr(store.reader, "decrypt", spy)
    query = store.archives.search_query("mobile_phone", "138 0013 8000")
    assert query.group == "contact" and "13800138000" not in repr(query)
    assert store.archives.search_query("id_number", ID).group == "credentials"
    assert store.archives.search_query("name", "张三").group == "identity"
    with Session(store.engine) as s:
        ((candidate, meta),) = store.archives.candidates(s, query)
        assert meta.archive_no == no and opened == []
        assert store.archives.matches(s, candidate, query)
        other = store.archives.search_query("mobile_phone", "13900000000")
        assert store.archives.candidates(s, other) == [] or not store.archives.matches(
            s, candidate, other
        )
    assert opened[0] == ["contact"]
