"""The audit log's exceptions, one per thing a caller can act on.

Kept free of imports from the rest of the vault so that ``audit`` stays at the
bottom of the import graph. Messages name sequence numbers and sizes, never
entry content.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base of every error the audit log raises on purpose."""

    code = "audit-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class AuditWriteFailed(AuditError):
    """An entry could not be appended: the caller's transaction must not commit.

    Raised for invalid events (customer-content-shaped values, floats, control
    characters, oversize entries) and for database failures while appending.
    """

    code = "audit-write-failed"


class AuditIntegrityError(AuditError):
    """The stored log no longer matches what was signed; nothing new is signed over it."""

    code = "audit-integrity"

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class AuditQueryError(AuditError):
    """A compliance query with parameters out of range."""

    code = "audit-query"
