"""Changing a policy file is itself an audited event."""

from __future__ import annotations

import shutil
from pathlib import Path

from audit.events import SYSTEM, AuditAction
from policies.version import policy_files, record_policy_version
from tests.auditlog import entries


def test_policy_changes_are_recorded_once(vault, tmp_path: Path) -> None:
    files = []
    for original in policy_files(vault.settings.schema_file):
        copy = tmp_path / original.name
        shutil.copy(original, copy)
        files.append(copy)
    sink = vault.audit_log()
    assert record_policy_version(vault.engine, sink, actor=SYSTEM, files=files) is True
    assert record_policy_version(vault.engine, sink, actor=SYSTEM, files=files) is False
    policy = next(f for f in files if f.name == "policy.csv")
    policy.write_text(policy.read_text() + "\np, audit, cs_manager, *, *, allow\n")
    assert record_policy_version(vault.engine, sink, actor=SYSTEM, files=files) is True
    changes = [e for e in entries(sink) if e.action == AuditAction.POLICY_CHANGE]
    assert len(changes) == 2
    assert changes[0].detail["previous"] is None
    assert changes[1].detail["changed"] == ["policy.csv"]
    assert changes[1].detail["previous"]["policy.csv"] != changes[1].detail["current"]["policy.csv"]
