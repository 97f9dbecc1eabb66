"""KEK rotation: rewrap only the DEKs, resumable after a crash, retire only empty versions."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from audit.events import SYSTEM
from tests.factories import SALES, archive
from vault.errors import KeyFileError, ValidationFailed
from vault.models import Archive, SealedGroup
from vault.rotation import kek_counts, rotate
from vault.store import ArchiveStore


class Crash(Exception):
    pass


def _fill(store: ArchiveStore, n: int) -> list[str]:
    return [
        store.filing.create(
            archive(profile={"name": f"客户{i}", "mobile_phone": f"1380000{i:04d}"}), actor=SALES
        ).archive_no
        for i in range(n)
    ]


def _content(store: ArchiveStore) -> dict[int, bytes]:
    with Session(store.engine) as s:
        return {(c.archive_id, c.group_name): c.ciphertext for c in s.exec(select(SealedGroup))}


def test_rotation_rewraps_deks_and_leaves_content_alone(store: ArchiveStore) -> None:
    numbers = _fill(store, 7)
    before = _content(store)
    (report,) = rotate(store, actor=SYSTEM, levels=["internal"])
    assert report.target_version == 2 and report.rewrapped == 7 and report.retired == [1]
    assert _content(store) == before  # content ciphertext untouched
    with Session(store.engine) as s:
        assert kek_counts(s)["internal"] == {2: 7}
    for no in numbers:
        assert (
            store.reader.read(no, ["identity"], actor=SALES)
            .content["identity"]["name"]
            .startswith("客户")
        )
    with pytest.raises(KeyFileError, match="retired"):
        store.keys.kek("internal", 1)
    # New archives are wrapped under the new version.
    new = store.filing.create(archive(), actor=SALES)
    with Session(store.engine) as s:
        assert (
            s.exec(select(Archive.kek_version).where(Archive.archive_no == new.archive_no)).one()
            == 2
        )


def test_interrupted_rotation_resumes_and_everything_stays_readable(store: ArchiveStore) -> None:
    store.settings.rotate_batch = 3
    numbers = _fill(store, 10)
    calls = []

    def crash_after_first_batch(level: str, done: int, total: int) -> None:
        calls.append(done)
        raise Crash

    with pytest.raises(Crash):
        rotate(store, actor=SYSTEM, levels=["internal"], progress=crash_after_first_batch)
    assert calls == [3]
    with Session(store.engine) as s:
        assert kek_counts(s)["internal"] == {1: 7, 2: 3}
    # Halfway: both versions are live and every archive still reads.
    fresh = ArchiveStore(vault=store.vault, audit=store.audit)
    for no in numbers:
        assert fresh.reader.read(no, ["contact"], actor=SALES).content["contact"]
    (report,) = rotate(fresh, actor=SYSTEM, levels=["internal"])
    assert report.resumed and report.target_version == 2 and report.rewrapped == 7
    assert report.retired == [1]
    for no in numbers:
        assert fresh.reader.read(no, ["contact"], actor=SALES).content["contact"]
    # A second, complete run is a new rotation, and safe.
    (again,) = rotate(fresh, actor=SYSTEM, levels=["internal"])
    assert not again.resumed and again.target_version == 3 and again.retired == [2]
    for no in numbers:
        assert fresh.reader.read(no, ["identity"], actor=SALES).content["identity"]


def test_rotation_per_level_is_separate(store: ArchiveStore) -> None:
    store.filing.create(archive(classification="secret", custodian="chen.jing"), actor=SALES)
    internal = store.filing.create(archive(), actor=SALES)
    reports = rotate(store, actor=SYSTEM, levels=["secret"])
    assert [r.level for r in reports] == ["secret"]
    with Session(store.engine) as s:
        counts = kek_counts(s)
    assert counts["secret"] == {2: 1} and counts["internal"] == {1: 1}
    assert store.reader.read(internal.archive_no, actor=SALES).content


def test_unknown_level_is_refused(store: ArchiveStore) -> None:
    with pytest.raises(ValidationFailed, match="unknown classification"):
        rotate(store, actor=SYSTEM, levels=["confidential"])
