"""Access decisions: Casbin base policy + time-bounded grant links + explanations.

``PolicyEngine.decide(principal, action, archive, groups, now=...)`` is the one
question the store and the API ask before touching customer content. It is
deny-by-default and fails closed: an unknown action, role, group or
classification, a destroyed archive or a missing archive is a denial with a
reason, never an exception on the hot path and never an allow.

How a decision is made
  1. Attributes (owner/contact, clearance, classification) become the request's
     relation token; the principal's roles come from the database (``user_role``).
  2. Casbin is asked once per role, with the base policy filtered to that
     (action, role): a handful of lines, whatever the number of grants. Grants
     are links checked at the injected instant (``policies.grants``).
  3. A ``deny`` line for any held role wins (separation of duties).
  4. For grant-based allows the grant record narrows the decision: which field
     groups it covers, its purpose and reason (which travel into the audit entry).

Every decision carries ``why``: the rule, role or grant behind it, and for a
denial what to do next ("file a view request; it needs ...").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import casbin
import sqlalchemy as sa
from casbin.core_enforcer import CoreEnforcer
from casbin.model import fast_policy_filter
from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from foundation.rawsql import Raw, RawTx
from policies.chains import Chains, load_chains
from policies.errors import AccessDenied, ConfigError, NotFound
from policies.grant_terms import Misfit, confirm_next_step, misfit
from policies.grants import NO_ARCHIVE, GrantLink, GrantLinks, scope, to_us
from policies.models import AccessGrant, PolicyCounter
from policies.roles import ARCHIVE_ACTIONS, KIND_FOR_ACTION, Action, GrantState, Role
from vault.meta import ArchiveMeta

POLICY_DIR = Path(__file__).resolve().parent
MODEL_FILE = POLICY_DIR / "model.conf"
POLICY_FILE = POLICY_DIR / "policy.csv"

_CLASSES = {"internal": 0, "secret": 1, "top_secret": 2}
_COUNTER_T = PolicyCounter.__table__  # type: ignore[attr-defined]
_GRANT_T = AccessGrant.__table__  # type: ignore[attr-defined]
_GRANT_COUNTER = Raw(sa.select(_COUNTER_T.c.value).where(_COUNTER_T.c.name == "grants"))
_GRANTS_AFTER = Raw(
    sa.select(_GRANT_T).where(_GRANT_T.c.rev > sa.bindparam("rev")).order_by(_GRANT_T.c.rev)
)
_ACTIVE_GRANTS_AFTER = Raw(
    sa.select(_GRANT_T)
    .where(_GRANT_T.c.rev > sa.bindparam("rev"), _GRANT_T.c.state == GrantState.ACTIVE.value)
    .order_by(_GRANT_T.c.rev)
)
_RELATIONS = ("*", "owner", "grant")

# pycasbin logs every denial at WARNING; decisions are audited by us instead, and
# formatting a log line per decision would dominate the hot path.
logging.getLogger("casbin").setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks. Built from the database by ``policies.directory.load_principal``."""

    username: str
    roles: frozenset[str]
    department: str = ""
    clearance: str = "internal"
    external: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))

    @property
    def role_label(self) -> str:
        """The roles as one string for an audit ``Actor``."""
        return ",".join(sorted(self.roles)) or "none"


