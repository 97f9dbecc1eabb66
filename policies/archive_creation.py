"""Who may be named on a new archive: the same rules as changing an existing one.

Filing an archive names its readers (owner and contacts) and, for a secret or
top-secret archive, its custodian. Were those names taken as given, one person
alone could list a salesperson of another department (or a visitor, or an
administrator's account) as a contact and so widen who reads the customer's
content, which reassigning an existing archive never allows without a second
signature (one person alone never widens who can read). So a new archive passes
the checks a reassignment and a classification raise make:

* its owner and every contact is an enabled salesperson of the archive's
  department, never a visitor, never an account that holds or held ``admin``
  (``policies.changes.check_reader``);
* its department is the filer's own, unless the filer is an information officer;
* a secret or top-secret archive has a custodian, and any custodian named is an
  enabled information officer or the information supervisor who is not the
  owner (``policies.archive_changes.check_custodian``).

The API runs :func:`check_new_archive` inside the transaction that inserts the
archive; the CLI import runs it on every row (through :func:`import_check`, which
turns a refusal into that row's problem, since ``vault`` never imports ``policies``).

Important clients (篇七: "two or more contacts in the company") are the archives of
a grade in ``Settings.important_grades`` (A by default). Over the API such an
archive is refused (422, ``important-client``) unless ``contacts`` names at least one
salesperson besides the owner. The contacts named when filing are not listed at
once: :func:`request_contacts` files a ``reassign`` request adding them, which a
second person signs like any other added contact. The filer is the owner and
knows what they typed, but the vault's reads are what it guards, and naming a
colleague gives that colleague every later revision, attachment and interaction
of the archive; were it a single act at filing, "file a new archive with X as
contact" would be the one-person way around the reassign chain. The archive is
filed and the request pending in the same transaction, so the answer shows both;
the customer is served by the owner meanwhile. A request nobody could finish (no
department head or other information officer to sign) refuses the filing, naming
the stage, like any change request. The import (an operator's bulk act)
lists its contacts as given and only warns about important clients short of one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from sqlmodel import Session, select

from policies import archive_changes
from policies.changes import check_reader, file_change
from policies.decision import Principal
from policies.desk import Desk
from policies.errors import InvalidInput, PolicyError, Refused
from policies.models import AccessRequest
from policies.roles import RequestKind, Role
from vault.errors import ValidationFailed
from vault.models import Classification, User
from vault.records import NewArchive

_KEPT = frozenset({Classification.SECRET.value, Classification.TOP_SECRET.value})


class MissingContacts(InvalidInput):
    """An important client's archive names no contact besides its owner (篇七)."""

    code = "important-client"


class CustodianRequired(InvalidInput):
    """A secret or top-secret archive names no custodian (Art 22)."""

    code = "custodian-required"


def second_contacts(owner: str, contacts: Sequence[str]) -> list[str]:
    """The contacts besides the owner, once each, in the order given."""
    return [c for c in dict.fromkeys(contacts) if c != owner]


def contacts_warning(
    grade: str, owner: str, contacts: Sequence[str], important_grades: Collection[str]
) -> str | None:
    """Why an archive of ``grade`` is short of contacts, or None. Worded without content
    so it can go to an import report, an API answer or a log."""
    if grade not in important_grades or second_contacts(owner, contacts):
        return None
    return (
        f"grade {grade} is an important client (篇七: two or more contacts in the company); "
        f"name at least one salesperson besides the owner {owner} in contacts"
    )


def check_important_client(record: NewArchive, important_grades: Collection[str]) -> None:
    """The API's rule for a new archive: an important client comes with a second contact."""
    problem = contacts_warning(record.grade, record.owner, record.contacts, important_grades)
    if problem is not None:
        raise MissingContacts(f"important-client rule, field contacts: {problem}")


