from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from vault.errors import SchemaError, ValidationFailed
from vault.schema import SHIPPED_SCHEMA_FILE, load_schema, parse_schema

SCHEMA_FILE = SHIPPED_SCHEMA_FILE


@pytest.fixture
def raw() -> dict[str, Any]:
    return tomllib.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def test_default_schema_covers_the_42_items() -> None:
    schema = load_schema(SCHEMA_FILE)
    # name + 42 template items (item 9 split into relations and income) + ID number + notes.
    assert len(schema.fields) >= 43
    assert set(schema.searchable) == {"name", "mobile_phone", "licence_plate", "id_number"}
    assert {
        "health",
        "finance",
        "family",
        "whereabouts",
        "property",
        "credentials",
    } <= schema.sensitive_groups
    assert "identity" not in schema.sensitive_groups
    for field in schema.fields.values():
        assert field.zh and field.en


def test_health_field_can_never_be_indexed(raw: dict[str, Any]) -> None:
    for f in raw["fields"]:
        if f["name"] == "health":
            f["searchable"] = True
    with pytest.raises(SchemaError, match="never indexed"):
        parse_schema(raw)


def test_low_entropy_field_cannot_be_indexed(raw: dict[str, Any]) -> None:
    for f in raw["fields"]:
        if f["name"] == "gender":
            f["searchable"] = True
    with pytest.raises(SchemaError, match="entropy"):
        parse_schema(raw)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("group", "nowhere", "not declared"),
        ("type", "blob", "type must be"),
        ("mask", "rot13", "mask must be"),
        ("sensitive", "gossip", "sensitive must be"),
    ],
)
def test_bad_field_definitions_are_refused(
    raw: dict[str, Any], key: str, value: str, message: str
) -> None:
    bad = copy.deepcopy(raw)
    bad["fields"][0][key] = value
    with pytest.raises(SchemaError, match=message):
        parse_schema(bad)


def test_companies_can_add_and_drop_fields(raw: dict[str, Any], tmp_path: Path) -> None:
    raw["fields"] = [f for f in raw["fields"] if f["name"] != "admired_person"]
    raw["fields"].append(
        {
            "name": "wechat_id",
            "group": "contact",
            "zh": "微信号",
            "en": "WeChat ID",
            "searchable": True,
        }
    )
    schema = parse_schema(raw)
    assert "wechat_id" in schema.searchable and "admired_person" not in schema.fields


def test_validate_profile_collects_every_problem() -> None:
    schema = load_schema(SCHEMA_FILE)
    with pytest.raises(ValidationFailed) as exc:
        schema.validate_profile(
            {"mobile_phone": "123", "nickname": "x", "name": 5, "notes": "x" * 9000}, limit=2000
        )
    text = " | ".join(exc.value.problems)
    assert "mobile_phone" in text and "nickname" in text and "'name': must be a string" in text
    assert "longer than 8000" in text
    assert len(exc.value.problems) == 4


def test_unreadable_schema_file(tmp_path: Path) -> None:
    bad = tmp_path / "s.toml"
    bad.write_text("version = [", encoding="utf-8")
    with pytest.raises(SchemaError, match="not valid TOML"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="does not exist"):
        load_schema(tmp_path / "missing.toml")
