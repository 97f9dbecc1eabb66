"""Free text refuses NUL, other controls and bidirectional overrides, wherever it enters.

One validator (``vault.formats.check_text``) serves every entry point; these
tests drive each entry point with every forbidden code point hypothesis picks.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.settings import Settings
from tests.factories import SALES, archive
from vault.errors import ValidationFailed
from vault.records import free_text, plain_text
from vault.schema import load_schema

BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
# Forbidden everywhere; tab, newline and carriage return are the line-break family,
# folded into a space on one-line fields and allowed (CR only before LF) in multiline ones.
FORBIDDEN = [
    *range(0x00, 0x09),
    0x0B,
    0x0C,
    *range(0x0E, 0x20),
    *range(0x7F, 0xA0),
    *BIDI,
]
forbidden = st.sampled_from(FORBIDDEN).map(chr)
ordinary = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "Zs"), exclude_characters="\u2028\u2029"),
    max_size=20,
)


@given(before=ordinary, bad=forbidden, after=ordinary)
def test_one_line_text_refuses_every_forbidden_code_point(before, bad, after) -> None:
    with pytest.raises(ValidationFailed, match=r"^reason must not contain control or bidi"):
        plain_text(before + bad + after, "reason")


@given(before=ordinary, bad=st.one_of(forbidden, st.just("\r")), after=ordinary)
def test_multiline_text_refuses_them_too(before, bad, after) -> None:
    with pytest.raises(ValidationFailed, match=r"^interaction text must not contain"):
        free_text(before + bad + "x" + after, "interaction text", 20_000)


def test_tab_and_newline_stay_where_lines_are_allowed() -> None:
    assert free_text("第一行\r\n\t第二行\n", "text", 100) == "第一行\n\t第二行"
    assert plain_text("one\nline\tonly", "reason") == "one line only"


short = st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs")), max_size=15)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(before=short, bad=forbidden, after=short)  # within the shortest field's 40 characters
def test_profile_text_fields_refuse_them_naming_the_field(before, bad, after) -> None:
    schema = load_schema(Settings().schema_file)
    for field in ("company", "notes", "name"):
        if field not in schema.fields:
            continue
        with pytest.raises(ValidationFailed, match=f"field '{field}': must not contain control"):
            schema.validate_profile({field: before + bad + after + "x"}, limit=2000)


@pytest.mark.parametrize("bad", ["\x00", "\u202e", "\u2066", "\x1b", "\x85"])
def test_every_store_entry_point_refuses_them(store, bad: str) -> None:
    meta = store.filing.create(archive(), actor=SALES)
    no = meta.archive_no
    with pytest.raises(ValidationFailed, match="interaction text"):
        store.records.add_interaction(
            no, occurred_on="2026-01-02", channel="call", text=f"回访{bad}", actor=SALES
        )
    with pytest.raises(ValidationFailed, match="filename"):
        store.records.add_attachment(
            no,
            filename=f"invoice{bad}fdp.exe",
            content_type="application/pdf",
            stream=io.BytesIO(b"x"),
            actor=SALES,
        )
    with pytest.raises(ValidationFailed, match="field 'company': must not contain control"):
        store.archives.update(no, {"company": f"星河{bad}地产"}, actor=SALES)
    with pytest.raises(ValidationFailed, match="department"):
        store.filing.prepare(archive(department=f"销售{bad}一部"))
    with pytest.raises(ValidationFailed, match=r"consent\.notice"):
        store.filing.prepare(archive(consent={**archive()["consent"], "notice": f"v3{bad}"}))
