"""The read of an archive's content as one unit of work, the same for every caller.

The API route, the fast path and (later) the web pages call ``ArchiveReads.read``
the same way, with who is asking (``Credentials``, from a verified token), the
archive number and the groups asked for. Inside one transaction:

1. the principal, fresh from the database (roles, clearance, department; a
   disabled user or a revoked token stops here, before anything is read), with
   the counters of step 3 in the same statement;
2. the archive's clear metadata (its sealed manifest is checked on decrypt),
   with the ciphertext of the groups asked for in the same statement: still
   sealed, and only what the decision shows is ever opened;
3. the decision (``PolicyEngine.decide``, with grants synced in the same
   transaction);
4. the vault decrypts only the groups the decision shows, clear or masked;
5. the audit entry: read, denied, or a decryption error;

then the commit, and only then does plaintext leave: if the audit entry cannot
be written or committed, the caller gets the error and no content (fail-closed).
A denial is audited and committed too, then raised.

Decoys (``policies.decoys``) are checked in the same transaction, against an
in-memory set caught up by its counter, read with the principal like the grants'
counter that step 3 catches up by: a read of one, allowed or denied,
raises its case (committed) before the answer or the refusal leaves, and the
audit entry of the read itself is that of any read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from audit.events import Actor
from foundation.clock import utcnow
from foundation.rawsql import raw_autocommit
from policies.decision import Decision
from policies.decoys import COUNTER as DECOYS
from policies.decoys import Decoys
from policies.directory import load_principal_counted
from policies.engine import PolicyEngine
from policies.errors import AccessDenied, PolicyError
from policies.loading import GRANTS
from policies.roles import Action
from vault.reading import ArchiveView, Opened, ReadPermit
from vault.rows import check_number
from vault.store import ArchiveStore


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who asks, as a verified token names them; the principal is loaded in the read."""

    username: str
    issued_at: datetime | None = None
    generation: int | None = None
    client: str | None = None


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What a read returns once its audit entry has committed."""

    view: ArchiveView
    decision: Decision


def permit_of(decision: Decision) -> ReadPermit:
    """What an allowing decision lets a read show, and what its audit entry carries."""
    return ReadPermit(
        groups=decision.groups,
        masked_groups=decision.masked_groups,
        purpose=decision.purpose,
        grant_id=decision.grant_id,
        reason=decision.reason,
    )


class ArchiveReads:
    """Principal, metadata, decision, decrypt, audit, commit: one call, one transaction."""

    def __init__(
        self,
        store: ArchiveStore,
        policy: PolicyEngine,
        clock: Callable[[], datetime] = utcnow,
        decoys: Decoys | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.decoys = decoys

    def read(self, who: Credentials, archive_no: str, groups: Sequence[str] = ()) -> ReadResult:
        """The groups asked for (every group when none are named), as the decision shows them.

        Raises ``UnknownUser``/``UserDisabled`` (nothing read, nothing written),
        ``ArchiveNotFound``/``ArchiveDestroyed``, ``AccessDenied`` (after the
        denial committed) or the decryption error (after it was audited).
        """
        reader = self.store.reader
        check_number(archive_no)
        requested = tuple(groups)
        asked = reader.wanted(list(requested) if requested else None)
        refusal: Exception | None = None
        decision: Decision | None = None
        opened: Opened | None = None
        decoy = False
        with raw_autocommit(self.store.engine) as tx:
            # The counters ride on the principal's statement, the asked groups'
            # ciphertext on the archive's: two round trips before the decision.
            principal, revision = load_principal_counted(
                tx,
                who.username,
                (GRANTS, DECOYS),
                token_issued_at=who.issued_at,
                token_generation=who.generation,
            )
            actor = Actor(principal.username, principal.role_label, who.client)
            stored = reader.load(tx, archive_no, asked)
            if self.decoys is not None:
                decoy = bool(self.decoys.among(tx, (archive_no,), latest=revision[DECOYS]))
            try:
                self.policy.sync(tx, latest=revision[GRANTS])
                decision = self.policy.decide(
                    principal, Action.READ, stored.meta, requested, now=self.clock()
                )
                if not decision.allowed:
                    raise AccessDenied(decision)
            except SQLAlchemyError:
                # The database failed, not the decision: nothing was decided, so nothing
                # is recorded as refused; the transaction rolls back and nothing is shown.
                raise
            except Exception as exc:  # noqa: BLE001 - audited, committed, re-raised below
                refusal = exc
                # A refusal's own words; any other failure by its kind only (its text
                # may hold anything, control characters included).
                why = (
                    str(exc)
                    if isinstance(exc, PolicyError)
                    else f"the decision failed ({type(exc).__name__})"
                )
                reader.deny(tx, actor, archive_no, asked, why)
            else:
                opened = reader.open_permitted(tx, actor, stored, permit_of(decision))
        reader.committed()
        if decoy:
            assert self.decoys is not None
            self.decoys.touched(
                who.username,
                (archive_no,),
                how="read",
                outcome="denied" if refusal is not None else "allowed",
            )
        if refusal is not None:
            raise refusal
        assert opened is not None and decision is not None
        return ReadResult(view=reader.view(opened), decision=decision)
