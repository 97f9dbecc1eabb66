"""Copies are counted: an approval for N copies permits N exports, and no more.

A copy or external request states its file format and how many copies it needs
(Art 23–24); the signers approve that, or fewer copies, never more. The grant
carries the approved number, and each export takes one copy with a single
conditional ``UPDATE ... WHERE copies_used < copies`` in the export's own
transaction: two exports racing for the last copy cannot both pass, because the
database row, not a value read earlier, decides (a read-then-write would let
both see one copy left). A refused or failed export rolls back and takes none.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from audit.events import AuditAction
from policies.decision import Principal
from policies.desk import refusal
from policies.errors import InvalidInput
from policies.models import AccessGrant, AccessRequest
from policies.roles import RequestKind

EXPORT_KINDS = frozenset({RequestKind.COPY, RequestKind.EXTERNAL})
FORMATS = ("csv", "json")
DEFAULT_FORMAT = "json"
MAX_COPIES = 100
_GRANT = AccessGrant.__table__  # type: ignore[attr-defined]


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def export_terms(kind: str, export_format: str | None, copies: int) -> tuple[str, int]:
    """The format and copies a request of ``kind`` records (``copies`` 0: not stated).

    Only copy and external requests state a format; they default to one JSON copy.
    Other kinds keep their copies as given (a loan's are checked with its material).
    """
    if kind not in EXPORT_KINDS:
        if export_format:
            raise InvalidInput(
                f"format: a {kind} request makes no file; only copy and "
                "external requests state a format"
            )
        return "", copies
    fmt = export_format or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}")
    wanted = copies or 1
    if not _whole(wanted) or not 1 <= wanted <= MAX_COPIES:
        raise InvalidInput(f"copies must be a whole number from 1 to {MAX_COPIES}")
    return fmt, wanted


def narrowed(req: AccessRequest, copies: int | None, approver: Principal) -> int:
    """The copies after this signature: fewer than asked is allowed, more is refused."""
    if copies is None:
        return req.copies
    if not _whole(copies) or copies < 1:
        raise InvalidInput("copies must be a positive whole number")
    if req.copies < 1:
        raise InvalidInput(f"copies: a {req.kind} request has no copies to approve")
    if copies > req.copies:
        raise refusal(
            req,
            approver,
            AuditAction.REQUEST_APPROVE,
            "widen",
            f"an approver may approve fewer copies, never more ({copies} > {req.copies})",
        )
    return copies


def take_copy(session: Session, grant: AccessGrant) -> int | None:
    """Take the next copy under ``grant`` in the caller's transaction: its number
    (1..N), or None when all N are used. The row stays locked until commit
    (PostgreSQL), so the number read back is this export's own."""
    conn = session.connection()
    taken = conn.execute(
        sa.update(_GRANT)
        .where(_GRANT.c.id == grant.id, _GRANT.c.copies_used < _GRANT.c.copies)
        .values(copies_used=_GRANT.c.copies_used + 1)
    )
    if taken.rowcount != 1:
        return None
    used = conn.execute(sa.select(_GRANT.c.copies_used).where(_GRANT.c.id == grant.id))
    return int(used.scalar_one())
