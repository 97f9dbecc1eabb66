"""Export fingerprints at the policies level, with 5,000-row exports (no database).

50 leaked rows name their export among exports of overlapping archives, also
reordered and after a spreadsheet saved them; a file rendered plainly or marked
under another vault's key names none; every rendering is the same value to the
vault's normalisers.
"""

from __future__ import annotations

import csv
import io
import json
import random
import unicodedata
from pathlib import Path

import pytest

import vault
from policies.attribution import parse
from policies.fingerprint import (
    CONFIDENCE,
    Candidate,
    Fingerprinter,
    Row,
    binomial_tail,
    decoys_for,
)
from tests.spreadsheet import round_trip
from vault.formats import NORMALISERS
from vault.renderings import observe, render
from vault.schema import load_schema

SCHEMA = load_schema(Path(vault.__file__).parent / "profile_schema.toml")
KEY = bytes(range(32))
GROUPS = ("identity", "contact")
FIELDS = frozenset(f for g in GROUPS for f in SCHEMA.groups[g].fields)
NAMES = {n: n for n in SCHEMA.fields}


def _content(i: int) -> dict[str, dict[str, str]]:
    return {
        "identity": {"name": f"客户{i}", "gender": "男"},
        "contact": {
            "mobile_phone": f"13{i % 7 + 3}{i:08d}",
            "office_phone": f"010-{6000_0000 + i}",
            "company": f"星河地产，深圳市南山区科技路{i % 300 + 1}号",
        },
    }


def _exports(fp: Fingerprinter) -> tuple[dict[str, list[Row]], list[Candidate]]:
    """Four 5,000-row exports of overlapping archives (A and C hold the same ones)."""
    spans = {"FP-A": 0, "FP-B": 2500, "FP-C": 0, "FP-D": 1000}
    files, candidates = {}, []
    for uid, start in spans.items():
        rows = [(f"KH-2026-{n:06d}", _content(n)) for n in range(start + 1, start + 5001)]
        decoys = fp.decoy_numbers(uid, decoys_for(len(rows)), ["2026"], lambda no: False)
        files[uid] = fp.mark(uid, rows, decoys, GROUPS)
        candidates.append(Candidate(uid, frozenset(no for no, _ in rows), FIELDS, tuple(decoys)))
    return files, candidates


def _csv(rows: list[Row]) -> str:
    fields = [f for g in GROUPS for f in SCHEMA.groups[g].fields]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["archive_no", *fields])
    for no, content in rows:
        flat = {k: v for g in content.values() for k, v in g.items()}
        writer.writerow([no, *(flat.get(f, "") for f in fields)])
    return out.getvalue()


@pytest.fixture(scope="module")
def marked() -> tuple[Fingerprinter, dict[str, list[Row]], list[Candidate]]:
    fp = Fingerprinter(KEY, SCHEMA)
    files, candidates = _exports(fp)
    return fp, files, candidates


def test_fifty_rows_of_five_thousand_name_their_export(marked) -> None:
    fp, files, candidates = marked
    rng = random.Random(7)
    for uid in ("FP-A", "FP-B", "FP-C"):
        leaked = rng.sample(files[uid], 50)
        scores = fp.score(parse(_csv(leaked).encode(), NAMES), candidates, exports=20)
        assert scores[0].uid == uid and scores[0].confidence >= CONFIDENCE, scores[0]
        assert all(s.confidence < CONFIDENCE for s in scores[1:])


def test_reordered_rows_after_a_spreadsheet_still_name_it(marked) -> None:
    fp, files, candidates = marked
    leaked = random.Random(3).sample(files["FP-D"], 50)
    random.Random(4).shuffle(leaked)
    for encoding in ("utf-8-sig", "gb18030"):
        saved = round_trip(_csv(leaked), encoding=encoding)
        scores = fp.score(parse(saved, NAMES), candidates, exports=20)
        assert scores[0].uid == "FP-D" and scores[0].confidence >= CONFIDENCE


def test_a_json_excerpt_names_it(marked) -> None:
    fp, files, candidates = marked
    leaked = [{"archive_no": no, **c} for no, c in files["FP-B"][100:150]]
    scores = fp.score(parse(json.dumps(leaked).encode(), NAMES), candidates, exports=20)
    assert scores[0].uid == "FP-B" and scores[0].confidence >= CONFIDENCE


def test_a_file_that_never_left_the_vault_names_none(marked) -> None:
    fp, _, candidates = marked
    plain = [(f"KH-2026-{n:06d}", _content(n)) for n in range(1, 5001)]
    other = Fingerprinter(bytes(32 * [7]), SCHEMA).mark("FP-A", plain, [], GROUPS)
    for rows in (plain, other, plain[:50], other[:50]):
        scores = fp.score(parse(_csv(rows).encode(), NAMES), candidates, exports=20)
        assert all(s.confidence < CONFIDENCE for s in scores), scores[0]


def test_a_decoy_row_alone_names_its_export(marked) -> None:
    fp, files, candidates = marked
    decoys = set(candidates[0].decoys)
    assert len(decoys) == 5 and not decoys & candidates[0].archives
    row = next(r for r in files["FP-A"] if r[0] in decoys)
    scores = fp.score(parse(_csv([row]).encode(), NAMES), candidates, exports=20)
    assert scores[0].uid == "FP-A" and scores[0].decoy_rows == 1
    assert scores[0].confidence >= CONFIDENCE


def test_every_rendering_is_the_same_value() -> None:
    cases = {
        "mobile": "13800138000",
        "landline": "0755-8123456",
        "plate": "粤B12345",
        "text": "北京市朝阳区建国路88号3单元",
    }
    for ftype, value in cases.items():
        forms = {render(ftype, value, b) for b in (0, 1)}
        assert len(forms) == 2, ftype
        for bit in (0, 1):
            form = render(ftype, value, bit)
            assert observe(ftype, form) == bit
            if ftype == "text":
                assert unicodedata.normalize("NFKC", form) == value
            else:
                assert NORMALISERS[ftype](form) == value
    # Values a spreadsheet would take for a number or a date carry no bit.
    for value in ("88", "3月5日", "2026-01-02"):
        assert render("text", value, 1) == value and observe("text", value) is None
    assert render("name", "王小明", 1) == "王小明"


def test_the_tail_is_a_probability() -> None:
    assert binomial_tail(10, 0) == 1.0 and binomial_tail(10, 11) == 0.0
    assert binomial_tail(10, 10) == pytest.approx(2**-10)
    assert binomial_tail(2000, 2000) > 0.0 or binomial_tail(2000, 2000) == 0.0
    assert binomial_tail(100, 50) == pytest.approx(0.5397946186935895)
