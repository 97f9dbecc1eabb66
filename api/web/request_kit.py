"""What the request, queue and loan pages share: the service, the facts, the banner.

The pages call ``RequestService`` built exactly as the API's requests routes build it
(``api.routers.requests.request_service``), and check form input with the API's own
body models (``RequestIn``, ``ApproveIn``, ``DenyIn``), so a form accepts what the
API accepts and refuses what it refuses. What is left here is presentation: the
stages in words for a page, and the highest marking among the archives shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from api.routers.requests import request_service
from api.web.kit import Page
from api.web.labels import N_
from policies.models import AccessRequest
from policies.request_service import RequestService
from policies.roles import rank

M = TypeVar("M", bound=BaseModel)

# The form fields' names in words, for the message that says which fields to fix.
FIELD_LABELS = {
    "kind": N_("Kind"),
    "archives": N_("Archives"),
    "groups": N_("Field groups"),
    "purpose": N_("Purpose"),
    "reason": N_("Reason"),
    "hours": N_("Hours"),
    "material": N_("Material"),
    "copies": N_("Copies"),
    "format": N_("Format"),
    "recipient": N_("Recipient"),
    "credential_ref": N_("Introduction letter or work ID"),
    "scope": N_("Scope"),
    "items": N_("Items"),
    "note": N_("Note"),
    "expected_version": N_("Version"),
}


def service(page: Page) -> RequestService:
    """The requests routes' service over this app's services."""
    return request_service(page.services)


def highest(codes: Iterable[str | None]) -> str | None:
    """The highest marking among ``codes`` (None when there is none to show)."""
    known = [c for c in codes if c and rank(c, unknown=-1) >= 0]
    return max(known, key=lambda c: rank(c, unknown=-1)) if known else None


def banner_of(pairs: Iterable[tuple[AccessRequest, Mapping[str, Any]]]) -> str | None:
    """The highest marking of every archive on a page of requests: each archive's
    marking now (the facts) and the request's recorded level."""
    codes: list[str | None] = []
    for req, facts in pairs:
        codes.append(req.classification if req.archives else None)
        for archive in facts.get("archives", ()):
            marking = archive.get("classification")
            codes.append(marking.get("code") if marking else None)
    return highest(codes)


def stages(req: AccessRequest, facts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chain in order for a page: each stage done (and who signed it), next (and
    who may sign it now), or still to come; stages a re-derived chain dropped are left out."""
    signed: dict[str, Mapping[str, Any]] = {}
    for entry in facts.get("chain", ()):
        signed[str(entry.get("stage"))] = entry
    upcoming = facts.get("next")
    rows: list[dict[str, Any]] = []
    for index, stage in enumerate(req.stages):
        if stage.get("superseded"):
            continue
        name = str(stage.get("name", ""))
        row: dict[str, Any] = {"name": name, "label": str(stage.get("label", name))}
        if index < req.next_stage and name in signed:
            entry = signed[name]
            row |= {
                "status": "done",
                "signer": entry.get("signer"),
                "display_name": entry.get("display_name"),
                "decision": entry.get("decision"),
                "at": _at(entry.get("at")),
            }
        elif index == req.next_stage and req.state == "pending" and upcoming:
            row |= {
                "status": "next",
                "label": str(upcoming.get("label") or row["label"]),
                "signers": list(upcoming.get("signers", ())),
                "alternate": bool(upcoming.get("alternate")),
            }
        else:
            row["status"] = "denied" if name in signed else "waiting"
            if name in signed:
                row |= {"signer": signed[name].get("signer"), "at": _at(signed[name].get("at"))}
        rows.append(row)
    return rows


def _at(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def check(page: Page, model: type[M], values: dict[str, Any]) -> tuple[M | None, dict[str, str]]:
    """``values`` checked by the API's body model: the model, or each bad field's
    message (in words, never echoing what was typed)."""
    try:
        return model.model_validate(values), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            loc = error.get("loc") or ("",)
            name = str(loc[0])
            if name in errors:
                continue
            if error.get("type") in ("missing", "string_too_short", "too_short"):
                errors[name] = page._("This field is required.")
            elif error.get("type") == "too_long" or "too_long" in str(error.get("type")):
                errors[name] = page._("Too long or too many.")
            else:
                errors[name] = page._("This value is not valid.")
        return None, errors


def error_summary(page: Page, errors: Mapping[str, str]) -> str:
    """'Check these fields: Reason, Hours' in the page's language."""
    names = ", ".join(page._(FIELD_LABELS.get(n, n)) for n in errors)
    return page._("Check these fields: %(fields)s", fields=names)