def check_custodian(
    session: Session,
    *,
    owner: str,
    contacts: Sequence[str],
    classification: str,
    candidate: str | None,
) -> None:
    """A new archive's custodian: required for secret and top-secret archives (Art 22),
    an enabled information officer or the information supervisor, never the owner
    (``archive_changes.check_custodian``, which a reclassification asks too) and never
    one of its contacts, who serve the customer and would then keep the very archive
    they read. Raises ``InvalidInput`` (``Refused`` for an account that is or was admin)."""
    if classification in _KEPT and not candidate:
        raise CustodianRequired(
            f"a {classification} archive needs a custodian (Art 22, field custodian): name "
            "an information officer or the information supervisor who is not the owner"
        )
    if not candidate:
        return
    archive_changes.check_custodian(session, candidate, owner=owner)
    if candidate in contacts:
        raise InvalidInput(
            f"custodian {candidate} is listed as a contact (Art 22, field custodian); the "
            "custodian keeps the archive and never serves the customer"
        )


def check_new_archive(session: Session, record: NewArchive, *, filer: Principal | None) -> None:
    """Refuse a new archive whose department, readers or custodian a reassignment or a
    reclassification would refuse. ``filer`` is the person filing it over the API; the
    operator's CLI import has none (the department rule is about the filer), and there
    an owner who has no account yet is accepted, as the import has always done (the
    CLI warns about those names); contacts and custodians must be users."""
    if (
        filer is not None
        and Role.INFORMATION_OFFICER not in filer.roles
        and record.department != filer.department
    ):
        raise Refused(
            f"archives are filed in your own department ({filer.department or 'none'}), "
            f"not in {record.department or 'no department'}; an information officer may "
            "file one for another department",
            rule="wrong-department",
        )
    if filer is not None or _exists(session, record.owner):
        check_reader(session, record.owner, department=record.department, what="owner")
    for name in dict.fromkeys(record.contacts):
        if name != record.owner:
            check_reader(session, name, department=record.department, what="contact")
    check_custodian(
        session,
        owner=record.owner,
        contacts=record.contacts,
        classification=record.classification,
        candidate=record.custodian,
    )


def request_contacts(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    archive_no: str,
    department: str,
    owner: str,
    contacts: Sequence[str],
    classification: str,
    custodian: str | None,
    now: datetime,
) -> AccessRequest | None:
    """File the ``reassign`` request that adds the contacts named when an archive was
    filed (module docstring: why this is not done at once). The archive was inserted
    in this transaction without them; the final signature lists them
    (``archive_changes.apply_reassign``, which checks them again then)."""
    added = sorted(second_contacts(owner, contacts))
    if not added:
        return None
    change = {
        "archive": archive_no,
        "department": department,
        "owner": {"from": owner, "to": owner},
        "contacts": {"from": [], "to": added},
        "added_contacts": added,
        "removed_contacts": [],
        "subjects": added,
        "at_filing": True,
    }
    return file_change(
        desk,
        session,
        filer,
        kind=RequestKind.REASSIGN,
        change=change,
        reason=f"contacts named when archive {archive_no} was filed (篇七)",
        now=now,
        archives=[archive_no],
        classification=classification,
        custodian=custodian,
    )


def import_check(filer: Principal | None = None) -> Callable[[Session, NewArchive], None]:
    """:func:`check_new_archive` for ``vault.importer``: a refusal becomes the row's
    ``ValidationFailed`` (listed with its line; the import stays all or nothing)."""

    # Rows of one file mostly repeat the same people: each combination is looked up
    # once (the import is one transaction, so the answers cannot change meanwhile).
    answers: dict[tuple[object, ...], str | None] = {}

    def check(session: Session, record: NewArchive) -> None:
        key = (
            record.owner,
            record.department,
            record.contacts,
            record.classification,
            record.custodian,
        )
        if key not in answers:
            try:
                check_new_archive(session, record, filer=filer)
                answers[key] = None
            except PolicyError as exc:
                answers[key] = exc.message
        problem = answers[key]
        if problem is not None:
            raise ValidationFailed(problem)

    return check


def _exists(session: Session, username: str) -> bool:
    return session.exec(select(User.id).where(User.username == username)).first() is not None
