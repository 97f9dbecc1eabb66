"""Languages of the pages: gettext catalogs (Babel) and one Jinja2 environment per language.

Chinese is the default; English is the language of the source strings, so its
"catalog" is the identity. The Chinese catalog is every ``.po`` file under
``locale/zh/LC_MESSAGES`` (one per area of the pages), merged and compiled in
memory at start-up: no build step, and no compiled file in the repository.
Dates are shown in Beijing time (UTC+8, no daylight saving) with the zone named.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.web.labels import MARKING_MARKS, TABLES

HERE = Path(__file__).parent
LOCALE_DIR = HERE / "locale"
TEMPLATES = HERE / "templates"
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
BEIJING = timezone(timedelta(hours=8), "UTC+8")
ZONE_LABEL = {"zh": "北京时间", "en": "Beijing time"}


def catalog(language: str) -> Catalog:
    """Every ``.po`` file of a language merged into one catalog.

    A msgid means one thing everywhere: ``tests/web/test_catalog.py`` refuses two
    files translating it differently (a word with two senses gets two msgids).
    """
    merged = Catalog(locale=language)
    for po in sorted((LOCALE_DIR / language / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as fh:
            for message in read_po(fh, locale=language):
                if message.id and message.string:
                    merged.add(message.id, message.string, context=message.context)
    return merged


def translations(language: str) -> NullTranslations:
    if language == "en":
        return NullTranslations()
    buffer = io.BytesIO()
    write_mo(buffer, catalog(language))
    buffer.seek(0)
    return Translations(buffer, domain="messages")


def beijing(
    value: datetime | str | None, language: str = DEFAULT_LANGUAGE, *, seconds: bool = False
) -> str:
    """A stored (UTC) instant as Beijing wall time, with the zone named.

    Accepts the ISO strings the services' JSON views hold as well as datetimes.
    """
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        at = value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    shown = at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))
    return f"{shown} ({ZONE_LABEL.get(language, ZONE_LABEL['en'])})"


def build_environment(
    language: str,
    globals_: dict[str, Any],
    catalog_: NullTranslations,
    group_labels: dict[str, dict[str, str]] | None = None,
) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(catalog_, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(globals_)
    env.globals["lang"] = language
    env.filters["bjt"] = lambda value, seconds=False: beijing(value, language, seconds=seconds)
    env.filters["label"] = lambda code, table: catalog_.gettext(
        TABLES[table].get(str(code), str(code))
    )
    env.globals["marking_mark"] = MARKING_MARKS
    # The signers' words of chains.toml are msgids too (tools/web_messages.py reads them).
    # Field groups by the profile schema's own words (its zh/en labels).
    labels = group_labels or {}
    env.filters["group_name"] = lambda code: labels.get(str(code), {}).get(language, str(code))
    env.filters["stage"] = lambda text: catalog_.gettext(str(text)) if text else ""
    return env


class Languages:
    """The environments, built once; a request picks one by its language cookie."""

    def __init__(
        self, globals_: dict[str, Any], group_labels: dict[str, dict[str, str]] | None = None
    ) -> None:
        self.catalogs = {lang: translations(lang) for lang in LANGUAGES}
        self.environments = {
            lang: build_environment(lang, globals_, self.catalogs[lang], group_labels)
            for lang in LANGUAGES
        }
        # For messages made in Python (flash messages, form errors).
        self.gettext: dict[str, Callable[[str], str]] = {
            lang: cat.gettext for lang, cat in self.catalogs.items()
        }

    @staticmethod
    def pick(cookie: str | None) -> str:
        return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE
