"""Grants as time-bounded Casbin role links.

A grant from an approved request becomes links ``user -> "<archive>/<action>"``
(and ``".../custodian"`` when the archive's custodian signed it). They live in
:class:`GrantLinks`, a Casbin ``RoleManager`` behind the matcher's ``g``: the matcher
asks ``g(user, scope, at)`` and the store answers from a dict keyed by
``(user, scope)``, checking each link's window at ``at`` (the injected clock).
So a decision costs the same with 10 or 100,000 grants (pycasbin 2.8 measured
``p`` lines per grant growing linearly), and a grant stops counting at the very
instant it expires, before any sweeper runs; the sweeper only frees memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from casbin.rbac import RoleManager

from policies.errors import ConfigError

NO_ARCHIVE = "*"


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime; naive times are refused (fail closed)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are refused; pass an aware UTC time")
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def scope(archive: str, action: str, *, custodian: bool = False) -> str:
    return f"{archive}/{action}/custodian" if custodian else f"{archive}/{action}"


@dataclass(frozen=True, slots=True)
class GrantLink:
    """The in-memory image of one active ``AccessGrant`` row."""

    uid: str
    kind: str
    subject: str
    archives: tuple[str, ...]
    actions: tuple[str, ...]
    groups: frozenset[str]
    not_before: int  # epoch µs, inclusive
    not_after: int  # epoch µs, exclusive: at not_after the grant no longer counts
    custodian_signed: bool
    purpose: str
    reason: str
    request_uid: str = ""
    # What the chain approved (policies.grant_terms): the marking and top-secret
    # custodian at the final signature. The default counts for internal archives only.
    classification: str = "internal"
    custodian: str | None = None
    awaiting_confirmation: bool = False

    def active_at(self, at: int) -> bool:
        return self.not_before <= at < self.not_after

    def scopes(self) -> Iterator[str]:
        for archive in self.archives or (NO_ARCHIVE,):
            for action in self.actions:
                yield scope(archive, action)
                if self.custodian_signed:
                    yield scope(archive, action, custodian=True)


# pycasbin ships no type information, so its RoleManager base is ``Any`` to mypy.
class GrantLinks(RoleManager):  # type: ignore[misc]
    """Casbin role manager for time-bounded grant links (not thread-safe on its own:
    ``PolicyEngine`` serialises access)."""

    def __init__(self) -> None:
        self._by_scope: dict[tuple[str, str], dict[str, GrantLink]] = {}
        self._by_uid: dict[str, GrantLink] = {}
        self._expiry: list[tuple[int, str]] = []

    # -- our API -------------------------------------------------------------
    def put(self, link: GrantLink) -> None:
        """Add or replace a grant (a reassigned loan replaces its subject)."""
        self.remove(link.uid)
        self._by_uid[link.uid] = link
        for sc in link.scopes():
            self._by_scope.setdefault((link.subject, sc), {})[link.uid] = link
        heapq.heappush(self._expiry, (link.not_after, link.uid))

    def remove(self, uid: str) -> bool:
        link = self._by_uid.pop(uid, None)
        if link is None:
            return False
        for sc in link.scopes():
            key = (link.subject, sc)
            bucket = self._by_scope.get(key)
            if bucket is not None:
                bucket.pop(uid, None)
                if not bucket:
                    del self._by_scope[key]
        return True

    def active(self, user: str, sc: str, at: int) -> list[GrantLink]:
        """Grants of ``user`` on scope ``sc`` in force at ``at``, latest-ending first."""
        bucket = self._by_scope.get((user, sc))
        if not bucket:
            return []
        found = [g for g in bucket.values() if g.active_at(at)]
        found.sort(key=lambda g: (-g.not_after, g.uid))
        return found

    def ended(self, user: str, sc: str, at: int) -> list[GrantLink]:
        """Grants of ``user`` on scope ``sc`` whose window ended at or before ``at`` and
        that the sweeper has not dropped yet, latest-ending first (for explanations)."""
        bucket = self._by_scope.get((user, sc))
        if not bucket:
            return []
        found = [g for g in bucket.values() if g.not_after <= at]
        found.sort(key=lambda g: (-g.not_after, g.uid))
        return found

    def get(self, uid: str) -> GrantLink | None:
        return self._by_uid.get(uid)

    def sweep(self, at: int) -> list[str]:
        """Drop links whose window ended at or before ``at``; returns their uids.

        Correctness never depends on this running (decisions check the window);
        it keeps memory proportional to the grants still in force.
        """
        removed: list[str] = []
        while self._expiry and self._expiry[0][0] <= at:
            not_after, uid = heapq.heappop(self._expiry)
            link = self._by_uid.get(uid)
            if link is not None and link.not_after == not_after and self.remove(uid):
                removed.append(uid)
        if len(self._expiry) > 2 * len(self._by_uid) + 1024:
            # Replaced links leave stale heap entries behind; rebuild now and then.
            self._expiry = [(g.not_after, g.uid) for g in self._by_uid.values()]
            heapq.heapify(self._expiry)
        return removed

    def __len__(self) -> int:
        return len(self._by_uid)

    def __bool__(self) -> bool:
        # Casbin installs a role manager only if it is truthy (``if rm:``); an empty
        # store must still be installed, or grants approved later would never count.
        return True

    def links(self) -> Iterable[GrantLink]:
        return self._by_uid.values()

    # -- the Casbin RoleManager interface --------------------------------------
    def clear(self) -> None:
        self._by_scope.clear()
        self._by_uid.clear()
        self._expiry.clear()

    def add_link(self, name1: str, name2: str, *domain: str) -> None:
        raise ConfigError(
            f"static grant link {name1} -> {name2} refused: grants come only from approved "
            "requests, never from policy.csv"
        )

    def delete_link(self, name1: str, name2: str, *domain: str) -> None:
        for link in list(self._by_scope.get((name1, name2), {}).values()):
            self.remove(link.uid)

    def has_link(self, name1: str, name2: str, *domain: str) -> bool:
        # The "domain" argument carries the decision instant (model.conf). Without
        # one there is no instant to check a window against: deny.
        if not domain:
            return False
        try:
            at = int(domain[0])
        except ValueError:
            return False
        bucket = self._by_scope.get((name1, name2))
        if not bucket:
            return False
        return any(g.active_at(at) for g in bucket.values())

    def get_roles(self, name: str, *domain: str) -> list[str]:
        return sorted({sc for (user, sc) in self._by_scope if user == name})

    def get_users(self, name: str, *domain: str) -> list[str]:
        return sorted({user for (user, sc) in self._by_scope if sc == name})

    def print_roles(self) -> None:
        return None
