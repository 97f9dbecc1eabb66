"""An archive's profile, opened one field group at a time.

The page first shows the archive's line of the customer list (its metadata and
marking, ``ArchiveActs.describe``: no content, no key touched) and the field
groups of the profile schema. Opening a group is exactly one audited read of
that group through ``Services.read_archive``, the unit of work behind
``GET /customers/{no}?groups=…``; what the decision masks is shown masked,
and a refusal shows the decision's reason and where to ask for access.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from api.schemas import ArchiveNo
from api.web.kit import Page, SignedIn
from policies.errors import AccessDenied, PolicyError
from vault.schema import ProfileSchema

router = APIRouter()
ArchivePath = Annotated[ArchiveNo, Path()]


def group_rows(schema: ProfileSchema, lang: str) -> list[dict[str, Any]]:
    """The schema's field groups with their labels in the page's language."""
    return [
        {
            "name": g.name,
            "label": g.zh if lang == "zh" else g.en,
            "sensitive": g.sensitive,
            "fields": [
                (f, schema.fields[f].zh if lang == "zh" else schema.fields[f].en) for f in g.fields
            ],
        }
        for g in schema.groups.values()
    ]


def refused(page: Page, archive_no: str, exc: PolicyError, meta: Any = None) -> Response:
    """A refusal as a page: the decision's reason, and the view request that would help."""
    decision = getattr(exc, "decision", None)
    next_step = decision.as_dict().get("next_step") if decision is not None else None
    return page.render(
        "clients_refused.html",
        status=403,
        archive_no=archive_no,
        why=str(exc),
        next_step=next_step,
        meta=meta,
        request_link=f"/ui/requests/new?archives={archive_no}&kind=view",
    )


@router.get("/ui/clients/{archive_no}")
def profile_page(
    page: SignedIn,
    archive_no: ArchivePath,
    group: Annotated[str | None, Query(pattern="^[a-z_]{1,32}$")] = None,
) -> Response:
    caller = page.me()
    services = page.services
    schema = services.store.schema
    groups = group_rows(schema, page.lang)
    if group is None:
        meta = services.acts.describe(caller, archive_no).public()
        return page.render("clients_profile.html", meta=meta, groups=groups, opened=None)
    wanted = services.parse_groups(group)
    assert page.claims is not None  # signed in: the session's claims
    try:
        body = services.read_archive(page.claims, page.client, archive_no, wanted)
    except AccessDenied as exc:
        return refused(page, archive_no, exc, _meta_or_none(page, archive_no))
    spec = next(g for g in groups if g["name"] == wanted[0])
    values = body["content"].get(wanted[0], {})
    opened = {
        "group": spec,
        "masked": wanted[0] in body["masked_groups"],
        "rows": [(label, values[name]) for name, label in spec["fields"] if name in values],
        "decision": body["decision"],
    }
    return page.render("clients_profile.html", meta=body["archive"], groups=groups, opened=opened)


def _meta_or_none(page: Page, archive_no: str) -> dict[str, Any] | None:
    """The list's line for the refusal page's banner, when the caller may list."""
    try:
        return page.services.acts.describe(page.me(), archive_no).public()
    except PolicyError:
        return None
