"""Filing archives: validation, numbering, consent at filing, and reading one back."""

from __future__ import annotations

import pytest

from audit.events import AuditAction
from audit.log import AuditLog
from tests.auditlog import entries
from tests.factories import SALES, archive, consent
from vault.errors import (
    ConsentMissing,
    ValidationFailed,
)
from vault.store import ArchiveStore


def test_create_and_read_back(store: ArchiveStore, sink: AuditLog) -> None:
    meta = store.filing.create(
        archive(profile={"name": "张 三", "mobile_phone": "+86 138 0013 8000"}), actor=SALES
    )
    assert meta.archive_no.startswith("KH-") and meta.classification == "internal"
    view = store.reader.read(
        meta.archive_no, ["identity", "contact"], actor=SALES, purpose="revisit"
    )
    assert view.content == {
        "identity": {"name": "张三"},
        "contact": {"mobile_phone": "13800138000"},
    }
    read = [e for e in entries(sink) if e.action == AuditAction.READ][-1]
    assert read.archives == (meta.archive_no,) and read.groups == ("identity", "contact")
    assert read.purpose == "revisit"


def test_archive_numbers_are_sequential_and_readable(store: ArchiveStore) -> None:
    first = store.filing.create(archive(), actor=SALES).archive_no
    second = store.filing.create(archive(), actor=SALES).archive_no
    assert int(second[-6:]) == int(first[-6:]) + 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"classification": "confidential"}, "classification must be one of"),
        ({"classification": "top_secret"}, "custodian"),
        ({"grade": "E"}, "grade must be one of"),
        ({"category": "vip"}, "category must be one of"),
        ({"owner": "Robert'); DROP TABLE"}, "owner must be a username"),
        ({"retention_until": "next year"}, "retention_until"),
        ({"archive_no": "123"}, "archive_no must look like"),
        # Full-width or Arabic-Indic digits would file a look-alike of KH-2026-000001.
        ({"archive_no": "KH-\uff12\uff10\uff12\uff16-000001"}, "archive_no must look like"),
        (
            {"archive_no": "KH-2026-\u0660\u0660\u0660\u0660\u0660\u0661"},
            "archive_no must look like",
        ),
        ({"colour": "red"}, "unknown key"),
        ({"profile": {"shoe_size": "42"}}, "unknown field 'shoe_size'"),
        ({"profile": {"mobile_phone": 13800138000}}, "must be a string"),
        ({"profile": {"name": "张" * 41}}, "longer than 40"),
        ({"profile": {"id_number": "110105194912310021"}}, "check character"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    store: ArchiveStore, overrides: dict, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        store.filing.create(archive(**overrides), actor=SALES)
    assert store.archives.list(actor=SALES).total == 0


def test_validation_messages_never_echo_values(store: ArchiveStore) -> None:
    with pytest.raises(ValidationFailed) as exc:
        store.filing.create(
            archive(profile={"mobile_phone": "99912345678", "id_number": "110105194912310021"}),
            actor=SALES,
        )
    assert "99912345678" not in exc.value.message and "110105194912310021" not in exc.value.message


def test_sensitive_group_needs_separate_consent(store: ArchiveStore) -> None:
    data = archive(consent=consent(sensitive=["whereabouts"]))
    with pytest.raises(ConsentMissing, match="health") as exc:
        store.filing.create(data, actor=SALES)
    assert "separate consent" in exc.value.message
    with pytest.raises(ConsentMissing, match="no recorded consent"):
        store.filing.create(archive(consent=None), actor=SALES)
    meta = store.filing.create(
        archive(consent=consent(sensitive=["whereabouts"]), profile={"name": "李四"}), actor=SALES
    )
    with pytest.raises(ConsentMissing):
        store.archives.update(meta.archive_no, {"health": "高血压"}, actor=SALES)


def test_consent_must_be_well_formed(store: ArchiveStore) -> None:
    bad = consent()
    bad["at"] = "2999-01-01T00:00:00+08:00"
    with pytest.raises(ValidationFailed, match="future"):
        store.filing.create(archive(consent=bad), actor=SALES)
    bad = consent(groups=["identity"], sensitive=["health"])
    with pytest.raises(ValidationFailed, match=r"must also be in consent\.groups"):
        store.filing.create(archive(consent=bad), actor=SALES)
