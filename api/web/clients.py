"""A salesperson's clients: the customer list (metadata and masked names) and the search.

Both call what ``GET /customers`` and ``POST /customers/search`` call
(``ArchiveActs.list_archives``, ``ArchiveActs.search``) and show what those
return: the list's clear metadata and each client's masked name (王**), never a
field of the profile. The search form is a POST so a searched mobile number or
ID never sits in a URL.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.routers.customers import SEARCH_FIELDS
from api.schemas import public
from api.web.kit import Form, SignedIn, field_text
from vault.errors import ValidationFailed

router = APIRouter()
PAGE = 25
SEARCH_LIMITS = {"mobile": 40, "name": 40, "id_number": 40, "plate": 20}  # SearchIn's bounds


@router.get("/ui/clients")
def clients_page(
    page: SignedIn,
    grade: Annotated[str, Query(pattern="^[ABCD]?$")] = "",
    category: Annotated[str, Query(pattern="^(general|special)?$")] = "",
    classification: Annotated[str, Query(pattern="^(internal|secret|top_secret)?$")] = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """Salespeople see the archives they own; a department head their department's."""
    caller = page.me()
    mine = (
        "salesperson" in caller.principal.roles or "department_head" not in caller.principal.roles
    )
    found = page.services.acts.list_archives(
        caller,
        owner=caller.username if mine else None,
        department=None if mine else caller.principal.department,
        grade=grade or None,
        category=category or None,
        classification=classification or None,
        offset=offset,
        limit=PAGE,
    )
    chosen = {"grade": grade, "category": category, "classification": classification}
    query = "&".join(f"{k}={v}" for k, v in chosen.items() if v)
    return page.render(
        "clients_list.html",
        items=[public(m) for m in found.items],
        total=found.total,
        limit=found.limit,
        offset=found.offset,
        chosen=chosen,
        mine=mine,
        base="/ui/clients" + ("?" + query if query else ""),
    )


@router.get("/ui/search")
def search_page(page: SignedIn) -> Response:
    page.me()
    return page.render("clients_search.html", by="mobile", value="", items=None, error="")


@router.post("/ui/search")
def search_submit(page: SignedIn, form: Form) -> Response:
    """Exactly one field searched, as the API requires; its value never echoes in errors."""
    caller = page.me()
    by = field_text(form, "by", limit=16)
    if by not in SEARCH_FIELDS:
        return _search_error(page, "mobile", "", page._("Choose what to search by."))
    value = field_text(form, "value", limit=200)
    if not value:
        return _search_error(page, by, "", page._("Enter the value to search for."))
    if len(value) > SEARCH_LIMITS[by]:
        message = page._("At most %(n)s characters.", n=SEARCH_LIMITS[by])
        return _search_error(page, by, value, message)
    try:
        found = page.services.acts.search(caller, SEARCH_FIELDS[by], value)
    except ValidationFailed as exc:
        return _search_error(page, by, value, exc.message)
    return page.render(
        "clients_search.html", by=by, value=value, items=[public(m) for m in found], error=""
    )


def _search_error(page: SignedIn, by: str, value: str, error: str) -> Response:
    return page.render(
        "clients_search.html", status=422, by=by, value=value, items=None, error=error
    )
