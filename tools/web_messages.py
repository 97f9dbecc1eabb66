"""The pages' translatable strings, and which of them the Chinese catalog lacks.

``python tools/web_messages.py`` lists every msgid used in ``api/web`` (templates
and Python) that no ``api/web/locale/zh/LC_MESSAGES/*.po`` translates;
``--append FILE.po`` appends them to that file with empty translations, to fill in.
A test (``tests/web/test_catalog.py``) fails while any is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.extract import extract_from_dir

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.web.i18n import catalog  # noqa: E402

WEB = ROOT / "api" / "web"
METHODS = [
    ("templates/**.html", "jinja2.ext:babel_extract"),
    ("**.py", "python"),
]
OPTIONS = {
    "templates/**.html": {
        "extensions": "jinja2.ext.i18n",
        "trim_blocks": "true",
        "lstrip_blocks": "true",
    }
}
KEYWORDS = {"_": None, "gettext": None, "N_": None}


def used() -> dict[str, str]:
    """msgid → where it is first used."""
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(WEB), METHODS, options_map=OPTIONS, keywords=KEYWORDS, comment_tags=()
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def stage_labels() -> dict[str, str]:
    """The signers' words of chains.toml, shown on request pages through the catalog."""
    import tomllib

    found: dict[str, str] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("label", "alternate_label") and isinstance(value, str):
                    found.setdefault(value, "policies/chains.toml")
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(tomllib.loads((ROOT / "policies" / "chains.toml").read_text(encoding="utf-8")))
    return found


def missing() -> dict[str, str]:
    zh = catalog("zh")
    wanted = used() | stage_labels()
    return {m: where for m, where in wanted.items() if not (zh.get(m) and zh.get(m).string)}


def _po_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def main(argv: list[str]) -> int:
    lacking = missing()
    if len(argv) == 2 and argv[0] == "--append":
        with Path(argv[1]).open("a", encoding="utf-8") as fh:
            for msgid, where in lacking.items():
                fh.write(f'\n#: {where}\nmsgid {_po_quote(msgid)}\nmsgstr ""\n')
        print(f"appended {len(lacking)} entries to {argv[1]}")
        return 0
    for msgid, where in lacking.items():
        print(f"{where}: {msgid}")
    return 1 if lacking else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
