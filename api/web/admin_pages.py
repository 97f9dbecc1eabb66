"""The administrator's pages: accounts (list, add, disable, roles, password reset) and
staff handover.

Every action is ``api.user_admin``, the service of the ``/users`` routes: the
``manage_users`` decision, roles that read content (or compliance) filed as a
role request the information supervisor signs, never a password set by an
administrator. A one-time code is rendered once, in the answer to the POST that
made it (never in a redirect, a cookie or a flash message).

Each form is first checked by the route's own body model (``UserIn``,
``UserPatch``, ``HandoverIn``): the service trusts its caller with free text, and
a name, department or reason with a control or bidirectional-override character
would otherwise reach the signer's page and the audit log from here alone.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar, get_args

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.datastructures import FormData

from api import user_admin
from api.routers.users import HandoverIn, RoleName, UserIn, UserPatch
from api.web.kit import Form, Page, PageError, SignedIn, field_text
from api.web.labels import N_
from api.web.request_kit import check
from policies import roster
from vault.records import USERNAME

router = APIRouter()
PAGE = 50
ROLES: list[str] = list(get_args(RoleName))
CLEARANCES = ("internal", "secret", "top_secret")
UserPath = Annotated[str, Path(pattern=f"^{USERNAME.pattern}$")]
M = TypeVar("M", bound=BaseModel)
# The fields the body models check, as the forms label them.
FIELDS = {
    "username": N_("Username"),
    "display_name": N_("Name"),
    "department": N_("Department"),
    "reason": N_("Reason"),
    "to": N_("Successor for the clients (username)"),
    "custodian_to": N_("Successor custodian (username)"),
}


def _invalid(page: Page, model: type[M], values: dict[str, Any]) -> tuple[M | None, str]:
    """``values`` checked by the API route's body model (``request_kit.check``): the
    model, or the message naming the first bad field (never echoing it)."""
    body, errors = check(page, model, values)
    if body is not None:
        return body, ""
    name = next(iter(errors), "")
    return None, page._("%(field)s: this value is not valid.", field=page._(FIELDS.get(name, name)))


def _checked(page: Page, model: type[M], values: dict[str, Any]) -> M:
    """As ``_invalid``, for the forms without a page of their own: a 422 error page."""
    body, error = _invalid(page, model, values)
    if body is None:
        raise PageError(422, error)
    return body


def _roles(form: FormData) -> list[str]:
    return [r for r in form.getlist("roles") if isinstance(r, str) and r in ROLES]


def _users(page: Page, offset: int, *, status: int = 200, **extra: Any) -> Response:
    items, total = user_admin.list_accounts(
        page.services, page.me(), roster.UserQuery(offset=offset, limit=PAGE)
    )
    return page.render(
        "admin_users.html",
        status=status,
        items=items,
        total=total,
        offset=offset,
        limit=PAGE,
        roles=ROLES,
        **extra,
    )


@router.get("/ui/users")
def users_page(page: SignedIn, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    return _users(page, offset)


def _new_form(page: Page, *, status: int = 200, error: str = "", **values: Any) -> Response:
    return page.render(
        "admin_user_new.html",
        status=status,
        error=error,
        roles=ROLES,
        clearances=CLEARANCES,
        values=values,
    )


@router.get("/ui/users/new")
def new_user_page(page: SignedIn) -> Response:
    user_admin.require_admin(page.services, page.me())
    return _new_form(page)


@router.post("/ui/users/new")
def add_user(page: SignedIn, form: Form) -> Response:
    caller = page.me()
    user_admin.require_admin(page.services, caller)
    roles = _roles(form)
    values: dict[str, Any] = {
        "username": field_text(form, "username", limit=64),
        "display_name": field_text(form, "display_name", limit=128),
        "department": field_text(form, "department", limit=64),
        "clearance": field_text(form, "clearance", limit=16) or "internal",
        "reason": field_text(form, "reason"),
        "roles": roles,
    }
    if not USERNAME.fullmatch(values["username"]):
        error = page._("Username: letters, digits, dots, dashes or underscores.")
        return _new_form(page, status=422, error=error, **values)
    if not roles:
        return _new_form(page, status=422, error=page._("Roles: choose at least one."), **values)
    if values["clearance"] not in CLEARANCES:
        return _new_form(page, status=422, error=page._("Clearance: choose one."), **values)
    body, error = _invalid(page, UserIn, values | {"external": form.get("external") == "on"})
    if body is None:
        return _new_form(page, status=422, error=error, **values)
    change = user_admin.create_account(
        page.services,
        caller,
        user_admin.NewAccount(
            username=body.username,
            roles=body.roles,
            department=body.department,
            clearance=body.clearance,
            external=body.external,
            display_name=body.display_name,
            reason=body.reason,
        ),
    )
    return page.render("admin_done.html", status=201, change=change, reset=change.activation)


@router.post("/ui/users/{username}/disable")
def disable_user(username: UserPath, page: SignedIn, form: Form) -> Response:
    body = _checked(page, UserPatch, {"disabled": True, "reason": field_text(form, "reason")})
    user_admin.change_account(page.services, page.me(), username, disable=True, reason=body.reason)
    return page.redirect("/ui/users", flash=page._("%(user)s is disabled.", user=username))


@router.post("/ui/users/{username}/roles")
def change_roles(username: UserPath, page: SignedIn, form: Form) -> Response:
    roles = _roles(form)
    if not roles:
        return _users(page, 0, status=422, error=page._("Roles: choose at least one."))
    body = _checked(page, UserPatch, {"roles": roles, "reason": field_text(form, "reason")})
    change = user_admin.change_account(
        page.services, page.me(), username, roles=body.roles, reason=body.reason
    )
    return page.render("admin_done.html", change=change, reset=None)


@router.post("/ui/users/{username}/password-reset")
def reset_password(username: UserPath, page: SignedIn, _form: Form) -> Response:
    issued = user_admin.issue_reset(page.services, page.me(), username)
    return page.render("admin_done.html", status=201, change=None, reset=issued)


def _handover_form(page: Page, *, status: int = 200, error: str = "", **values: str) -> Response:
    return page.render("admin_handover.html", status=status, error=error, values=values)


@router.get("/ui/handover")
def handover_page(page: SignedIn) -> Response:
    page.me()
    return _handover_form(page)


@router.post("/ui/handover")
def file_handover(page: SignedIn, form: Form) -> Response:
    values = {name: field_text(form, name, limit=64) for name in ("leaver", "to", "custodian_to")}
    values["reason"] = field_text(form, "reason")
    for name, label in (
        ("leaver", page._("Leaver")),
        ("to", page._("Successor")),
        ("custodian_to", page._("Successor custodian")),
    ):
        if values[name] and not USERNAME.fullmatch(values[name]):
            error = page._("%(field)s: give a username.", field=label)
            return _handover_form(page, status=422, error=error, **values)
    if not values["leaver"]:
        return _handover_form(page, status=422, error=page._("Leaver: give a username."), **values)
    body, error = _invalid(
        page,
        HandoverIn,
        {
            "to": values["to"] or None,
            "custodian_to": values["custodian_to"] or None,
            "reason": values["reason"],
        },
    )
    if body is None:
        return _handover_form(page, status=422, error=error, **values)
    req = user_admin.file_handover(
        page.services,
        page.me(),
        values["leaver"],
        to=body.to,
        custodian_to=body.custodian_to,
        reason=body.reason,
    )
    return page.redirect(
        "/ui/handover",
        flash=page._(
            "Handover of %(user)s filed as request %(uid)s; a second person signs it.",
            user=values["leaver"],
            uid=req.uid,
        ),
    )
