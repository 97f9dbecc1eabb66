"""One way for a grant to reach an engine: the revision counter, caught up on by
every process (``PolicyEngine.sync``). The signer here runs in another operating
system process with its own engine, as another API worker would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from foundation.db import transaction
from policies.directory import disable_user, load_principal, load_principal_counted
from policies.engine import PolicyEngine
from policies.errors import UnknownUser, UserDisabled
from policies.loading import GRANTS, GrantFeed, counters, load_archive_meta
from policies.models import AccessGrant, LoanEntry
from policies.roles import Action
from tests.policies.conftest import T0

M = timedelta(minutes=1)
ROOT = Path(__file__).resolve().parents[2]

# Signs (or returns a loan) in a process of its own: its own engine, its own
# Workflow, nothing shared with the test's process but the database.
_OTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from datetime import datetime
    from sqlmodel import Session
    from foundation.db import make_engine, transaction
    from policies.engine import PolicyEngine
    from policies.directory import load_principal
    from policies.workflow import Workflow

    url, schema, step, uid, user, at = sys.argv[1:7]
    db = make_engine(url, pg_schema=schema or None)
    with Session(db) as s:
        engine = PolicyEngine.from_db(s)
    class Unaudited:  # what the other process audits is not what these tests look at
        def append(self, session, event):
            return 0

    wf = Workflow(audit=Unaudited(), engine=engine)
    with transaction(db) as s:
        who = load_principal(s, user)
        now = datetime.fromisoformat(at)
        if step == "approve":
            wf.signing.approve(s, uid, who, now=now)
        else:
            wf.loans.close(s, uid, who, now=now)
    """
)


def _in_other_process(db, step: str, uid: str, user: str, at) -> None:
    url = db.url.render_as_string(hide_password=False)
    schema = ""
    if db.dialect.name == "postgresql":  # the test's own schema, as its search path
        with db.connect() as conn:
            schema = conn.exec_driver_sql("SHOW search_path").scalar()
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, url, schema, step, uid, user, at.isoformat()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _file_loan(db, wf, who):
    with transaction(db) as s:
        req = wf.filing.file(
            s,
            who("carol"),
            kind="loan",
            archives=["A-INT"],
            purpose="contract_follow_up",
            reason="renewal",
            now=T0,
            hours=48,
            material="folder",
            copies=1,
        )
    with transaction(db) as s:
        wf.signing.approve(s, req.uid, who("dh_east"), now=T0 + M)
    return req


def _decide(db, engine, principal, at):
    """As a unit of work: catch up on the caller's transaction, then decide."""
    with Session(db) as s:
        engine.sync(s)
        meta = load_archive_meta(s, "A-INT")
    return engine.decide(principal, Action.READ, meta, now=at)


def test_grant_approved_in_another_process_counts_here_and_its_return_stops_at_once(db, wf, who):
    with Session(db) as s:
        here = PolicyEngine.from_db(s)  # this worker, started before the approval
    req = _file_loan(db, wf, who)
    at = T0 + 3 * M
    assert not _decide(db, here, who("carol"), at).allowed
    _in_other_process(db, "approve", req.uid, "io", T0 + 2 * M)
    with Session(db) as s:
        loan = s.exec(select(LoanEntry)).one()
    # Not usable until the borrower confirms the register line (Art 19.5).
    assert not _decide(db, here, who("carol"), at).allowed
    with transaction(db) as s:
        wf.loans.confirm(s, loan.uid, who("carol"), now=at)
    assert _decide(db, here, who("carol"), at).allowed
    # Returned in the other process: the very next decision here, at the same
    # instant, is a denial.
    _in_other_process(db, "close", loan.uid, "carol", at)
    decision = _decide(db, here, who("carol"), at)
    assert not decision.allowed
    assert here.revision == _latest_revision(db)


def test_the_approving_process_sees_its_grant_only_by_catching_up(db, wf, pe, who):
    req = _file_loan(db, wf, who)
    with transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io"), now=T0 + 2 * M)
        loan = s.exec(select(LoanEntry)).one()
        wf.loans.confirm(s, loan.uid, who("carol"), now=T0 + 2 * M)
    with Session(db) as s:
        meta = load_archive_meta(s, "A-INT")
    # The workflow's own engine was not told behind the database's back ...
    assert not pe.decide(who("carol"), Action.READ, meta, now=T0 + 3 * M).allowed
    # ... it learns of the grant the way every other process does.
    assert _decide(db, pe, who("carol"), T0 + 3 * M).allowed


