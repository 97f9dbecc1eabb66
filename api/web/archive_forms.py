"""Filing and editing an archive through forms generated from the profile schema.

Both call what the API calls (``ArchiveActs.create`` with the line
``api.routers.customers.filing_data`` makes, ``ArchiveActs.update``), after the
same pydantic models; the service's problems come back next to their fields,
with the user's input kept in the form. An edit is one field group at a time,
pre-filled only through one audited read of that group.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import ValidationError

from api.routers.customers import filing_data
from api.schemas import ArchiveCreate, ArchiveNo, ArchivePatch
from api.web.archive_form import (
    Filled,
    add_pydantic,
    fieldsets,
    read_consent,
    read_meta,
    read_profile,
)
from api.web.kit import Form, Page, SignedIn, field_text
from api.web.profile import group_rows, refused
from policies.errors import AccessDenied, InvalidInput
from vault.errors import ValidationFailed

router = APIRouter()
ArchivePath = Annotated[ArchiveNo, Path()]
GroupQuery = Annotated[str | None, Query(pattern="^[a-z_]{1,32}$")]


def _form(page: Page, filled: Filled, status: int = 200, **context: Any) -> Response:
    schema = page.services.store.schema
    return page.render(
        "clients_form.html",
        status=status,
        filled=filled,
        all_groups=group_rows(schema, page.lang),
        **context,
    )


@router.get("/ui/clients/new")
def new_form(page: SignedIn) -> Response:
    page.me()
    filled = Filled(values={"category": "general", "grade": "C", "classification": "internal"})
    sets = fieldsets(page.services.store.schema, page.lang)
    return _form(page, filled, sets=sets, meta=None, action="/ui/clients/new")


@router.post("/ui/clients/new")
def create(page: SignedIn, form: Form) -> Response:
    caller = page.me()
    schema = page.services.store.schema
    filled = Filled()
    body: dict[str, Any] = read_meta(form, filled)
    body["profile"] = read_profile(form, schema, filled)
    consent = read_consent(form, schema, filled)
    if consent is not None:
        body["consent"] = consent
    sets = fieldsets(schema, page.lang)
    try:
        data = filing_data(ArchiveCreate.model_validate(body), caller)
        created = page.services.acts.create(caller, data)
    except ValidationError as exc:
        add_pydantic(filled, exc)
    except ValidationFailed as exc:
        for problem in exc.problems:
            filled.add(problem)
    except InvalidInput as exc:
        filled.add(exc.message)
    else:
        no = created.meta.archive_no
        flash = page._("Archive %(no)s filed.", no=no)
        if created.contacts_request is not None:
            flash += " " + page._("The contacts you named are added once a second person signs.")
        return page.redirect(f"/ui/clients/{no}", flash=flash)
    return _form(page, filled, 422, sets=sets, meta=None, action="/ui/clients/new")


@router.get("/ui/clients/{archive_no}/edit")
def edit_form(page: SignedIn, archive_no: ArchivePath, group: GroupQuery = None) -> Response:
    """Without a group: which group to edit. With one: one audited read pre-fills it."""
    caller = page.me()
    services = page.services
    if group is None:
        meta = services.acts.describe(caller, archive_no).public()
        return _form(page, Filled(), sets=None, meta=meta, action="")
    (name,) = services.parse_groups(group)
    assert page.claims is not None
    try:
        read = services.read_archive(page.claims, page.client, archive_no, (name,))
    except AccessDenied as exc:
        return refused(page, archive_no, exc, None)
    sets = fieldsets(services.store.schema, page.lang, only=name)
    meta = read["archive"]
    if name in read["masked_groups"]:
        return _form(page, Filled(), 403, sets=None, meta=meta, action="", masked=name)
    values = read["content"].get(name, {})
    filled = Filled(values={"p." + k: v for k, v in values.items()})
    return _form(
        page,
        filled,
        sets=sets,
        meta=meta,
        group=name,
        had=",".join(sorted(values)),
        action=f"/ui/clients/{archive_no}/edit",
    )


@router.post("/ui/clients/{archive_no}/edit")
def update(page: SignedIn, archive_no: ArchivePath, form: Form) -> Response:
    """The group's fields as typed: a field emptied that held a value is removed."""
    caller = page.me()
    services = page.services
    schema = services.store.schema
    (name,) = services.parse_groups(field_text(form, "group", limit=32) or "-")
    had = set(field_text(form, "had", limit=4000).split(",")) & set(schema.groups[name].fields)
    filled = Filled()
    typed = read_profile(form, schema, filled)
    profile: dict[str, str | None] = {
        f: typed.get(f) for f in schema.groups[name].fields if f in typed or f in had
    }
    consent = read_consent(form, schema, filled)
    try:
        patch = ArchivePatch.model_validate({"profile": profile, "consent": consent})
        if not patch.profile and patch.consent is None:
            filled.general.append(page._("Change a field or record a consent."))
        else:
            given = patch.consent.model_dump(mode="json") if patch.consent is not None else None
            services.acts.update(caller, archive_no, patch.profile, given)
            return page.redirect(
                f"/ui/clients/{archive_no}", flash=page._("Archive %(no)s updated.", no=archive_no)
            )
    except ValidationError as exc:
        add_pydantic(filled, exc)
    except ValidationFailed as exc:
        for problem in exc.problems:
            filled.add(problem)
    meta = services.acts.describe(caller, archive_no).public()
    return _form(
        page,
        filled,
        422,
        sets=fieldsets(schema, page.lang, only=name),
        meta=meta,
        group=name,
        had=",".join(sorted(had)),
        action=f"/ui/clients/{archive_no}/edit",
    )
