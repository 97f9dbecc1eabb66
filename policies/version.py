"""Policy changes are audited: the policy files' fingerprint is compared at every start.

Policy is code (``model.conf``, ``policy.csv``, ``chains.toml``) and so is the
profile schema; a deployment that changes any of them changes who may see
what. The first process that starts with different files appends one
``policy:change`` entry naming the old and new fingerprints of each file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from audit.events import Actor, AuditAction, AuditEvent, AuditSink
from foundation.db import transaction
from policies.chains import CHAINS_FILE
from policies.engine import MODEL_FILE, POLICY_FILE
from vault.models import VaultMeta

META_KEY = "policy_fingerprint"


def fingerprint(files: Iterable[Path]) -> dict[str, str]:
    return {Path(f).name: hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files}


def policy_files(schema_file: Path) -> list[Path]:
    return [MODEL_FILE, POLICY_FILE, CHAINS_FILE, Path(schema_file)]


def record_policy_version(
    engine: Engine, audit: AuditSink, *, actor: Actor, files: Iterable[Path]
) -> bool:
    """Append a policy-change entry when the files differ from the last recorded ones."""
    current = fingerprint(files)
    encoded = json.dumps(current, sort_keys=True)
    try:
        return _record(engine, audit, actor, current, encoded)
    except IntegrityError:
        return False  # another worker starting at the same moment recorded it first


def _record(
    engine: Engine, audit: AuditSink, actor: Actor, current: dict[str, str], encoded: str
) -> bool:
    with transaction(engine) as session:
        row = session.get(VaultMeta, META_KEY, with_for_update=True)
        if row is not None and row.value == encoded:
            return False
        previous = json.loads(row.value) if row is not None else {}
        changed = sorted(
            k for k in current.keys() | previous.keys() if current.get(k) != previous.get(k)
        )
        audit.append(
            session,
            AuditEvent(
                action=AuditAction.POLICY_CHANGE,
                actor=actor,
                detail={"changed": changed, "current": current, "previous": previous or None},
            ),
        )
        if row is None:
            session.add(VaultMeta(key=META_KEY, value=encoded))
        else:
            row.value = encoded
            session.add(row)
    return True
