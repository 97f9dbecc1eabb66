"""Fixtures for policies tests: a database with a cast of users and archives.

Users cover every role; archives cover every classification, owned by ``alice``
with ``bob`` as a listed contact on the internal one. Tests pass time explicitly
(``T0``) and never sleep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from audit.guards import install_guards
from audit.log import AuditLog
from foundation.db import transaction
from foundation.settings import Settings
from policies.decision import Principal
from policies.directory import add_user, load_principal
from policies.engine import PolicyEngine
from policies.workflow import Workflow
from tests.tables import create_tables
from vault.keys import Keyring
from vault.models import Archive, ArchiveContact

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

CAST = [
    # username, roles, department, clearance
    ("alice", ["salesperson"], "sales", "top_secret"),
    ("bob", ["salesperson"], "sales", "internal"),
    ("carol", ["salesperson"], "east", "internal"),
    ("dan", ["salesperson"], "sales", "internal"),
    ("dh_sales", ["department_head"], "sales", "internal"),
    ("dh_east", ["department_head"], "east", "internal"),
    ("io", ["information_officer"], "cs", "internal"),
    ("io2", ["information_officer"], "cs", "internal"),
    ("sup", ["info_supervisor"], "cs", "internal"),
    ("csm", ["cs_manager"], "cs", "top_secret"),
    ("gm", ["general_manager"], "board", "top_secret"),
    ("comp", ["compliance"], "audit", "internal"),
    ("adm", ["admin"], "it", "internal"),
    # An information officer who is also the custodian of the top-secret archive.
    ("keeper", ["information_officer"], "cs", "top_secret"),
    # One person holding two stages' roles (for double-signing tests).
    ("both", ["department_head", "information_officer"], "sales", "internal"),
]

ARCHIVES = [
    ("A-INT", "internal", None),
    ("A-SEC", "secret", None),
    ("A-TOP", "top_secret", "keeper"),
    ("A-OLD", "internal", None),
]


@pytest.fixture
def db(engine: sa.Engine) -> sa.Engine:
    create_tables(engine)
    with transaction(engine) as s:
        for name, roles, dept, clearance in CAST:
            add_user(s, username=name, roles=roles, department=dept, clearance=clearance)
        add_user(
            s, username="ext", roles=["external"], external=True, credential_ref="LETTER-2025-001"
        )
        for no, cls, custodian in ARCHIVES:
            s.add(
                Archive(
                    archive_no=no,
                    category="general",
                    grade="A",
                    classification=cls,
                    owner="alice",
                    custodian=custodian,
                    department="sales",
                    retention_until=date(2020, 1, 1) if no == "A-OLD" else date(2035, 1, 1),
                )
            )
        s.flush()
        internal = s.exec(sa.select(Archive).where(Archive.archive_no == "A-INT")).scalar_one()
        s.add(ArchiveContact(archive_id=internal.id, username="bob"))
    return engine


@pytest.fixture
def pe() -> PolicyEngine:
    return PolicyEngine()


@pytest.fixture
def sink(db: sa.Engine, settings: Settings) -> AuditLog:
    """The real audit log on the cast's database (read it back with ``tests.auditlog.entries``).

    Installed as a vault installs it: append-only guards, and on PostgreSQL the
    function that takes the append lock and reads the head.
    """
    install_guards(db)
    return AuditLog(engine=db, keys=Keyring.generate(), settings=settings)


@pytest.fixture
def wf(sink: AuditLog, pe: PolicyEngine) -> Workflow:
    return Workflow(audit=sink, engine=pe)


@pytest.fixture
def who(db: sa.Engine) -> Callable[[str], Principal]:
    def load(username: str) -> Principal:
        with Session(db) as s:
            return load_principal(s, username)

    return load
