"""The one question asked before touching customer content: ``decide()``.

The parts of a decision live in their own modules; this one is the entry point
that callers import, and it names them:

- ``policies.decision``  the values: ``Principal`` (who asks), ``Decision`` (the answer)
- ``policies.engine``    ``PolicyEngine``: Casbin's base policy plus grant links
- ``policies.loading``   the database side: ``load_archive_meta``, grant rows and revisions
- ``policies.explain``   the wording of every ``why`` and ``next_step``
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from policies.decision import Decision, Principal
from policies.engine import MODEL_FILE, POLICY_FILE, PolicyEngine, relation
from policies.loading import link_of, load_archive_meta
from policies.roles import Action
from vault.meta import ArchiveMeta

__all__ = [
    "MODEL_FILE",
    "POLICY_FILE",
    "Decision",
    "PolicyEngine",
    "Principal",
    "decide",
    "link_of",
    "load_archive_meta",
    "relation",
]


def decide(
    principal: Principal,
    action: Action | str,
    archive_meta: ArchiveMeta | None = None,
    groups: Sequence[str] = (),
    *,
    now: datetime,
    engine: PolicyEngine,
) -> Decision:
    """Module-level form of :meth:`PolicyEngine.decide`."""
    return engine.decide(principal, action, archive_meta, groups, now=now)
