"""audit action codes for readiness, backup and restore

Revision ID: 0023
Revises: 0022

Three actions join the fixed table of ``audit.stored``: ``health:ready`` (48),
``vault:backup`` (49) and ``vault:restore`` (50), appended after the last code,
nothing renumbered. No
column changes. The revision exists so that a database that may hold these codes
is refused by an older version of the vault (start-up checks the revision)
instead of being read by it, where an unknown code reads as ``?49`` and the entry
would look edited.

The whole table is written out below (0022's, then the new ones), not imported:
a migration must mean the same thing whatever a later version's code says. A
test holds it equal to ``audit.stored``.

Downgrading is refused while the log holds an entry with one of the new codes:
0022's own downgrade could not turn them back into text.
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_ACTIONS = (
    "archive:read",
    "archive:search",
    "archive:list",
    "archive:create",
    "archive:update",
    "archive:import",
    "archive:export",
    "archive:report",
    "archive:reassign",
    "archive:reclassify",
    "archive:destroy",
    "archive:consent-withdraw",
    "archive:consent-record",
    "archive:interaction-add",
    "archive:interaction-read",
    "archive:attachment-add",
    "archive:attachment-read",
    "archive:attachment-list",
    "loan:open",
    "loan:return",
    "request:file",
    "request:approve",
    "request:deny",
    "request:withdraw",
    "request:expire",
    "request:rechain",
    "request:list",
    "auth:login",
    "auth:login-failed",
    "auth:logout",
    "user:change",
    "user:list",
    "keys:rotate",
    "policy:change",
    "vault:init",
    "vault:seal-manifests",
    "vault:mask-names",
    "audit:read",
    "audit:verify",
    "leak:report",
    "leak:change",
    "leak:read",
    "vault:inspect",
    "inspection:read",
    "detection:decoy-mark",
    "detection:decoy-list",
    "archive:access-report",
    # new in this revision
    "health:ready",
    "vault:backup",
    "vault:restore",
)
_OUTCOMES = ("allowed", "denied", "error")
# Codes are positions from 1, as audit.stored numbers them.
ACTION_CODES = {name: i for i, name in enumerate(_ACTIONS, 1)}
OUTCOME_CODES = {name: i for i, name in enumerate(_OUTCOMES, 1)}
_NEW = (ACTION_CODES["health:ready"], ACTION_CODES["vault:backup"], ACTION_CODES["vault:restore"])


def upgrade() -> None:
    """Nothing to convert: no stored row can hold a code this revision introduces."""


def downgrade() -> None:
    codes = ", ".join(str(c) for c in _NEW)
    for table in ("audit_entry", "audit_queue"):
        found = op.get_bind().exec_driver_sql(
            f"SELECT count(*) FROM {table} WHERE action IN ({codes})"  # noqa: S608 - constants
        )
        if int(found.scalar_one()):
            raise RuntimeError(
                f"{table} holds readiness, backup or restore entries, which the older schema "
                "cannot "
                "name; the audit log is append-only, so this database cannot be downgraded"
            )
