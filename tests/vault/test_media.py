"""The stored media type of an upload is its lower-cased essence, parameters dropped."""

from __future__ import annotations

import io

import pytest

from tests.factories import SALES, archive
from vault.errors import ValidationFailed
from vault.store import ArchiveStore


def test_stored_type_is_reduced_to_its_essence(store: ArchiveStore) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    att = store.records.add_attachment(
        meta.archive_no,
        filename="a.txt",
        content_type="Text/Plain; charset=gbk; boundary=x",
        stream=io.BytesIO(b"x"),
        actor=SALES,
    )
    stored, chunks = store.records.open_attachment(meta.archive_no, att["uid"], actor=SALES)
    assert stored["content_type"] == "text/plain" and b"".join(chunks) == b"x"


@pytest.mark.parametrize("bad", ["", "html", "text/html\r\nX-Evil: 1", "a/b/c", "x" * 200 + "/y"])
def test_malformed_types_are_refused(store: ArchiveStore, bad: str) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    with pytest.raises(ValidationFailed, match="content type"):
        store.records.add_attachment(
            meta.archive_no,
            filename="a.bin",
            content_type=bad,
            stream=io.BytesIO(b"x"),
            actor=SALES,
        )
