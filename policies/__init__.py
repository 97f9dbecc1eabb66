"""Who may do what: decisions, acts on archives decided and done in one transaction,
the access-request workflow, loans, and the staff directory.

Modules (import what you need from the module that defines it; this package
imports nothing heavy on its own):

Acting on archives (what the API and the web pages call)
- ``policies.access``    ``ArchiveReads``: a read as one unit of work (principal, metadata,
                         decision, decrypt, audit, commit; plaintext only after the commit)
- ``policies.archive_acts`` ``ArchiveActs``: create, list, search, update, reclassify,
                         reassign, export, destroy, records; each decides and acts in one
                         transaction

Decisions
- ``policies.decision``  the values: ``Principal``, ``Decision``
- ``policies.engine``    ``PolicyEngine``: base policy + grant links, ``sync`` by revision
- ``policies.casbin_model`` ``model.conf``/``policy.csv`` through pycasbin, parsed once
- ``policies.grants``    grants as time-bounded links (a Casbin role manager)
- ``policies.grant_terms`` what a grant was approved for; whether it still covers an archive
- ``policies.loading``   the database side: archive metadata, grant rows, the revision counter
- ``policies.explain``   the wording of every ``why`` and ``next_step``
- ``policies.roles``     the StrEnums (``Role``, ``Action``, kinds, states) and ``RANK``
- ``policies.chains``    ``chains.toml`` loader; ``model.conf``/``policy.csv`` are beside it
- ``policies.version``   which policy files are in force, recorded in the audit log

The request workflow
- ``policies.workflow``  ``Workflow``: the desk plus its collaborators
- ``policies.desk``      ``Desk``: the dependencies and steps the collaborators share
- ``policies.filing``    ``Filing``: file a request, derive its chain (``chains.toml``)
- ``policies.signing``   ``Signing``: approve, deny, withdraw; the signer rules
- ``policies.loans``     ``Loans``: the loan register
- ``policies.sweep``     ``Sweeper``: what time alone ends
- ``policies.rechain``   re-derives a pending request's chain from its archives' current state
- ``policies.changes``   change requests (widening who can read): filing and signer rules
- ``policies.archive_changes`` reassigning, contacts, classification and custodian changes
- ``policies.rolegrants`` giving roles through the information supervisor (API and CLI)
- ``policies.visibility`` which requests and loan lines a caller may know exist
- ``policies.request_service`` ``RequestService``: the requests and loans routes' one service
- ``policies.models``    the tables: requests, signatures, grants, loans, notifications
- ``policies.archive_creation`` who may own and keep a new archive (API and import)

People
- ``policies.directory`` ``add_user``, ``set_roles``, ``disable_user``, ``load_principal``
- ``policies.handover``  a leaver's handover as a request, and ``StaffHandover``
- ``policies.password_reset`` one-time resets that two people complete
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
