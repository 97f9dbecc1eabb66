"""The inspection report's page escapes whatever the report holds."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.report_signature import sign_report, verify_report
from policies.inspection_html import render_html


def _body(message: str) -> dict:
    empty = {"total": 0, "items": [], "truncated": False}
    return {
        "inspection": "IN-0123456789",
        "vault_id": "v",
        "by": "qian.audit",
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
        "clean": False,
        "integrity_ok": False,
        "content": {
            "archives_checked": 1,
            "destroyed_skipped": 0,
            "kinds": {"group": {"ok": 0, "failed": 1}},
            "failing_archives": [{"archive_no": "KH-2026-000001", "kinds": ["group"]}],
        },
        "leak_case_texts": {"ok": 0, "failed": 0, "failing_cases": []},
        "audit_log": {
            "ok": False,
            "entries": 3,
            "checkpoints": 0,
            "problems": [{"kind": "edited", "seq": 2, "message": message}],
            "newest_checkpoint": None,
        },
        "findings": {
            "overdue_loans": empty,
            "past_retention": empty,
            "without_custodian": {
                "total": 1,
                "items": [
                    {
                        "archive_no": "KH-2026-000002",
                        "classification": "secret",
                        "custodian": None,
                        "problem": "no custodian is named",
                    }
                ],
                "truncated": False,
            },
            "grants_outliving_users": empty,
        },
    }


def test_the_page_escapes_and_names_the_failures() -> None:
    doc = sign_report(_body("<script>alert(1)</script>"), Ed25519PrivateKey.generate(), "o")
    page = render_html(doc)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "KH-2026-000001" in page and "KH-2026-000002" in page
    assert verify_report(doc).ok


def test_another_key_is_refused_when_one_is_pinned() -> None:
    doc = sign_report(_body("x"), Ed25519PrivateKey.generate(), "o")
    other = Ed25519PrivateKey.generate().public_key()
    verdict = verify_report(doc, other)
    assert not verdict.ok and "another key" in verdict.why
