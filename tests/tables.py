"""Every package's tables on one metadata, for tests that build a schema without migrations.

Each library package owns its table module; only something above them all (the
command line, or these tests) may import every one of them at once.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import SQLModel

import audit.models
import policies.detection_models
import policies.fingerprint_models
import policies.inspection_models
import policies.leak_duty_models
import policies.leak_evidence_models
import policies.leak_models
import policies.models
import vault.auth_models
import vault.models

MODEL_MODULES = (
    vault.models,
    vault.auth_models,
    audit.models,
    policies.models,
    policies.leak_models,
    policies.fingerprint_models,
    policies.leak_duty_models,
    policies.inspection_models,
    policies.detection_models,
    policies.leak_evidence_models,
)


def import_models() -> None:
    """The table modules are imported above; this names the dependency at the call site."""
    assert all(module.__name__ for module in MODEL_MODULES)


def create_tables(engine: sa.Engine) -> None:
    SQLModel.metadata.create_all(engine)
