"""Everything done to an archive other than reading its content, decided and done together.

Each method is one transaction: the caller's decision (``PolicyEngine.decide``,
grants synced in the same transaction) against the archive's metadata as that
transaction sees it, then the action, then its audit entry and the commit. So
a grant revoked or an archive reclassified a moment before is never acted on
under the older answer. A refusal rolls the transaction back; the event
describing the refused attempt (carried on the exception) is appended in a
transaction of its own, so refusals stay on record.

``NotCovered`` is a refusal worded for the caller that is not a policy decision
(a grant that does not name the archive, records without their field group).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from audit.events import AuditAction, AuditEvent, AuditSink, Outcome
from foundation.clock import utcnow
from foundation.db import transaction
from policies import archive_changes, copies, reports
from policies.act_types import Caller, Created, Export, NotCovered, denial
from policies.archive_changes import ChangeOutcome
from policies.archive_creation import (
    check_important_client,
    check_new_archive,
    contacts_warning,
    request_contacts,
)
from policies.changes import audited_refusals
from policies.decision import Decision
from policies.decoys import Decoys
from policies.engine import PolicyEngine
from policies.errors import PolicyError, Refused
from policies.export_marks import ExportMarks
from policies.fingerprint import Row
from policies.models import AccessGrant, AccessRequest
from policies.roles import Action, GrantState
from policies.workflow import Workflow
from vault.archives import Page
from vault.errors import ValidationFailed
from vault.importer import check_people
from vault.meta import ArchiveMeta
from vault.models import Archive, User
from vault.store import ArchiveStore

__all__ = ["ArchiveActs", "Caller", "Created", "Export", "NotCovered", "denial"]

# Interactions and attachments are business records filed in the archive; a grant
# reaches them through the ``notes`` field group.
RECORDS_GROUP = "notes"


class ArchiveActs:
    """Decide and act on archives in one transaction per call."""

    def __init__(
        self,
        *,
        store: ArchiveStore,
        policy: PolicyEngine,
        workflow: Workflow,
        audit: AuditSink,
        clock: Callable[[], datetime] = utcnow,
        marks: ExportMarks | None = None,
        decoys: Decoys | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.workflow = workflow
        self.audit = audit
        self.clock = clock
        self.marks = marks
        self.decoys = decoys

    def _decoys_in(self, session: Session, numbers: Iterable[str]) -> list[str]:
        """Decoys among ``numbers``, in the act's transaction (``policies.decoys``)."""
        return self.decoys.among(session, numbers) if self.decoys is not None else []

    def _touched(self, caller: Caller, decoys: list[str], how: str) -> None:
        """After the act committed: the decoys' cases, before anything is returned."""
        if decoys and self.decoys is not None:
            self.decoys.touched(caller.username, decoys, how=how, outcome="allowed")

    # -- the unit and the decision ------------------------------------------------

    @contextlib.contextmanager
    def _unit(self, *, grants_changed: bool = False) -> Iterator[Session]:
        """One transaction; a refusal's event is appended after the rollback."""
        try:
            with transaction(self.store.engine) as session:
                yield session
        except PolicyError as exc:
            if exc.event is not None:
                with transaction(self.store.engine) as session:
                    self.audit.append(session, exc.event)
            raise
        if grants_changed:
            with Session(self.store.engine) as session:
                self.policy.sync(session)

    def require(
        self,
        session: Session,
        caller: Caller,
        action: Action,
        audit_action: AuditAction,
        archive: ArchiveMeta | None,
        groups: tuple[str, ...] = (),
    ) -> Decision:
        """The decision, in the caller's transaction; ``AccessDenied`` (audited) if it refuses."""
        self.policy.sync(session)
        decision = self.policy.decide(caller.principal, action, archive, groups, now=self.clock())
        if not decision.allowed:
            archives = (archive.archive_no,) if archive else ()
            raise denial(decision, caller.actor, audit_action, archives=archives, groups=groups)
        return decision

    def _on_archive(
        self,
        session: Session,
        caller: Caller,
        action: Action,
        audit_action: AuditAction,
        archive_no: str,
        groups: tuple[str, ...] = (),
    ) -> Decision:
        # Locked for a change: the metadata decided on is the one the action sees.
        changes = action not in (Action.READ, Action.EXPORT, Action.PROVIDE)
        meta = self.store.reader.meta(archive_no, session=session, for_update=changes)
        return self.require(session, caller, action, audit_action, meta, groups)

    # -- filing, lists, search, reports ----------------------------------------------

    def create(self, caller: Caller, data: dict[str, Any]) -> Created:
        """File an archive for the caller; who it names passes the rules a change would,
        and the contacts it names are added by a request a second person signs
        (``policies.archive_creation``: why)."""
        roles = caller.principal.roles
        with self._unit() as session:
            decision = self.require(session, caller, Action.CREATE, AuditAction.CREATE, None)
            if data["owner"] != caller.principal.username and "information_officer" not in roles:
                raise NotCovered(
                    "salespeople file archives as their own; an "
                    "information officer may file one for somebody else"
                )
            if "archive_no" in data and "information_officer" not in roles:
                # A number chosen by the caller moves the year's counter past it: one made
                # up near the end of the range would leave nobody a number for the year.
                raise NotCovered(
                    "archive numbers are given by the vault; an information officer may file "
                    "an archive under the number of an existing paper file"
                )
            record = self.store.filing.prepare(data)
            named = {n for n in (record.owner, record.custodian, *record.contacts) if n}
            known = set(session.exec(select(User.username).where(col(User.username).in_(named))))
            check_people(record, known)
            check_important_client(record, self.store.settings.important_grades)
            with audited_refusals(AuditAction.CREATE, caller.principal):
                check_new_archive(session, record, filer=caller.principal)
            # Filed with its owner alone; the contacts wait for a second signature.
            contacts, record.contacts = record.contacts, ()
            meta = self.store.filing.file(session, record, actor=caller.actor)
            request = request_contacts(
                self.workflow,
                session,
                caller.principal,
                archive_no=meta.archive_no,
                department=meta.department,
                owner=meta.owner,
                contacts=contacts,
                classification=meta.classification,
                custodian=meta.custodian,
                now=self.clock(),
            )
        return Created(meta=meta, decision=decision, contacts_request=request)

    def list_archives(
        self, caller: Caller, *, missing_contacts: bool = False, **filters: Any
    ) -> Page:
        """The customer list (metadata only) under the caller's list permission;
        ``missing_contacts`` keeps the important clients short of a second contact."""
        if missing_contacts:
            filters["short_of_contacts"] = self.store.settings.important_grades
        with self._unit() as session:
            self.require(session, caller, Action.LIST, AuditAction.LIST, None)
            page = self.store.archives.list(actor=caller.actor, session=session, **filters)
        return replace(page, items=self.names_for(caller, page.items))

    def names_for(self, caller: Caller, metas: list[ArchiveMeta]) -> list[ArchiveMeta]:
        """Keep a masked name only where the caller may see the name's group, in clear or
        masked: the list permission alone shows metadata, never anything derived from
        content (a surname, a name's length) of a client the caller may not read."""
        group = self.store.masked_names.group
        if group is None:
            return metas
        now = self.clock()
        return [
            meta
            if meta.masked_name is None
            or (
                (
                    d := self.policy.decide(caller.principal, Action.READ, meta, (group,), now=now)
                ).allowed
                and (group in d.groups or group in d.masked_groups)
            )
            else replace(meta, masked_name=None)
            for meta in metas
        ]

    def describe(self, caller: Caller, archive_no: str) -> ArchiveMeta:
        """One archive's line of the customer list (metadata only, never content), under
        the same list permission and audited as a list naming that archive: what a page
        shows about an archive before any of its field groups is opened."""
        with self._unit() as session:
            self.require(session, caller, Action.LIST, AuditAction.LIST, None)
            meta = self.store.reader.meta(archive_no, session=session)
            self.audit.append(
                session,
                AuditEvent(action=AuditAction.LIST, actor=caller.actor, archives=(archive_no,)),
            )
            return meta

    def search(
        self, caller: Caller, field_name: str, value: str, limit: int = 50
    ) -> list[ArchiveMeta]:
        """Exact-match search, only among archives whose searched group the caller may
        read in clear: each candidate's read decision (not masked, and covered by the
        grant that allows it) is made before it is opened, so neither the result, its
        count nor an error says anything about values the caller may not read. A
        masked read or a grant for other groups does not count, or each search would
        answer a question about a value the caller may not see (and about who is a
        client)."""
        archives = self.store.archives
        with self._unit() as session:
            self.require(session, caller, Action.SEARCH, AuditAction.SEARCH, None)
        query = archives.search_query(field_name, value)
        hits: list[tuple[Archive, ArchiveMeta]] = []
        with self._unit() as session:
            self.policy.sync(session)
            for archive, meta in archives.candidates(session, query):
                decision = self.policy.decide(
                    caller.principal, Action.READ, meta, (query.group,), now=self.clock()
                )
                if decision.shows_in_clear(query.group) and archives.matches(
                    session, archive, query
                ):
                    hits.append((archive, meta))
                    if len(hits) >= limit:
                        break
            found = archives.named(hits)
            archives.record_search(session, caller.actor, query, found)
            decoys = self._decoys_in(session, (m.archive_no for m in found))
        self._touched(caller, decoys, "search")
        return self.names_for(caller, found)

    def statistics(self, caller: Caller, grant: str | None = None) -> dict[str, Any]:
        """Counts over the clear metadata under an approved report request (Art 10): only
        the departments and items that grant covers (``policies.reports``), and the
        answer says which. ``grant`` picks one of the caller's report grants by its
        grant or request id; otherwise the one the decision found."""
        now = self.clock()
        with self._unit() as session:
            d = self.require(session, caller, Action.REPORT, AuditAction.REPORT, None)
            uid = grant or d.grant_id
            if uid is None:
                raise NotCovered("reports are counted under a report grant; file a report request")
            covered = reports.reach(
                reports.active_report_grant(session, caller.username, uid, now=now)
            )
            counts = self.store.archives.statistics(
                actor=caller.actor,
                grant_id=covered.grant,
                purpose=d.purpose,
                session=session,
                departments=covered.departments,
                items=covered.items,
                today=now.date(),
            )
            return {**counts, "covers": covered.public()}

    # -- changes ------------------------------------------------------------------------

    def update(
        self,
        caller: Caller,
        archive_no: str,
        profile: dict[str, Any],
        consent: dict[str, Any] | None,
    ) -> tuple[ArchiveMeta, Decision]:
        """Change fields and/or record consent, under an update decision on those groups."""
        fields = self.store.schema.validate_profile(
            profile, limit=self.store.settings.max_field_chars, allow_null=True
        )
        with self._unit() as session:
            decision = self._on_archive(
                session, caller, Action.UPDATE, AuditAction.UPDATE, archive_no, tuple(fields)
            )
            if consent is not None:
                self.store.lifecycle.record_consent(
                    archive_no, consent, actor=caller.actor, session=session
                )
            if profile:
                meta = self.store.archives.update(
                    archive_no,
                    profile,
                    actor=caller.actor,
                    purpose=decision.purpose,
                    grant_id=decision.grant_id,
                    session=session,
                )
            else:
                meta = self.store.reader.meta(archive_no, session=session)
        return meta, decision

    def reclassify(
        self, caller: Caller, archive_no: str, level: str, custodian: str | None, reason: str
    ) -> ChangeOutcome:
        """Raise at once, or file the request that lowering or a new custodian needs."""
        with self._unit(grants_changed=True) as session:
            self._on_archive(session, caller, Action.RECLASSIFY, AuditAction.RECLASSIFY, archive_no)
            return archive_changes.reclassify(
                self.workflow,
                session,
                caller.principal,
                archive_no=archive_no,
                level=level,
                custodian=custodian,
                reason=reason,
                now=self.clock(),
            )

    def reassign(
        self,
        caller: Caller,
        archive_no: str,
        owner: str | None,
        contacts: list[str] | None,
        reason: str,
    ) -> ChangeOutcome:
        """File the request a new owner or added contacts need; removing contacts is done now."""
        with self._unit(grants_changed=True) as session:
            self._on_archive(session, caller, Action.REASSIGN, AuditAction.REASSIGN, archive_no)
            if owner is None and contacts is None:
                raise ValidationFailed("give a new owner, contacts or both")
            outcome = archive_changes.reassign(
                self.workflow,
                session,
                caller.principal,
                archive_no=archive_no,
                owner=owner,
                contacts=contacts,
                reason=reason,
                now=self.clock(),
            )
            if outcome.request is None:
                meta = self.store.reader.meta(archive_no, session=session)
                applied = meta.public()
                # Removing contacts only narrows, so it is never refused; an important
                # client left with its owner alone is said so in the answer (篇七).
                warning = contacts_warning(
                    meta.grade, meta.owner, meta.contacts, self.store.settings.important_grades
                )
                if warning is not None:
                    applied["warnings"] = [warning]
                outcome = ChangeOutcome(applied=applied)
            return outcome

    # -- approved exports and destruction ---------------------------------------------

    def _grant(
        self, session: Session, request_uid: str, username: str, actions: set[str]
    ) -> AccessGrant:
        grants = session.exec(
            select(AccessGrant).where(
                AccessGrant.request_uid == request_uid, AccessGrant.subject == username
            )
        ).all()
        for grant in grants:
            if grant.state == GrantState.ACTIVE and actions & set(grant.actions):
                return grant
        raise NotCovered(
            f"request {request_uid} gives you no active "
            f"{'/'.join(sorted(actions))} grant; file one and have it approved"
        )

    def export(self, caller: Caller, request_uid: str, export_format: str | None = None) -> Export:
        """Exactly the approved archives and field groups, decided per archive now, in
        the approved format (``None``: that one), taking one of the approved copies."""
        with self._unit() as session:
            grant = self._grant(
                session, request_uid, caller.principal.username, {"export", "provide"}
            )
            action = Action.EXPORT if "export" in grant.actions else Action.PROVIDE
            groups = tuple(grant.groups)
            approved = session.exec(
                select(AccessRequest.export_format).where(AccessRequest.id == grant.request_id)
            ).first()
            # A request filed before formats were stated approved none in particular.
            fmt = export_format or approved or copies.DEFAULT_FORMAT
            if approved and fmt != approved:
                raise self._export_refused(
                    caller,
                    grant,
                    "format",
                    f"request {request_uid} was approved for "
                    f"{approved}, not {fmt}; export it as {approved} or file a new request",
                )
            for no in grant.archives:
                decision = self._on_archive(session, caller, action, AuditAction.EXPORT, no, groups)
                if set(decision.groups) != set(groups) or decision.grant_id != grant.uid:
                    raise NotCovered(f"the grant no longer covers archive {no}")
            copy = copies.take_copy(session, grant)
            if copy is None:
                raise self._export_refused(
                    caller,
                    grant,
                    "copies-used",
                    f"all {grant.copies} approved copies were "
                    f"made; file a new {grant.kind} request",
                )
            mark = self.marks.new_id() if self.marks is not None else None
            views = self.store.reader.export(
                grant.archives,
                groups,
                actor=caller.actor,
                purpose=grant.purpose,
                grant_id=grant.uid,
                reason=grant.reason,
                provision=action is Action.PROVIDE,
                session=session,
                detail={"request": request_uid, "copy": copy, "copies": grant.copies}
                | ({"fingerprint": mark} if mark else {}),
            )
            rows: list[Row] = [(v.meta.archive_no, v.content) for v in views]
            if self.marks is not None and mark is not None:
                kept = self.marks.keep(
                    session,
                    mark,
                    grant=grant,
                    exported_by=caller.username,
                    copy=copy,
                    fmt=fmt,
                    views=views,
                    now=self.clock(),
                )
                rows = self.marks.rows(mark, views, kept.decoys, groups)
            decoys = self._decoys_in(session, grant.archives)
        self._touched(caller, decoys, "export")
        return Export(
            views=views,
            grant=grant,
            groups=groups,
            format=fmt,
            copy=copy,
            rows=rows,
            fingerprint=mark,
        )

    @staticmethod
    def _export_refused(caller: Caller, grant: AccessGrant, rule: str, message: str) -> Refused:
        """A refused export, audited as denied (identifiers and counts only)."""
        return Refused(
            message,
            rule=rule,
            event=AuditEvent(
                action=AuditAction.EXPORT,
                actor=caller.actor,
                outcome=Outcome.DENIED,
                archives=tuple(grant.archives),
                groups=tuple(grant.groups),
                grant_id=grant.uid,
                reason=message,
                detail={"request": grant.request_uid, "rule": rule, "copies": grant.copies},
            ),
        )

    def destroy(
        self, caller: Caller, archive_no: str, request_uid: str, reason: str | None
    ) -> dict[str, Any]:
        """Crypto-shred an archive under an approved destroy request; the certificate."""
        with self._unit() as session:
            grant = self._grant(session, request_uid, caller.principal.username, {"destroy"})
            if archive_no not in grant.archives:
                raise NotCovered(f"request {request_uid} does not cover archive {archive_no}")
            decision = self._on_archive(
                session, caller, Action.DESTROY, AuditAction.DESTROY, archive_no
            )
            certificate = self.store.lifecycle.destroy(
                archive_no,
                actor=caller.actor,
                reason=reason or grant.reason,
                approval=decision.grant_id or grant.uid,
                session=session,
            )
        certificate["wal_checkpointed"] = self.store.lifecycle.checkpoint()
        return certificate

    # -- business records -----------------------------------------------------------------

    def _records(
        self, session: Session, caller: Caller, archive_no: str, action: Action, audit: AuditAction
    ) -> Decision:
        """Records are read under the ``notes`` group in clear, and filed under an update."""
        reading = action is Action.READ
        groups = (RECORDS_GROUP,) if reading else ()
        decision = self._on_archive(session, caller, action, audit, archive_no, groups)
        if reading and RECORDS_GROUP not in decision.groups:
            exc = NotCovered(
                "interaction records and attachments need the "
                f"{RECORDS_GROUP!r} field group in clear; file a view request for it"
            )
            exc.event = denial(decision, caller.actor, audit, archives=(archive_no,)).event
            raise exc
        return decision

    def interactions(self, caller: Caller, archive_no: str) -> list[dict[str, Any]]:
        with self._unit() as session:
            d = self._records(
                session, caller, archive_no, Action.READ, AuditAction.INTERACTION_READ
            )
            out = self.store.records.interactions(
                archive_no,
                actor=caller.actor,
                purpose=d.purpose,
                grant_id=d.grant_id,
                session=session,
            )
            decoys = self._decoys_in(session, (archive_no,))
        self._touched(caller, decoys, "interactions")
        return out

    def add_interaction(
        self, caller: Caller, archive_no: str, *, occurred_on: date | str, channel: str, text: str
    ) -> dict[str, Any]:
        with self._unit() as session:
            self._records(session, caller, archive_no, Action.UPDATE, AuditAction.INTERACTION_ADD)
            return self.store.records.add_interaction(
                archive_no,
                occurred_on=occurred_on,
                channel=channel,
                text=text,
                actor=caller.actor,
                session=session,
            )

    def attachments(self, caller: Caller, archive_no: str) -> list[dict[str, Any]]:
        with self._unit() as session:
            d = self._records(session, caller, archive_no, Action.READ, AuditAction.ATTACHMENT_LIST)
            out = self.store.records.attachments(
                archive_no,
                actor=caller.actor,
                purpose=d.purpose,
                grant_id=d.grant_id,
                session=session,
            )
            decoys = self._decoys_in(session, (archive_no,))
        self._touched(caller, decoys, "attachments")
        return out

    def open_attachment(
        self, caller: Caller, archive_no: str, uid: str
    ) -> tuple[dict[str, Any], Iterator[bytes]]:
        """Decide and audit in one transaction; the chunks stream after its commit."""
        with self._unit() as session:
            d = self._records(session, caller, archive_no, Action.READ, AuditAction.ATTACHMENT_READ)
            opened = self.store.records.open_attachment(
                archive_no,
                uid,
                actor=caller.actor,
                purpose=d.purpose,
                grant_id=d.grant_id,
                session=session,
            )
            decoys = self._decoys_in(session, (archive_no,))
        self._touched(caller, decoys, "attachment")
        return opened

    def may_upload(self, caller: Caller, archive_no: str) -> None:
        """The decision an upload needs before its body is read (the body streams later,
        in short transactions of its own, see ``vault.uploads``)."""
        with self._unit() as session:
            self._records(session, caller, archive_no, Action.UPDATE, AuditAction.ATTACHMENT_ADD)
