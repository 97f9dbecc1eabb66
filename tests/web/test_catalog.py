"""Every string the pages show has a Chinese translation (the default language)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from api.web.i18n import beijing, catalog

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("web_messages", ROOT / "tools/web_messages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_page_string_is_translated_into_chinese() -> None:
    tool = _tool()
    assert len(tool.used()) > 50  # the extraction sees the templates and the Python code
    lacking = tool.missing()
    assert not lacking, "run `python tools/web_messages.py` and translate:\n" + "\n".join(
        f"{where}: {msgid}" for msgid, where in lacking.items()
    )


def test_placeholders_survive_translation() -> None:
    for message in catalog("zh"):
        if message.id and message.string:
            for name in ("%(name)s", "%(total)s", "%(count)s", "%(no)s"):
                assert (name in message.id) == (name in message.string), message.id


def test_times_are_beijing_time_with_the_zone_named() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)
    assert beijing(at, "zh") == "2026-11-28 00:30 (北京时间)"
    assert beijing(at, "en") == "2026-11-28 00:30 (Beijing time)"


def test_a_string_has_one_translation_across_the_catalogs() -> None:
    from babel.messages.pofile import read_po

    seen: dict[str, dict[str, list[str]]] = {}
    for po in sorted((ROOT / "api/web/locale/zh/LC_MESSAGES").glob("*.po")):
        with po.open("rb") as fh:
            for message in read_po(fh, locale="zh"):
                if message.id and message.string:
                    seen.setdefault(message.id, {}).setdefault(message.string, []).append(po.name)
    clashes = {msgid: found for msgid, found in seen.items() if len(found) > 1}
    assert not clashes, f"one msgid, two translations (give each sense its own msgid): {clashes}"
