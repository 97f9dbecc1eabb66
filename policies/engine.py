"""Access decisions: Casbin base policy + time-bounded grant links.

``PolicyEngine.decide(principal, action, archive, groups, now=...)`` is the one
question the store and the API ask before touching customer content. It is
deny-by-default and fails closed: an unknown action, role, group or
classification, a destroyed archive or a missing archive is a denial with a
reason, never an exception on the hot path and never an allow.

How a decision is made
  1. Attributes (owner/contact, clearance, classification) become the request's
     relation token; the principal's roles come from the database (``user_role``).
  2. Casbin's model is asked once per role, over the base policy lines of that
     (action, role): a handful of lines, whatever the number of grants. Grants
     are links checked at the injected instant (``policies.grants``).
  3. A ``deny`` line for any held role wins (separation of duties).
  4. For grant-based allows the grant record narrows the decision: which field
     groups it covers, its purpose and reason (which travel into the audit entry).

Grants reach the engine one way: :meth:`PolicyEngine.sync` on the caller's
transaction, before deciding, catches up with every grant change committed by
any process (``policies.loading``). The wording of every ``why`` is in
``policies.explain``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection
from sqlmodel import Session

from foundation.rawsql import RawTx
from policies import explain
from policies.casbin_model import CasbinModel, Line
from policies.chains import Chains, load_chains
from policies.decision import Decision, Principal
from policies.errors import ConfigError
from policies.grant_terms import Misfit, misfit
from policies.grants import NO_ARCHIVE, GrantLink, GrantLinks, scope, to_us
from policies.loading import GrantFeed, known_groups_or_shipped, link_of
from policies.roles import ARCHIVE_ACTIONS, RANK, Action, GrantState, Role, rank
from vault.meta import ArchiveMeta

POLICY_DIR = Path(__file__).resolve().parent
MODEL_FILE = POLICY_DIR / "model.conf"
POLICY_FILE = POLICY_DIR / "policy.csv"

_RELATIONS = ("*", "owner", "grant")
_ROLES = frozenset(Role.__members__.values())

# pycasbin logs every denial at WARNING; decisions are audited by us instead, and
# formatting a log line per decision would dominate the hot path.
logging.getLogger("casbin").setLevel(logging.ERROR)

Answer = tuple[str, bool, Line]  # role, allowed, the deciding policy line


def check_policy(lines: Sequence[Sequence[str]], source: str) -> None:
    """Refuse a base policy that names things the code does not know."""
    for line in lines:
        where = f"{source}: p, {', '.join(line)}"
        if len(line) != 5:
            raise ConfigError(f"{where}: expected action, role, classification, relation, effect")
        act, role, cls, rel, eft = line
        if act not in Action.__members__.values():
            raise ConfigError(f"{where}: unknown action {act!r}")
        if role not in _ROLES:
            raise ConfigError(f"{where}: unknown role {role!r}")
        if cls != "*" and cls not in RANK:
            raise ConfigError(f"{where}: unknown classification {cls!r}")
        if rel not in _RELATIONS:
            raise ConfigError(f"{where}: relation must be one of {', '.join(_RELATIONS)}")
        if eft not in ("allow", "deny"):
            raise ConfigError(f"{where}: effect must be allow or deny")


def relation(principal: Principal, archive: ArchiveMeta) -> str:
    """owner | uncleared_owner | other: the attribute part of a decision."""
    if principal.username == archive.owner or principal.username in archive.contacts:
        person = rank(principal.clearance, unknown=-1)
        marking = rank(archive.classification, unknown=99)
        return "owner" if person >= marking else "uncleared_owner"
    return "other"


@dataclass(frozen=True, slots=True)
class _Ask:
    """One decision's question, checked and reduced to Casbin's request tokens."""

    act: Action
    principal: Principal
    archive: ArchiveMeta | None
    requested: tuple[str, ...]
    roles: frozenset[str]
    cls: str
    rel: str
    obj: str
    at: int


class PolicyEngine:
    """Loads the policy files once, keeps grant links in memory, decides cheaply.

    Thread-safe (one lock around the model's evaluator and the link store).
    Call :meth:`sync` on the unit of work's transaction before deciding, to pick
    up grants approved, returned or revoked by any process.
    """

    def __init__(
        self,
        *,
        model_file: Path = MODEL_FILE,
        policy_file: Path = POLICY_FILE,
        chains: Chains | None = None,
        known_groups: Sequence[str] | None = None,
    ) -> None:
        self.links = GrantLinks()
        self._model = CasbinModel(model_file, policy_file, self.links)
        lines = self._model.lines
        check_policy(lines, str(policy_file))
        self._lock = threading.RLock()
        self._rev = 0
        self.chains = chains or load_chains()
        self.known_groups: tuple[str, ...] = known_groups_or_shipped(known_groups)
        self._owner_lines = {
            (a, r, c) for a, r, c, rel, e in lines if rel == "owner" and e == "allow"
        }
        self._allowing: dict[str, set[str]] = {}
        for a, r, _c, _rel, e in lines:
            if e == "allow":
                self._allowing.setdefault(a, set()).add(r)
        self.wording = explain.Wording(self.chains, self._allowing)

    @property
    def base_lines(self) -> list[Line]:
        """The base policy's lines (``policy.csv``), as Casbin read them."""
        return list(self._model.lines)

    # -- grants ---------------------------------------------------------------
    @classmethod
    def from_db(cls, session: Session, **kw: Any) -> PolicyEngine:
        """An engine with every active grant of the database loaded as links."""
        engine = cls(**kw)
        engine.sync(session)
        return engine

    @property
    def revision(self) -> int:
        return self._rev

    def sync(self, tx: Session | Connection | RawTx, *, latest: int | None = None) -> int:
        """Apply grant changes committed since the last sync; returns how many.

        The one way a grant reaches the engine. Runs before every decision (a
        revocation made by another process must count at once), so the common case
        is one precompiled query on the caller's own transaction. A caller that
        has just read the ``grants`` counter on that transaction (the audited read,
        with other counters) passes it as ``latest`` instead.
        """
        if latest is None:
            latest = GrantFeed.latest(tx)
        if latest == self._rev:
            return 0
        rows = GrantFeed.after(tx, self._rev)
        newest = max([latest, *(int(r.rev) for r in rows)])
        with self._lock:
            # Another thread caught up as far meanwhile: these rows may be older than
            # what it applied (a grant it dropped still active here), so they never
            # overwrite it, nor does the revision go back.
            if newest <= self._rev:
                return 0
            for row in rows:
                if row.state != GrantState.ACTIVE:
                    self.links.remove(row.uid)
                else:
                    self.links.put(link_of(row))
            self._rev = newest
        return len(rows)

    def sweep(self, now: datetime) -> list[str]:
        """Drop links that ended at or before ``now`` (memory only; see grants.py)."""
        with self._lock:
            return self.links.sweep(to_us(now))

    # -- decisions --------------------------------------------------------------
    def roles_allowing(self, action: str) -> set[str]:
        return set(self._allowing.get(action, ()))

    def decide(
        self,
        principal: Principal,
        action: Action | str,
        archive: ArchiveMeta | None = None,
        groups: Sequence[str] = (),
        *,
        now: datetime,
    ) -> Decision:
        ask = self._question(principal, action, archive, groups, now)
        if isinstance(ask, Decision):
            return ask
        answers = self._enforce(ask.act, ask)
        refused = self._separation_of_duties(ask, answers)
        if refused is not None:
            return refused
        allowed = [(role, rule) for role, ok, rule in answers if ok]
        if ask.act is Action.READ_MASKED:
            return self._masked(ask, allowed) or self._denial(ask)
        return (
            self._as_owner(ask, allowed)
            or self._by_grant(ask, allowed)
            or self._by_role(ask, allowed)
            or self._masked_read(ask)
            or self._denial(ask)
        )

    # -- the steps of a decision --------------------------------------------------
    def _question(
        self,
        principal: Principal,
        action: Action | str,
        archive: ArchiveMeta | None,
        groups: Sequence[str],
        now: datetime,
    ) -> _Ask | Decision:
        """Check the question and turn it into request tokens, or deny it outright."""
        try:
            act = Action(action)
        except ValueError:
            return explain.unknown_action(str(action))
        try:
            at = to_us(now)
        except ValueError:
            return explain.naive_clock(act)
        requested = tuple(dict.fromkeys(groups))
        unknown = [g for g in requested if g not in self.known_groups]
        if unknown:
            return explain.unknown_groups(act, unknown, self.known_groups)
        roles = frozenset(r for r in principal.roles if r in _ROLES)
        if not roles:
            return explain.no_role(act, principal)
        if act not in ARCHIVE_ACTIONS:
            # The archive, if one was passed, still shapes the explanation.
            return _Ask(act, principal, archive, requested, roles, "none", "none", NO_ARCHIVE, at)
        if archive is None:
            return explain.needs_archive(act)
        if archive.status != "active":
            return explain.destroyed(act, archive)
        if archive.classification not in RANK:
            return explain.unknown_classification(act, archive)
        return _Ask(
            act,
            principal,
            archive,
            requested,
            roles,
            archive.classification,
            relation(principal, archive),
            archive.archive_no,
            at,
        )

    def _enforce(self, action: Action, ask: _Ask) -> list[Answer]:
        """Casbin's answer for each of the principal's roles."""
        out: list[Answer] = []
        at_s = str(ask.at)
        user = ask.principal.username
        with self._lock:
            for role in sorted(ask.roles):
                if not self._model.has_lines(action, role):
                    out.append((role, False, ()))
                    continue
                ok, rule = self._model.enforce(
                    (action, role, ask.cls, ask.rel, user, ask.obj, at_s)
                )
                out.append((role, ok, rule))
        return out

    @staticmethod
    def _separation_of_duties(ask: _Ask, answers: Collection[Answer]) -> Decision | None:
        for role, _ok, rule in answers:
            if rule and rule[-1] == "deny":
                return explain.separation_of_duties(ask.act, role, rule)
        return None

    def _as_owner(self, ask: _Ask, allowed: list[tuple[str, Line]]) -> Decision | None:
        if ask.rel != "owner" or ask.archive is None:
            return None
        for role, _rule in allowed:
            if {(ask.act, role, ask.cls), (ask.act, role, "*")} & self._owner_lines:
                line = (ask.act.value, role, ask.cls, "owner", "allow")
                groups = ask.requested or self.known_groups
                return explain.as_owner(ask.act, ask.principal, ask.archive, line, groups)
        return None

    def _by_role(self, ask: _Ask, allowed: list[tuple[str, Line]]) -> Decision | None:
        for role, rule in allowed:
            if len(rule) == 5 and rule[3] == "*":
                return explain.by_role(ask.act, role, rule, ask.requested)
        return None

    def _masked_read(self, ask: _Ask) -> Decision | None:
        """A read nothing else allowed may still show that values exist (masked)."""
        if ask.act is not Action.READ or ask.archive is None:
            return None
        allowed = [(role, rule) for role, ok, rule in self._enforce(Action.READ_MASKED, ask) if ok]
        return self._masked(ask, allowed, act=Action.READ)

    def _masked(
        self, ask: _Ask, allowed: list[tuple[str, Line]], *, act: Action | None = None
    ) -> Decision | None:
        if not allowed or ask.archive is None:
            return None
        role, rule = allowed[0]
        nxt = self.wording.next_step(Action.READ, ask.principal, ask.archive)
        groups = ask.requested or self.known_groups
        return explain.masked(act or ask.act, role, rule, ask.archive, groups, nxt)

    def _by_grant(self, ask: _Ask, allowed: list[tuple[str, Line]]) -> Decision | None:
        rules = [rule for _r, rule in allowed if len(rule) == 5 and rule[3] == "grant"]
        if not rules:
            return None
        act, archive, requested = ask.act, ask.archive, ask.requested
        obj = archive.archive_no if archive else NO_ARCHIVE
        top = archive is not None and archive.classification == "top_secret"
        with self._lock:
            found = self.links.active(
                ask.principal.username, scope(obj, act, custodian=top), ask.at
            )
        # Only grants whose chain still covers the archive's current state (the
        # denial explains the others).
        grants = [g for g in found if misfit(g, archive) is None]
        if not grants:
            return None  # raced with an expiry between Casbin and here: fail closed
        needs_groups = act in (Action.READ, Action.EXPORT, Action.PROVIDE)
        best = next(
            (g for g in grants if not needs_groups or not requested or set(requested) <= g.groups),
            None,
        )
        if best is None:
            covered = max(grants, key=lambda g: len(g.groups & set(requested)))
            missing = [g for g in requested if g not in covered.groups]
            partly = self._partly_masked(ask, covered, missing)
            if partly is not None:
                return partly
            return self.wording.grant_lacks_groups(act, ask.principal, archive, covered, missing)
        shown = (
            tuple(g for g in (requested or self.known_groups) if g in best.groups)
            if needs_groups
            else ()
        )
        return explain.by_grant(act, ask.principal, archive, best, rules[0], shown)

    def _partly_masked(self, ask: _Ask, grant: GrantLink, missing: list[str]) -> Decision | None:
        """A read a grant covers in part: the rest masked, if the roles allow that."""
        if ask.act is not Action.READ or ask.archive is None:
            return None
        ok = [rule for _r, allowed, rule in self._enforce(Action.READ_MASKED, ask) if allowed]
        if not ok:
            return None
        shown = tuple(g for g in ask.requested if g in grant.groups)
        return explain.grant_partly_masked(grant, ok[0], shown, missing)

    def _denial(self, ask: _Ask) -> Decision:
        unfit = ended = None
        if ask.archive is not None:
            unfit = self._unfit_grant(ask.principal.username, ask.act, ask.archive, ask.at)
            if unfit is None:
                ended = self._ended_grant(ask.principal.username, ask.act, ask.archive, ask.at)
        return self.wording.denial(
            ask.act, ask.principal, ask.archive, ask.rel, unfit=unfit, ended=ended
        )

    def _unfit_grant(
        self, user: str, act: Action, archive: ArchiveMeta, at: int
    ) -> tuple[GrantLink, Misfit] | None:
        """An active grant of ``user`` on the archive that no longer covers it, if any."""
        with self._lock:
            grants = self.links.active(user, scope(archive.archive_no, act), at)
        for grant in grants:
            why = misfit(grant, archive)
            if why is not None:
                return grant, why
        return None

    def _ended_grant(
        self, user: str, act: Action, archive: ArchiveMeta, at: int
    ) -> GrantLink | None:
        """The latest-ending grant of ``user`` on the archive whose window is over."""
        top = archive.classification == "top_secret"
        with self._lock:
            ended = self.links.ended(user, scope(archive.archive_no, act, custodian=top), at)
        return ended[0] if ended else None
