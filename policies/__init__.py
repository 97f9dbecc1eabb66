"""Who may do what: Casbin decisions, the access-request workflow, loans, directory.

Modules (import what you need; this package imports nothing heavy on its own,
because table modules are imported on their own, by migrations and tests):

- ``policies.decide``    ``PolicyEngine``, ``Principal``, ``ArchiveMeta``, ``Decision``
- ``policies.workflow``  ``Workflow``: file/approve/deny/withdraw, sweep, loans, handover
- ``policies.directory`` ``add_user``, ``set_roles``, ``disable_user``, ``load_principal``
- ``policies.roles``     the StrEnums: ``Role``, ``Action``, ``RequestKind``, states
- ``policies.chains``    ``chains.toml`` loader; ``model.conf``/``policy.csv`` are beside it
- ``policies.rechain``   re-derives a pending request's chain from its archives' current state
- ``policies.grant_terms`` what a grant was approved for; whether it still covers an archive
- ``policies.changes``   change requests (widening who can read): filing, signer rules, applying
- ``policies.archive_changes`` reassigning, contacts, classification and custodian changes
- ``policies.rolegrants`` giving roles through the information supervisor (API and CLI)
- ``policies.handover``  a leaver's handover as a request
"""

from policies.errors import (
    AccessDenied,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    PolicyError,
    Refused,
    UnknownUser,
    UserDisabled,
)

__all__ = [
    "AccessDenied",
    "ConfigError",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PolicyError",
    "Refused",
    "UnknownUser",
    "UserDisabled",
]
