"""Factories for archives in the import format, with consent that covers what they hold."""

from __future__ import annotations

from typing import Any

from audit.events import Actor

SALES = Actor("zhang.wei", "salesperson")


def everyone(_session: Any, _meta: Any, _group: str) -> bool:
    """A search ``visible`` check that lets every candidate through (store-level tests)."""
    return True


ALL_GROUPS = [
    "identity",
    "contact",
    "whereabouts",
    "credentials",
    "family",
    "finance",
    "health",
    "lifestyle",
    "property",
    "career",
    "notes",
]
SENSITIVE = ["whereabouts", "credentials", "family", "finance", "health", "property"]


def consent(groups: list[str] | None = None, sensitive: list[str] | None = None) -> dict[str, Any]:
    return {
        "notice": "隐私告知书 v3",
        "at": "2026-01-02T09:00:00+08:00",
        "channel": "书面",
        "groups": ALL_GROUPS if groups is None else groups,
        "sensitive_groups": SENSITIVE if sensitive is None else sensitive,
    }


def archive(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "category": "general",
        "grade": "B",
        "classification": "internal",
        "owner": "zhang.wei",
        "department": "销售一部",
        "profile": {
            "name": "王小明",
            "mobile_phone": "13800138000",
            "health": "良好",
            "company": "星河地产，深圳市南山区",
        },
        "consent": consent(),
    }
    profile = overrides.pop("profile", None)
    data.update(overrides)
    if profile is not None:
        data["profile"] = profile
    return data
