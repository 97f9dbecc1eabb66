"""The demo vault's cast can finish its own top-secret requests.

With one information officer keeping every top-secret archive, every top-secret
view or loan in the demo waited forever (one person signs at most one stage).
The demo now has two officers and spreads the custodianships over them and the
supervisor; this walks a view and a loan of each custodian's top-secret archive
to approval with the demo's accounts, by usual signers only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from audit.guards import install_guards
from audit.log import AuditLog
from cli.service import DEMO_USERS
from foundation.db import transaction
from foundation.settings import Settings
from policies import reach
from policies.directory import add_user, load_principal
from policies.models import AccessRequest, RequestSignature
from policies.workflow import Workflow
from tests.tables import create_tables
from vault.keys import Keyring
from vault.models import Archive
from vault.seed import DEMO_CUSTODIANS, DEMO_SALESPEOPLE, SyntheticArchives

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROLES = {name: set(roles) for name, roles, *_ in DEMO_USERS}


def test_the_demos_custodians_are_officers_or_the_supervisor_and_never_one_alone() -> None:
    officers = [n for n, roles in ROLES.items() if "information_officer" in roles]
    assert len(officers) >= 2
    assert all(ROLES[c] & {"information_officer", "info_supervisor"} for c in DEMO_CUSTODIANS)
    keepers = {
        row["custodian"]
        for row in SyntheticArchives(seed=2026, pool=20).many(400)
        if row["classification"] != "internal"
    }
    assert keepers == set(DEMO_CUSTODIANS)


@pytest.fixture
def demo(engine: sa.Engine, settings: Settings) -> Workflow:
    create_tables(engine)
    with transaction(engine) as s:
        for name, roles, dept, clearance, credential in DEMO_USERS:
            add_user(
                s,
                username=name,
                roles=roles,
                department=dept,
                clearance=clearance,
                external=credential is not None,
                credential_ref=credential,
            )
        for i, custodian in enumerate(DEMO_CUSTODIANS):
            owner, department = DEMO_SALESPEOPLE[i % len(DEMO_SALESPEOPLE)]
            s.add(
                Archive(
                    archive_no=f"TS-{i}",
                    category="general",
                    grade="A",
                    classification="top_secret",
                    owner=owner,
                    custodian=custodian,
                    department=department,
                    retention_until=date(2035, 1, 1),
                )
            )
    install_guards(engine)
    return Workflow(audit=AuditLog(engine=engine, keys=Keyring.generate(), settings=settings))


@pytest.mark.parametrize("requester", ["li.na", "wang.fang"])
@pytest.mark.parametrize("kind", ["view", "loan"])
def test_a_top_secret_view_or_loan_in_the_demo_is_filed_and_finished(
    engine: sa.Engine, demo: Workflow, kind: str, requester: str
) -> None:
    extra = {"hours": 24, "material": "客户档案", "copies": 1} if kind == "loan" else {}
    for i, custodian in enumerate(DEMO_CUSTODIANS):
        now = T0 + timedelta(hours=i)
        with transaction(engine) as s:
            req = demo.filing.file(
                s,
                load_principal(s, requester),
                kind=kind,
                archives=[f"TS-{i}"],
                purpose="customer_service",
                reason="客户来电",
                now=now,
                **extra,
            )
        for step in range(len(req.stages)):
            with Session(engine) as s:
                row = s.exec(select(AccessRequest).where(AccessRequest.uid == req.uid)).one()
                may = reach.signers_now(s, row)
            # An officer other than the custodian signs the officer's stage.
            signer = next((p for p in may if p != custodian), may[0])
            with transaction(engine) as s:
                done = demo.signing.approve(
                    s, req.uid, load_principal(s, signer), now=now + timedelta(minutes=step + 1)
                )
        assert done.state == "approved", (custodian, done.stages)
        with Session(engine) as s:
            roles = s.exec(
                select(RequestSignature.signer_role).where(RequestSignature.request_id == done.id)
            ).all()
        assert roles[-1] == "custodian"
        assert not [r for r in roles if r.endswith("(alternate)")]
