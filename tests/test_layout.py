"""The layout keeps its promises: small modules, no reaching into another module's
private names, and a command line where every command takes ``--data-dir``.

The import direction and the absence of cycles are import-linter contracts
(``pyproject.toml``), run by ``make test`` beside this file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer.main

from cli.main import app

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("foundation", "audit", "vault", "policies", "api", "cli")
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(
        p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: it holds more than one concern"


def test_no_module_imports_another_modules_private_names() -> None:
    offences = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        here = _module_name(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == here:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offences.append(f"{here}: from {node.module} import {alias.name}")
    assert offences == []


def _commands(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    subs = getattr(command, "commands", None)
    if subs:
        return [c for name, sub in subs.items() for c in _commands(sub, (*path, name))]
    return [(" ".join(path), command)]


@pytest.mark.parametrize(
    ("name", "command"), _commands(typer.main.get_command(app)), ids=lambda v: str(v)
)
def test_every_command_takes_data_dir(name: str, command: object) -> None:
    options = [opt for param in getattr(command, "params", []) for opt in param.opts]
    assert "--data-dir" in options, f"archive-vault {name} does not take --data-dir"
