"""The wording of decisions: every ``why`` and ``next_step`` a decision carries.

A denial says what was missing and what to do about it (which request to file
and who signs it, from ``chains.toml``); an allow names the rule, role or grant
behind it. The engine decides; this module only puts its findings into words.
Messages name users, archive numbers, roles, grants and requests, never
customer content.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from datetime import UTC, datetime

from policies.chains import Chains
from policies.decision import Decision, Principal, denied
from policies.grant_terms import Misfit, confirm_next_step
from policies.grants import GrantLink
from policies.roles import KIND_FOR_ACTION, Action
from vault.meta import ArchiveMeta


def join(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items) if items else "none"


def fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


# -- refusals of the question itself ----------------------------------------------------


def unknown_action(action: str) -> Decision:
    return denied(action, f"denied: unknown action {action!r}")


def naive_clock(act: Action) -> Decision:
    return denied(act, "denied: the decision clock must be timezone-aware")


def unknown_groups(act: Action, unknown: Iterable[str], known: Iterable[str]) -> Decision:
    return denied(act, f"denied: unknown field group(s) {join(unknown)} (known: {join(known)})")


def no_role(act: Action, principal: Principal) -> Decision:
    return denied(
        act, f"denied: {principal.username} holds no role; ask an administrator to assign one"
    )


def needs_archive(act: Action) -> Decision:
    return denied(act, f"denied: {act} needs an archive")


def destroyed(act: Action, archive: ArchiveMeta) -> Decision:
    return denied(
        act,
        f"denied: archive {archive.archive_no} was destroyed; its content no longer exists",
    )


def unknown_classification(act: Action, archive: ArchiveMeta) -> Decision:
    return denied(
        act,
        f"denied: archive {archive.archive_no} has an unknown "
        f"classification {archive.classification!r}",
    )


def separation_of_duties(act: Action, role: str, rule: tuple[str, ...]) -> Decision:
    return denied(
        act,
        f"denied: role {role} never has {act} on customer content "
        f"(separation of duties; policy: {', '.join(rule)})",
        rule=rule,
    )


# -- allows -----------------------------------------------------------------------------


def as_owner(
    act: Action,
    principal: Principal,
    archive: ArchiveMeta,
    line: tuple[str, ...],
    groups: tuple[str, ...],
) -> Decision:
    how = "owns" if principal.username == archive.owner else "is listed as a contact on"
    return Decision(
        allowed=True,
        action=act,
        basis="owner",
        rule=line,
        why=f"allowed: {principal.username} {how} archive {archive.archive_no} "
        f"(policy: {', '.join(line)})",
        groups=groups,
    )


def by_role(act: Action, role: str, rule: tuple[str, ...], groups: tuple[str, ...]) -> Decision:
    return Decision(
        allowed=True,
        action=act,
        basis="role",
        rule=rule,
        why=f"allowed: role {role} may {act} (policy: {', '.join(rule)})",
        groups=groups,
    )


def by_grant(
    act: Action,
    principal: Principal,
    archive: ArchiveMeta | None,
    grant: GrantLink,
    rule: tuple[str, ...],
    shown: tuple[str, ...],
) -> Decision:
    until = from_us(grant.not_after)
    what = f"archive {archive.archive_no}" if archive else "reports"
    return Decision(
        allowed=True,
        action=act,
        basis="grant",
        rule=rule,
        grant_id=grant.uid,
        purpose=grant.purpose,
        reason=grant.reason,
        groups=shown,
        valid_until=until,
        why=f"allowed: grant {grant.uid} ({grant.kind} request {grant.request_uid}, "
        f"purpose {grant.purpose}) gives {principal.username} {act} on {what} "
        f"until {fmt(until)}" + (" (signed by the custodian)" if grant.custodian_signed else ""),
    )


def masked(
    act: Action,
    role: str,
    rule: tuple[str, ...],
    archive: ArchiveMeta,
    masked_groups: tuple[str, ...],
    next_step: str,
) -> Decision:
    return Decision(
        allowed=True,
        action=act,
        basis="masked",
        rule=rule,
        why=f"allowed masked: role {role} sees that values exist in archive "
        f"{archive.archive_no} but not the values (policy: {', '.join(rule)}); " + next_step,
        masked_groups=masked_groups,
        next_step=next_step,
    )


def grant_partly_masked(
    grant: GrantLink, rule: tuple[str, ...], shown: tuple[str, ...], missing: list[str]
) -> Decision:
    return Decision(
        allowed=True,
        action=Action.READ,
        basis="grant",
        rule=rule,
        grant_id=grant.uid,
        purpose=grant.purpose,
        reason=grant.reason,
        valid_until=from_us(grant.not_after),
        groups=shown,
        masked_groups=tuple(missing),
        why=f"allowed: grant {grant.uid} covers {join(sorted(grant.groups))}; "
        f"{join(missing)} shown masked (policy: {', '.join(rule)})",
    )


# -- denials ----------------------------------------------------------------------------


class Wording:
    """What to do next, from the approval chains and which roles the policy allows."""

    def __init__(self, chains: Chains, allowing: Mapping[str, Set[str]]) -> None:
        self.chains = chains
        self._allowing = allowing

    def next_step(self, act: Action, principal: Principal, archive: ArchiveMeta | None) -> str:
        kind = KIND_FOR_ACTION.get(act)
        if kind is None:
            roles = sorted(self._allowing.get(act, ()))
            return f"roles that may {act}: {join(roles)}; ask an administrator"
        spec = self.chains.kind(kind)
        if not spec.filers & principal.roles:
            return (
                f"none of your roles may file a {kind} request (filers: "
                f"{join(sorted(spec.filers))})"
            )
        return spec.describe(
            classification=archive.classification if archive else "internal",
            external=principal.external,
            custodian=archive.custodian if archive else None,
        )

    def grant_lacks_groups(
        self,
        act: Action,
        principal: Principal,
        archive: ArchiveMeta | None,
        grant: GrantLink,
        missing: list[str],
    ) -> Decision:
        nxt = self.next_step(act, principal, archive)
        obj = archive.archive_no if archive else "*"
        return denied(
            act,
            f"denied: grant {grant.uid} does not cover field group(s) {join(missing)} "
            f"of archive {obj}; ask only for {join(sorted(grant.groups))} or " + nxt,
            next_step=nxt,
        )

    def denial(
        self,
        act: Action,
        principal: Principal,
        archive: ArchiveMeta | None,
        rel: str,
        *,
        unfit: tuple[GrantLink, Misfit] | None,
        ended: GrantLink | None,
    ) -> Decision:
        """Why nothing allowed ``act``: the grant that no longer fits or ended, the
        owner-only update, the marking above the clearance, or no grant at all."""
        nxt = self.next_step(act, principal, archive)
        user = principal.username
        if archive is None:
            if act is Action.REPORT:
                return denied(
                    act, f"denied: {user} holds no active report grant; {nxt}", next_step=nxt
                )
            return denied(
                act,
                f"denied: none of {user}'s roles ({join(sorted(principal.roles))}) "
                f"may {act}; {nxt}",
                next_step=nxt,
            )
        no = archive.archive_no
        if unfit is not None:
            link, misfit = unfit
            step = confirm_next_step(link) if misfit.confirm_loan else nxt
            return denied(act, f"denied: {misfit.why}; {step}", next_step=step)
        if ended is not None:
            until = fmt(from_us(ended.not_after))
            return denied(
                act,
                f"denied: grant {ended.uid} on archive {no} ended at {until}; {nxt}",
                next_step=nxt,
            )
        if act is Action.UPDATE:
            return denied(
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
        return denied(act, why, next_step=nxt)
