"""What a signer judges a request on, read from the database in a few queries.

A signature is only as good as what the signer saw: who asks (查阅人概况, Art
18.1: name, department, roles; for a visitor the introduction letter or work ID,
Art 18.4), for what purpose and reason, which archives with which marking, owner
and custodian, and by kind the loan's material and copies (Art 19.5), the file's
format and copies, the outside recipient (Art 24); then the chain so far and who
signs next. Archives contribute their clear metadata only: their content, and so
the customer's name, is sealed and never opened here.

Whoever may see a request (``policies.visibility``) sees its facts, but of its
archives only a caller who may list the customer list sees more than the number
and the marking: otherwise a visitor filing for a guessed archive number would
learn which clients exist, their grade, category and department and who looks
after them. For such a caller the custodian's stage, too, names no one (the
marking tells them what chain they face; the custodian's name is the archive's).
The lookups are batched over a whole page of requests: one query each for archives,
people, roles and signatures, however many requests and archives the page holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlmodel import Session, col, select

from policies import reach
from policies.copies import EXPORT_KINDS
from policies.models import AccessRequest, RequestSignature
from policies.roles import RequestKind
from vault.models import Archive, User, UserRole

# The markings of Art 22 as they are written on paper files, by classification code.
MARKINGS = {"internal": "内部", "secret": "机密", "top_secret": "绝密"}
# Bound parameters per IN (...) list: well under SQLite's and PostgreSQL's limits.
_CHUNK = 500
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Person:
    """A member of staff (or a visitor) as a signer may know them: no contact details."""

    username: str
    display_name: str = ""
    department: str = ""
    roles: tuple[str, ...] = ()
    external: bool = False

    def brief(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "department": self.department,
        }


def _chunks(items: Iterable[T]) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def people(session: Session, usernames: Iterable[str]) -> dict[str, Person]:
    """Staff by username, with their roles (two queries per 500 names)."""
    wanted = sorted({u for u in usernames if u})
    rows: dict[str, User] = {}
    roles: dict[str, list[str]] = {}
    for batch in _chunks(wanted):
        for user in session.exec(select(User).where(col(User.username).in_(batch))):
            rows[user.username] = user
        for name, role in session.exec(
            select(User.username, UserRole.role)
            .join(UserRole, col(UserRole.user_id) == col(User.id))
            .where(col(User.username).in_(batch))
        ):
            roles.setdefault(name, []).append(role)
    return {
        name: Person(
            username=name,
            display_name=user.display_name,
            department=user.department,
            roles=tuple(sorted(roles.get(name, ()))),
            external=user.external,
        )
        for name, user in rows.items()
    }


def _archives(session: Session, numbers: Iterable[str]) -> dict[str, Archive]:
    found: dict[str, Archive] = {}
    for batch in _chunks(sorted(set(numbers))):
        for archive in session.exec(select(Archive).where(col(Archive.archive_no).in_(batch))):
            found[archive.archive_no] = archive
    return found


def _signatures(session: Session, ids: Iterable[int]) -> dict[int, list[RequestSignature]]:
    out: dict[int, list[RequestSignature]] = {}
    for batch in _chunks(sorted(set(ids))):
        for sig in session.exec(
            select(RequestSignature)
            .where(col(RequestSignature.request_id).in_(batch))
            .order_by(col(RequestSignature.request_id), col(RequestSignature.stage_index))
        ):
            out.setdefault(sig.request_id, []).append(sig)
    return out


def marking(classification: str | None) -> dict[str, str] | None:
    if classification is None:
        return None
    return {"code": classification, "marking": MARKINGS.get(classification, classification)}


class _Page:
    """The rows a page of requests refers to, loaded once."""

    def __init__(self, session: Session, requests: Sequence[AccessRequest]) -> None:
        self.archives = _archives(session, (a for r in requests for a in r.archives))
        self.signatures = _signatures(session, (r.id for r in requests if r.id is not None))
        names = {r.requester for r in requests}
        names |= {s.signer for sigs in self.signatures.values() for s in sigs}
        names |= {a.owner for a in self.archives.values()}
        names |= {a.custodian for a in self.archives.values() if a.custodian}
        self.people = people(session, names)
        by_uid = {r.uid: self.signatures.get(r.id or -1, []) for r in requests}
        self.next = reach.next_signers_for(
            session, requests, {uid: [s.signer for s in sigs] for uid, sigs in by_uid.items()}
        )

    def brief(self, username: str | None) -> dict[str, Any] | None:
        if not username:
            return None
        person = self.people.get(username)
        return person.brief() if person else {"username": username}

    def requester(self, req: AccessRequest) -> dict[str, Any]:
        person = self.people.get(req.requester, Person(req.requester))
        out: dict[str, Any] = {
            "username": req.requester,
            "display_name": person.display_name,
            # The department the chain was derived from (a head signs only for it).
            "department": req.requester_department,
            "roles": list(person.roles),
            "external": req.requester_external,
        }
        if person.department != req.requester_department and req.requester in self.people:
            out["department_now"] = person.department
        if req.requester_external:
            out["credential_ref"] = req.credential_ref
        return out

    def archive(self, number: str, *, may_list: bool) -> dict[str, Any]:
        row = self.archives.get(number)
        if row is None:
            return {"archive_no": number, "classification": None}
        if not may_list:
            return {"archive_no": number, "classification": marking(row.classification)}
        return {
            "archive_no": number,
            "classification": marking(row.classification),
            "category": row.category,
            "grade": row.grade,
            "department": row.department,
            "owner": self.brief(row.owner),
            "custodian": self.brief(row.custodian),
            "status": row.status,
        }

    def chain(self, req: AccessRequest) -> list[dict[str, Any]]:
        out = []
        for sig in self.signatures.get(req.id or -1, []):
            stage = req.stages[sig.stage_index] if sig.stage_index < len(req.stages) else {}
            signer = self.people.get(sig.signer, Person(sig.signer))
            out.append(
                {
                    "stage": sig.stage_name,
                    "label": stage.get("label"),
                    "signer": sig.signer,
                    "display_name": signer.display_name,
                    "role": sig.signer_role,
                    "decision": sig.decision,
                    "at": sig.signed_at.isoformat(),
                }
            )
        return out


def _by_kind(req: AccessRequest) -> dict[str, Any]:
    if req.kind == RequestKind.LOAN:
        return {"loan": {"material": req.material, "copies": req.copies}}
    if req.kind in EXPORT_KINDS:
        export: dict[str, Any] = {"format": req.export_format or None, "copies": req.copies}
        if req.kind == RequestKind.EXTERNAL:
            export["recipient"] = req.recipient
        return {"export": export}
    if req.kind == RequestKind.REPORT:
        return {
            "report": {
                "scope": req.report_scope,
                # None means every department: the general manager approves that.
                "departments": list(req.report_departments)
                if req.report_departments is not None
                else "all",
                "items": list(req.report_items or ()),
            }
        }
    return {}


def _next(page: _Page, req: AccessRequest, *, may_list: bool) -> dict[str, Any] | None:
    """Who signs next: the stage, in words, and the people who may sign it now (staff
    usernames only); ``alternate`` once no usual signer is left and the alternates sign.
    The custodian's own stage is named, not its signer, to a caller who may not list."""
    upcoming = page.next.get(req.uid)
    if upcoming is None:
        return None
    stage = req.stages[req.next_stage] if req.next_stage < len(req.stages) else {}
    if not may_list and stage.get("custodian") and not upcoming.alternate:
        return {
            "stage": upcoming.stage,
            "label": str(stage.get("label", "")),
            "alternate": False,
            "signers": [],
        }
    return {
        "stage": upcoming.stage,
        "label": upcoming.label,
        "alternate": upcoming.alternate,
        "signers": list(upcoming.signers),
    }


def facts_for(
    session: Session,
    requests: Sequence[AccessRequest],
    purposes: Mapping[str, str],
    *,
    may_list: bool = True,
) -> dict[str, dict[str, Any]]:
    """Each request's facts by request id; check that the caller may see them first.
    ``may_list``: whether the caller may list the customer list (``Action.LIST``);
    without it an archive is its number and marking only."""
    if not requests:
        return {}
    page = _Page(session, requests)
    return {
        req.uid: {
            "requester": page.requester(req),
            "purpose": {"code": req.purpose, "label": purposes.get(req.purpose, req.purpose)},
            "reason": req.reason,
            "archives": [page.archive(no, may_list=may_list) for no in req.archives],
            **_by_kind(req),
            "chain": page.chain(req),
            "next": _next(page, req, may_list=may_list),
        }
        for req in requests
    }