def test_a_rolled_back_approval_never_grants(db, wf, pe, who):
    req = _file_loan(db, wf, who)
    before = _latest_revision(db)
    with pytest.raises(RuntimeError), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io"), now=T0 + 2 * M)
        raise RuntimeError("the transaction fails after the approval")
    with Session(db) as s:
        assert s.exec(select(AccessGrant)).first() is None
        assert pe.sync(s) == 0
    assert _latest_revision(db) == before
    assert not _decide(db, pe, who("carol"), T0 + 3 * M).allowed


def _latest_revision(db) -> int:
    with Session(db) as s:
        return max([0, *(g.rev for g in s.exec(select(AccessGrant)).all())])


def test_principal_with_counters_is_the_principal_and_the_counters(db, wf, who):
    """The audited read's first statement: the same principal and the same counter values
    as the two reads it replaces, and the same refusals."""
    req = _file_loan(db, wf, who)
    with transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io"), now=T0 + 2 * M)
    names = (GRANTS, "decoys", "never-made")
    for name in ("carol", "io", "ext"):
        with Session(db) as s:
            principal, seen = load_principal_counted(s, name, names)
            assert principal == load_principal(s, name)
            assert seen == counters(s, *names)
    assert seen[GRANTS] == _latest_revision(db) > 0
    with Session(db) as s, pytest.raises(UnknownUser):
        load_principal_counted(s, "nobody", names)
    with transaction(db) as s:
        disable_user(s, "carol")
    with Session(db) as s, pytest.raises(UserDisabled):
        load_principal_counted(s, "carol", names)
    with Session(db) as s, pytest.raises(UserDisabled):
        load_principal_counted(s, "io", names, token_generation=99)


def test_counters_reads_several_rows_at_once_and_zero_for_a_missing_one(db, wf, who):
    with Session(db) as s:
        assert counters(s, GRANTS, "decoys", "never-made") == {
            GRANTS: 0,
            "decoys": 0,
            "never-made": 0,
        }
    req = _file_loan(db, wf, who)
    with transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io"), now=T0 + 2 * M)
    with Session(db) as s:
        seen = counters(s, "never-made", GRANTS)
        assert seen == {"never-made": 0, GRANTS: GrantFeed.latest(s)}
        assert seen[GRANTS] == _latest_revision(db) > 0
        # The counter a caller passes is the one caught up by, not read again.
        here = PolicyEngine()
        assert here.sync(s, latest=0) == 0 and here.revision == 0
        assert here.sync(s, latest=seen[GRANTS]) == 1
        assert here.revision == seen[GRANTS]


def test_a_slower_catch_up_never_puts_back_a_grant_a_newer_one_dropped(db, wf, who, monkeypatch):
    """Two threads of one worker catch up at once (the read path runs in a thread pool):
    one read the grant rows while the loan was out, the other after its return. The
    older rows, applied last, must not bring the returned grant back for decisions
    made by a thread that has already caught up with the return."""
    with Session(db) as s:
        here = PolicyEngine.from_db(s)
    req = _file_loan(db, wf, who)
    at = T0 + 3 * M
    with transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io"), now=T0 + 2 * M)
    with Session(db) as s:
        loan = s.exec(select(LoanEntry)).one()
    with transaction(db) as s:
        wf.loans.confirm(s, loan.uid, who("carol"), now=at)
    # Thread A reads the counter and the changed rows while the loan is out ...
    with Session(db) as s:
        seen_by_a = GrantFeed.latest(s)
        rows_of_a = GrantFeed.after(s, here.revision)
    assert rows_of_a
    # ... the loan is returned, and thread B catches up and is refused ...
    with transaction(db) as s:
        wf.loans.close(s, loan.uid, who("carol"), now=at)
    assert not _decide(db, here, who("carol"), at).allowed
    # ... then thread A applies what it read earlier.
    monkeypatch.setattr(GrantFeed, "after", staticmethod(lambda tx, rev: rows_of_a))
    with Session(db) as s:
        here.sync(s, latest=seen_by_a)
    monkeypatch.undo()
    # B, or any thread that caught up with the return, decides without syncing again.
    with Session(db) as s:
        meta = load_archive_meta(s, "A-INT")
    assert not here.decide(who("carol"), Action.READ, meta, now=at).allowed
    assert here.revision == _latest_revision(db)
