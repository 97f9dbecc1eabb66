"""The store's exceptions, one per thing a caller can act on.

Messages name the archive, field group or field that is wrong and never the
content, so they are safe to show to a user, print in a CLI or log. The API
maps each ``code`` to a problem+json ``type`` in one place.
"""

from __future__ import annotations


class VaultError(Exception):
    """Base of every error the store raises on purpose."""

    code = "vault-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SchemaError(VaultError):
    code = "schema-invalid"


class ValidationFailed(VaultError):
    """Input that does not fit the schema or the metadata rules."""

    code = "validation-failed"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class ConsentMissing(ValidationFailed):
    """PIPL Art 14/29: content written to a group the customer did not consent to."""

    code = "consent-missing"


class ArchiveNotFound(VaultError):
    code = "archive-not-found"


class ArchiveDestroyed(VaultError):
    code = "archive-destroyed"


class Conflict(VaultError):
    code = "conflict"


class KeyFileError(VaultError):
    """The key file is missing, unreadable, too open, or belongs to another vault."""

    code = "key-file"


class NotInitialised(VaultError):
    code = "not-initialised"


class AppRoleMissing(VaultError):
    """PostgreSQL: the vault's application role is missing and the owner may not create it."""

    code = "app-role-missing"


class RestoreIncomplete(NotInitialised):
    """The database is marked by ``archive-vault restore`` as not yet brought up to date
    (its audit log may be older than one already published): nothing may serve it."""

    code = "restore-incomplete"


class DatabaseUnreachable(VaultError):
    """The configured database cannot be connected to (wrong host or port, server down,
    login refused): not the same as a database that holds no vault, so never a
    ``NotInitialised`` (``demo`` would answer that one by creating a vault)."""

    code = "database-unreachable"


class DecryptionFailed(VaultError):
    """A ciphertext failed authentication: tampered, moved, or under the wrong key.

    Deliberately one exception for every cause (like ``cryptography``'s
    ``InvalidToken``) so a caller cannot probe which check failed.
    """

    code = "decryption-failed"


class ManifestsMissing(DecryptionFailed):
    """Archives without a sealed manifest in a vault whose archives all carry one.

    Raised instead of sealing them: a manifest removed in the database would
    otherwise be re-sealed over whatever rows the attacker left (a rollback
    laundered into a genuine state). ``archives`` names them (numbers only).
    """

    def __init__(self, message: str, archives: tuple[str, ...]) -> None:
        super().__init__(message)
        self.archives = archives