def load_archive_meta(session: Session, archive_no: str) -> ArchiveMeta:
    """Read one archive's metadata and contacts; raises ``NotFound``."""
    from vault.models import Archive, ArchiveContact

    archive = session.exec(select(Archive).where(Archive.archive_no == archive_no)).first()
    if archive is None:
        raise NotFound(f"no archive {archive_no}")
    contacts = session.exec(
        select(ArchiveContact.username).where(ArchiveContact.archive_id == archive.id)
    ).all()
    return ArchiveMeta.of(archive, contacts)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer. Show ``groups`` in clear and ``masked_groups`` only masked
    (``FieldSpec.masked``); show nothing else. ``purpose``/``reason``/``grant_id``
    go into the audit entry of whatever the decision allowed."""

    allowed: bool
    action: str
    why: str
    basis: str  # owner | grant | role | masked | denied
    rule: tuple[str, ...] = ()
    grant_id: str | None = None
    purpose: str | None = None
    reason: str | None = None
    groups: tuple[str, ...] = ()
    masked_groups: tuple[str, ...] = ()
    next_step: str | None = None
    valid_until: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def shows_in_clear(self, group: str) -> bool:
        """Whether this decision lets the caller see ``group``'s values as they are:
        allowed, covered (a grant covers only its groups) and not masked. Anything
        that compares or returns a clear value (a search) asks this, not ``allowed``,
        which is also true for a masked read."""
        return self.allowed and group in self.groups and group not in self.masked_groups

    def require(self) -> Decision:
        """Return self when allowed, else raise ``AccessDenied`` (for service code)."""
        if not self.allowed:
            raise AccessDenied(self)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "action": self.action,
            "why": self.why,
            "basis": self.basis,
            "rule": list(self.rule),
            "grant_id": self.grant_id,
            "purpose": self.purpose,
            "reason": self.reason,
            "groups": list(self.groups),
            "masked_groups": list(self.masked_groups),
            "next_step": self.next_step,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
        }


class _Enforcer(casbin.FastEnforcer):
    """FastEnforcer that parses the matcher once instead of on every call.

    pycasbin re-parses the matcher string per ``enforce`` (about 70 µs of the ~100 µs
    a call costs). The parsed expression holds the ``g`` function, a closure over
    the link store, which is installed once and never replaced, so reuse is safe.
    """

    _parsed: dict[str, Any]

    def _get_expression(self, expr: str, functions: Any = None) -> Any:
        cache = self.__dict__.setdefault("_parsed", {})
        parsed = cache.get(expr)
        if parsed is None:
            parsed = cache[expr] = CoreEnforcer._get_expression(expr, functions)
        return parsed


def _check_policy(lines: Sequence[Sequence[str]], source: str) -> None:
    """Refuse a base policy that names things the code does not know."""
    for line in lines:
        where = f"{source}: p, {', '.join(line)}"
        if len(line) != 5:
            raise ConfigError(f"{where}: expected action, role, classification, relation, effect")
        act, role, cls, rel, eft = line
        if act not in Action.__members__.values():
            raise ConfigError(f"{where}: unknown action {act!r}")
        if role not in Role.__members__.values():
            raise ConfigError(f"{where}: unknown role {role!r}")
        if cls != "*" and cls not in _CLASSES:
            raise ConfigError(f"{where}: unknown classification {cls!r}")
        if rel not in _RELATIONS:
            raise ConfigError(f"{where}: relation must be one of {', '.join(_RELATIONS)}")
        if eft not in ("allow", "deny"):
            raise ConfigError(f"{where}: effect must be allow or deny")


def _join(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


class PolicyEngine:
    """Loads the policy files once, keeps grant links in memory, decides cheaply.

    Thread-safe (one lock around Casbin, whose filtered policy and parsed
    expression are shared state). Call :meth:`sync` at the start of each unit of
    work to pick up grants approved, returned or revoked by other processes.
    """

    def __init__(
        self,
        *,
        model_file: Path = MODEL_FILE,
        policy_file: Path = POLICY_FILE,
        chains: Chains | None = None,
        known_groups: Sequence[str] | None = None,
    ) -> None:
        try:
            enforcer = _Enforcer(str(model_file), str(policy_file), cache_key_order=[0, 1])
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot load Casbin policy: {exc}") from None
        lines = [list(p) for p in enforcer.get_policy()]
        _check_policy(lines, str(policy_file))
        if enforcer.get_grouping_policy():
            raise ConfigError(f"{policy_file}: grants are never policy lines (g lines found)")
        self.links = GrantLinks()
        enforcer.set_named_role_manager("g", self.links)
        enforcer.build_role_links()
        if enforcer.model.model["g"]["g"].rm is not self.links:
            raise ConfigError("the grant link store could not be installed in Casbin")
        self._enforcer = enforcer
        self._policy = enforcer.model.model["p"]["p"].policy
        self._lock = threading.RLock()
        self._rev = 0
        self.chains = chains or load_chains()
        if known_groups is None:
            from vault.schema import SHIPPED_SCHEMA_FILE, load_schema

            known_groups = list(load_schema(SHIPPED_SCHEMA_FILE).groups)
        self.known_groups: tuple[str, ...] = tuple(known_groups)
        self._owner_lines = {
            (a, r, c) for a, r, c, rel, e in lines if rel == "owner" and e == "allow"
        }
        # (action, role) pairs with any line: for the others Casbin's filtered policy
        # is empty and its answer is "no match", so asking it is skipped.
        self._has_lines = {(a, r) for a, r, _c, _rel, _e in lines}
        self._allowing: dict[str, set[str]] = {}
        for a, r, _c, _rel, e in lines:
            if e == "allow":
                self._allowing.setdefault(a, set()).add(r)

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

    def sync(self, session: Session | Connection | RawTx) -> int:
        """Apply grant changes committed since the last sync; returns how many.

        Runs before every decision (revocations made by other workers must count
        at once), so the common case is one precompiled query on the caller's
        own transaction.
        """
        latest = _GRANT_COUNTER.scalar(session) or 0
        if latest == self._rev:
            return 0
        query = _ACTIVE_GRANTS_AFTER if self._rev == 0 else _GRANTS_AFTER
        rows = query.all(session, {"rev": self._rev})
        with self._lock:
            for row in rows:
                self.apply(row)
            self._rev = max([latest, *(r.rev for r in rows)])
        return len(rows)

    def apply(self, row: Any) -> None:
        """Mirror one ``AccessGrant`` row: active rows become links, others are dropped."""
        with self._lock:
            if row.state != GrantState.ACTIVE:
                self.links.remove(row.uid)
                return
            self.links.put(link_of(row))

    def put_link(self, uid: str, link: GrantLink | None) -> None:
        """Install (or, with ``None``, drop) one grant's links."""
        with self._lock:
            if link is None:
                self.links.remove(uid)
            else:
                self.links.put(link)

    def sweep(self, now: datetime) -> list[str]:
        """Drop links that ended at or before ``now`` (memory only; see grants.py)."""
        with self._lock:
            return self.links.sweep(to_us(now))

    # -- decisions --------------------------------------------------------------
    def roles_allowing(self, action: str) -> set[str]:
        return set(self._allowing.get(action, ()))

    def _enforce(
        self,
        action: str,
        roles: Collection[str],
        cls: str,
        rel: str,
        user: str,
        obj: str,
        at: int,
    ) -> list[tuple[str, bool, tuple[str, ...]]]:
        out: list[tuple[str, bool, tuple[str, ...]]] = []
        at_s = str(at)
        with self._lock:
            for role in sorted(roles):
                if (action, role) not in self._has_lines:
                    out.append((role, False, ()))
                    continue
                with fast_policy_filter(self._policy, action, role):
                    ok, rule = self._enforcer.enforce_ex(action, role, cls, rel, user, obj, at_s)
                out.append((role, bool(ok), tuple(rule)))
        return out

    def decide(
        self,
        principal: Principal,
        action: Action | str,
        archive: ArchiveMeta | None = None,
        groups: Sequence[str] = (),
        *,
        now: datetime,
    ) -> Decision:
        try:
            act = Action(action)
        except ValueError:
            return _deny(str(action), f"denied: unknown action {action!r}")
        try:
            at = to_us(now)
        except ValueError:
            return _deny(act, "denied: the decision clock must be timezone-aware")
        requested = tuple(dict.fromkeys(groups))
        unknown = [g for g in requested if g not in self.known_groups]
        if unknown:
            return _deny(
                act,
                f"denied: unknown field group(s) {_join(unknown)} "
                f"(known: {_join(self.known_groups)})",
            )
        roles = {r for r in principal.roles if r in Role.__members__.values()}
        if not roles:
            return _deny(
                act,
                f"denied: {principal.username} holds no role; ask an administrator to assign one",
            )
        if act in ARCHIVE_ACTIONS or (act is Action.READ_MASKED):
            if archive is None:
                return _deny(act, f"denied: {act} needs an archive")
            if archive.status != "active":
                return _deny(
                    act,
                    f"denied: archive {archive.archive_no} was destroyed; "
                    "its content no longer exists",
                )
            if archive.classification not in _CLASSES:
                return _deny(
                    act,
                    f"denied: archive {archive.archive_no} has an unknown "
                    f"classification {archive.classification!r}",
                )
            cls, obj = archive.classification, archive.archive_no
            rel = relation(principal, archive)
        else:
            cls, rel, obj = "none", "none", NO_ARCHIVE
        results = self._enforce(act, roles, cls, rel, principal.username, obj, at)
        for role, _ok, rule in results:
            if rule and rule[-1] == "deny":
                return _deny(
                    act,
                    f"denied: role {role} never has {act} on customer content "
                    f"(separation of duties; policy: {', '.join(rule)})",
                    rule=rule,
                )
        allowed = [(role, rule) for role, ok, rule in results if ok]
        if act is Action.READ_MASKED:
            return self._masked(act, principal, archive, requested, allowed, cls) or self._denial(
                act, principal, archive, rel, at
            )
        owner = [
            (r, rl)
            for r, rl in allowed
            if rel == "owner"
            and ((act, r, cls) in self._owner_lines or (act, r, "*") in self._owner_lines)
        ]
        if owner and archive is not None:
            role, _rule = owner[0]
            how = "owns" if principal.username == archive.owner else "is listed as a contact on"
            line = (act.value, role, cls, "owner", "allow")
            return Decision(
                allowed=True,
                action=act,
                basis="owner",
                rule=line,
                why=f"allowed: {principal.username} {how} archive {archive.archive_no} "
                f"(policy: {', '.join(line)})",
                groups=requested or self.known_groups,
            )
        granted = [(r, rl) for r, rl in allowed if len(rl) == 5 and rl[3] == "grant"]
        if granted:
            decision = self._by_grant(act, principal, archive, requested, granted[0][1], at)
            if decision is not None:
                return decision
        plain = [(r, rl) for r, rl in allowed if len(rl) == 5 and rl[3] == "*"]
        if plain:
            role, rule = plain[0]
            return Decision(
                allowed=True,
                action=act,
                basis="role",
                rule=rule,
                why=f"allowed: role {role} may {act} (policy: {', '.join(rule)})",
                groups=requested,
            )
        if act is Action.READ and archive is not None:
            masked_allowed = [
                (role, rule)
                for role, ok, rule in self._enforce(
                    Action.READ_MASKED, roles, cls, rel, principal.username, obj, at
                )
                if ok
            ]
            masked = self._masked(Action.READ, principal, archive, requested, masked_allowed, cls)
            if masked is not None:
                return masked
        return self._denial(act, principal, archive, rel, at)

    # -- helpers ---------------------------------------------------------------
    def _masked(
        self,
        act: Action,
        principal: Principal,
        archive: ArchiveMeta | None,
        requested: tuple[str, ...],
        allowed: list[tuple[str, tuple[str, ...]]],
        cls: str,
    ) -> Decision | None:
        if not allowed or archive is None:
            return None
        role, rule = allowed[0]
        return Decision(
            allowed=True,
            action=act,
            basis="masked",
            rule=rule,
            why=f"allowed masked: role {role} sees that values exist in archive "
            f"{archive.archive_no} but not the values (policy: {', '.join(rule)}); "
            + self._next(Action.READ, principal, archive),
            masked_groups=requested or self.known_groups,
            next_step=self._next(Action.READ, principal, archive),
        )

    def _by_grant(
        self,
        act: Action,
        principal: Principal,
        archive: ArchiveMeta | None,
        requested: tuple[str, ...],
        rule: tuple[str, ...],
        at: int,
    ) -> Decision | None:
        obj = archive.archive_no if archive else NO_ARCHIVE
        top = archive is not None and archive.classification == "top_secret"
        with self._lock:
            grants = self.links.active(principal.username, scope(obj, act, custodian=top), at)
        # Only grants whose chain still covers the archive's current state (``_denial``
        # explains the others).
        grants = [g for g in grants if misfit(g, archive) is None]
        if not grants:
            return None  # raced with an expiry between Casbin and here: fail closed
        needs_groups = act in (Action.READ, Action.EXPORT, Action.PROVIDE)
        best: GrantLink | None = None
        for grant in grants:
            if not needs_groups or not requested or set(requested) <= grant.groups:
                best = grant
                break
        if best is None:
            covered = max(grants, key=lambda g: len(g.groups & set(requested)))
            missing = [g for g in requested if g not in covered.groups]
            if act is Action.READ and archive is not None:
                masked = self._masked_rest(principal, archive, covered, requested, missing, at)
                if masked is not None:
                    return masked
            return _deny(
                act,
                f"denied: grant {covered.uid} does not cover field group(s) {_join(missing)} "
                f"of archive {obj}; ask only for {_join(sorted(covered.groups))} or "
                + self._next(act, principal, archive),
                next_step=self._next(act, principal, archive),
            )
        shown = (
            [g for g in (requested or self.known_groups) if g in best.groups]
            if needs_groups
            else []
        )
        until = _from_us(best.not_after)
        what = f"archive {obj}" if archive else "reports"
        return Decision(
            allowed=True,
            action=act,
            basis="grant",
            rule=rule,
            grant_id=best.uid,
            purpose=best.purpose,
            reason=best.reason,
            groups=tuple(shown),
            valid_until=until,
            why=f"allowed: grant {best.uid} ({best.kind} request {best.request_uid}, "
            f"purpose {best.purpose}) gives {principal.username} {act} on {what} "
            f"until {_fmt(until)}"
            + (" (signed by the custodian)" if best.custodian_signed else ""),
        )

    def _masked_rest(
        self,
        principal: Principal,
        archive: ArchiveMeta,
        grant: GrantLink,
        requested: tuple[str, ...],
        missing: list[str],
        at: int,
    ) -> Decision | None:
        roles = {r for r in principal.roles if r in Role.__members__.values()}
        ok = [
            rule
            for _r, allowed, rule in self._enforce(
                Action.READ_MASKED,
                roles,
                archive.classification,
                relation(principal, archive),
                principal.username,
                archive.archive_no,
                at,
            )
            if allowed
        ]
        if not ok:
            return None
        until = _from_us(grant.not_after)
        return Decision(
            allowed=True,
            action=Action.READ,
            basis="grant",
            rule=ok[0],
            grant_id=grant.uid,
            purpose=grant.purpose,
            reason=grant.reason,
            valid_until=until,
            groups=tuple(g for g in requested if g in grant.groups),
            masked_groups=tuple(missing),
            why=f"allowed: grant {grant.uid} covers {_join(sorted(grant.groups))}; "
            f"{_join(missing)} shown masked (policy: {', '.join(ok[0])})",
        )

    def _next(self, act: Action, principal: Principal, archive: ArchiveMeta | None) -> str:
        kind = KIND_FOR_ACTION.get(act)
        if kind is None:
            roles = sorted(self.roles_allowing(act))
            return f"roles that may {act}: {_join(roles)}; ask an administrator"
        spec = self.chains.kind(kind)
        if not spec.filers & principal.roles:
            return (
                f"none of your roles may file a {kind} request (filers: "
                f"{_join(sorted(spec.filers))})"
            )
        return spec.describe(
            classification=archive.classification if archive else "internal",
            external=principal.external,
            custodian=archive.custodian if archive else None,
        )

    def _denial(
        self,
        act: Action,
        principal: Principal,
        archive: ArchiveMeta | None,
        rel: str,
        at: int,
    ) -> Decision:
        nxt = self._next(act, principal, archive)
        user = principal.username
        if archive is None:
            if act is Action.REPORT:
                return _deny(
                    act, f"denied: {user} holds no active report grant; {nxt}", next_step=nxt
                )
            return _deny(
                act,
                f"denied: none of {user}'s roles ({_join(sorted(principal.roles))}) "
                f"may {act}; {nxt}",
                next_step=nxt,
            )
        no = archive.archive_no
        unfit = self._unfit_grant(user, act, archive, at)
        if unfit is not None:
            link, why = unfit
            step = confirm_next_step(link) if why.confirm_loan else nxt
            return _deny(act, f"denied: {why.why}; {step}", next_step=step)
        ended = self._ended_grant(user, act, archive, at)
        if ended is not None:
            until = _fmt(_from_us(ended.not_after))
            return _deny(
                act,
                f"denied: grant {ended.uid} on archive {no} ended at {until}; {nxt}",
                next_step=nxt,
            )
        if act is Action.UPDATE:
            return _deny(
                act,
                f"denied: only the owner ({archive.owner}) or a listed contact "
                f"updates archive {no}; ask for it to be reassigned to you or for "
                "you to be listed as a contact",
                next_step=None,
            )
        if rel == "owner" and archive.classification == "top_secret":
            why = (
                f"denied: archive {no} is top-secret; even its owner reads it only under a "
                f"grant its custodian signed (Art 22); {nxt}"
            )
        elif rel == "uncleared_owner":
            why = (
                f"denied: your clearance ({principal.clearance}) is below archive {no}'s "
                f"marking ({archive.classification}); {nxt}"
            )
        else:
            why = (
                f"denied: {user} is not the owner or a contact of archive {no} and holds no "
                f"active grant for {act}; {nxt}"
            )
        return _deny(act, why, next_step=nxt)

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
        self,
        user: str,
        act: Action,
        archive: ArchiveMeta,
        at: int,
    ) -> GrantLink | None:
        top = archive.classification == "top_secret"
        with self._lock:
            bucket = self.links._by_scope.get(
                (user, scope(archive.archive_no, act, custodian=top)), {}
            )
            ended = [g for g in bucket.values() if g.not_after <= at]
        return max(ended, key=lambda g: g.not_after) if ended else None


