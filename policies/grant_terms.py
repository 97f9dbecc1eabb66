"""What a grant was approved for, and whether it still covers an archive now.

A request's chain is derived from the archives' state (highest classification,
top-secret custodian); the signers approved access at that level. If an archive
is raised, or a top-secret archive gets another custodian, after the final
signature, the grant no longer speaks for it: the people a chain for the new
state needs (the customer-service manager, the new custodian) never signed. So
a grant records the marking and custodian it was approved for, and the decision
at each read compares them with the archive's current metadata.

A loan's grant also waits for the borrower to confirm the register line
(Art 19.5: the line is confirmed by the borrower before the material goes out).

This module knows nothing of Casbin or the database; ``policies.engine`` asks
:func:`misfit` for every grant it is about to rely on, and ``policies.workflow``
stamps new grants with :func:`stamp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from policies.roles import RANK


class _Archive(Protocol):
    @property
    def archive_no(self) -> str: ...
    @property
    def classification(self) -> str: ...
    @property
    def custodian(self) -> str | None: ...


class _Link(Protocol):
    @property
    def uid(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def request_uid(self) -> str: ...
    @property
    def custodian_signed(self) -> bool: ...
    @property
    def classification(self) -> str: ...
    @property
    def custodian(self) -> str | None: ...
    @property
    def awaiting_confirmation(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Misfit:
    """Why a grant does not cover an archive now, and what the holder should do."""

    why: str
    confirm_loan: bool = False  # the remedy is to confirm the loan, not to file anew


def _marked(classification: str) -> str:
    return ("an " if classification[:1] in "aeiou" else "a ") + classification


def stamp(grant: Any, req: Any, *, loan: bool) -> None:
    """Record on a new grant what its chain approved (the request's state at approval)."""
    grant.approved_classification = req.classification
    grant.approved_custodian = req.custodian
    # A custodian signature that a custodian change superseded does not count.
    grant.custodian_signed = any(s.get("custodian") and not s.get("superseded") for s in req.stages)
    grant.awaiting_confirmation = loan


def misfit(link: _Link, archive: _Archive | None) -> Misfit | None:
    """``None`` when ``link`` still covers ``archive``; otherwise why not.

    Fails closed: an unknown marking on either side is a misfit.
    """
    what = f"grant {link.uid} ({link.kind} request {link.request_uid})"
    if link.awaiting_confirmation:
        return Misfit(
            f"{what} is a loan whose register line you have not confirmed yet "
            "(Art 19.5: the borrower confirms the line before the material goes out)",
            confirm_loan=True,
        )
    if archive is None:
        return None
    approved = RANK.get(link.classification)
    current = RANK.get(archive.classification)
    if approved is None or current is None or current > approved:
        return Misfit(
            f"{what} was approved for {_marked(link.classification)} archive and archive "
            f"{archive.archive_no} is now {archive.classification}; its chain lacks "
            "the signatures that marking needs"
        )
    if archive.classification == "top_secret":
        if not link.custodian_signed:
            return Misfit(
                f"{what} was not signed by the custodian and archive "
                f"{archive.archive_no} is top-secret (Art 22)"
            )
        if not archive.custodian or link.custodian != archive.custodian:
            return Misfit(
                f"{what} was signed by custodian {link.custodian or 'none'} and archive "
                f"{archive.archive_no}'s custodian is now {archive.custodian or 'none'} "
                "(Art 22: the current custodian signs)"
            )
    return None


def confirm_next_step(link: _Link) -> str:
    """The remedy for a loan awaiting confirmation."""
    return (
        f"confirm your loan of request {link.request_uid} first: "
        "POST /loans/{id}/confirm (GET /loans lists your register lines)"
    )
