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
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session, select

from policies.archive_changes import check_custodian
from policies.changes import check_reader
from policies.decision import Principal
from policies.errors import InvalidInput, PolicyError, Refused
from policies.roles import Role
from vault.errors import ValidationFailed
from vault.models import Classification, User
from vault.records import NewArchive

_KEPT = frozenset({Classification.SECRET.value, Classification.TOP_SECRET.value})


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
    if record.classification in _KEPT and not record.custodian:
        raise InvalidInput(
            f"a {record.classification} archive needs a custodian (Art 22): name an "
            "information officer or the information supervisor who is not the owner"
        )
    if record.custodian:
        check_custodian(session, record.custodian, owner=record.owner)


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