def relation(principal: Principal, archive: ArchiveMeta) -> str:
    """owner | uncleared_owner | other: the attribute part of a decision."""
    if principal.username == archive.owner or principal.username in archive.contacts:
        person = _CLASSES.get(principal.clearance, -1)
        marking = _CLASSES.get(archive.classification, 99)
        return "owner" if person >= marking else "uncleared_owner"
    return "other"


def link_of(row: Any) -> GrantLink:
    return GrantLink(
        uid=row.uid,
        kind=row.kind,
        subject=row.subject,
        archives=tuple(row.archives),
        actions=tuple(row.actions),
        groups=frozenset(row.groups),
        not_before=to_us(row.not_before),
        not_after=to_us(row.not_after),
        custodian_signed=bool(row.custodian_signed),
        purpose=row.purpose,
        reason=row.reason,
        request_uid=getattr(row, "request_uid", "") or "",
        classification=row.approved_classification,
        custodian=row.approved_custodian,
        awaiting_confirmation=bool(row.awaiting_confirmation),
    )


def _deny(
    action: str,
    why: str,
    *,
    rule: tuple[str, ...] = (),
    next_step: str | None = None,
) -> Decision:
    return Decision(
        allowed=False, action=str(action), why=why, basis="denied", rule=rule, next_step=next_step
    )


def decide(
    principal: Principal,
    action: Action | str,
    archive_meta: ArchiveMeta | None = None,
    groups: Sequence[str] = (),
    *,
    now: datetime,
    engine: PolicyEngine,
) -> Decision:
    """Module-level form of :meth:`PolicyEngine.decide`."""
    return engine.decide(principal, action, archive_meta, groups, now=now)
