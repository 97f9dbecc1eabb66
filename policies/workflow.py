"""The access-request workflow, composed: the desk and the collaborators at it.

Each concern is its own collaborator over one shared ``Desk`` (audit sink,
chains, policy engine, field groups, the store that re-seals reclassifications):

- ``filing``   ``policies.filing.Filing``: file a request and derive its chain
- ``signing``  ``policies.signing.Signing``: approve, deny, withdraw; the signer rules;
               the final signature issues the grant or applies the change
- ``loans``    ``policies.loans.Loans``: the loan register (confirm, close, list)
- ``sweeper``  ``policies.sweep.Sweeper``: expire requests and grants, flag overdue loans
- ``staff``    ``policies.handover.StaffHandover``: a leaver's handover

``Workflow`` is the desk plus those collaborators, so code that needs only the
dependencies (archive changes, role grants) takes it as a ``Desk``.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit.events import AuditSink
from policies.chains import Chains
from policies.desk import Desk
from policies.engine import PolicyEngine
from policies.filing import Filing
from policies.handover import StaffHandover
from policies.loans import Loans
from policies.signing import Signing
from policies.sweep import Sweeper


class Workflow(Desk):
    """The request workflow over one database; stateless apart from its collaborators."""

    def __init__(
        self,
        *,
        audit: AuditSink,
        chains: Chains | None = None,
        engine: PolicyEngine | None = None,
        known_groups: Sequence[str] | None = None,
    ) -> None:
        super().__init__(audit=audit, chains=chains, engine=engine, known_groups=known_groups)
        self.filing = Filing(self)
        self.loans = Loans(self)
        self.staff = StaffHandover(self)
        self.signing = Signing(self, self.loans, self.staff)
        self.sweeper = Sweeper(self)
