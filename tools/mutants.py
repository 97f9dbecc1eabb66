"""Mutation testing of the security-critical modules, one module group at a time.

The groups (which files to mutate, which tests exercise them) are listed once,
under ``[tool.mutants]`` in ``pyproject.toml``; this script reads them, so when
code moves only that list changes. Each group runs ``mutmut`` in a scratch copy
of the tree under ``var/mutants/<group>/`` (mutmut reads its settings from the
``pyproject.toml`` of the directory it runs in, and one run has one test
selection), then prints the kill rate per group and lists the survivors.

    python tools/mutants.py                 # every group
    python tools/mutants.py sealing tokens  # some groups
    MUTANTS_JOBS=2 python tools/mutants.py  # worker processes (default 1)
    MUTANTS_POSTGRES=1 VAULT_TEST_DATABASE_URL=postgresql+psycopg://… python tools/mutants.py
                                            # PostgreSQL branches too

A survivor is either killed by a new test or explained in ``tests/MUTANTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "mutants"
# What counts as killed: a failing test (or pytest's internal error). A timeout is listed
# with the survivors instead: under load an equivalent mutant can time out too.
KILLED = {"killed", "caught by type check"}
SHOW_DIFFS = 60  # survivors whose diff is written out (see `mutmut show` for the rest)


@dataclass(frozen=True)
class Group:
    name: str
    paths: tuple[str, ...]
    tests: tuple[str, ...]
    # Optional: only these functions ("name") or methods ("Class.name") of the files are
    # mutated, for a rule that lives inside a larger module.
    functions: tuple[str, ...] = ()

    def mutant_patterns(self) -> list[str]:
        """mutmut's names for the chosen functions' mutants (``pkg.mod.x_func__mutmut_3``,
        ``pkg.mod.xǁClassǁmethod__mutmut_3``), as globs."""
        patterns = []
        for name in self.functions:
            cls, _, func = name.rpartition(".")
            patterns.append(f"*.xǁ{cls}ǁ{func}__mutmut_*" if cls else f"*.x_{func}__mutmut_*")
        return patterns


def load_groups() -> tuple[list[str], list[Group]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    # The top-level packages: the names the package finder includes without a wildcard.
    found = doc["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [name for name in found if "." not in name and "*" not in name]
    table = doc["tool"]["mutants"]
    groups = [
        Group(name, tuple(spec["paths"]), tuple(spec["tests"]), tuple(spec.get("functions", ())))
        for name, spec in table["groups"].items()
    ]
    return packages, groups


def expand(patterns: tuple[str, ...], what: str, group: str) -> list[str]:
    """Globs relative to the repository root; a pattern matching nothing is an error, so a
    module list gone stale after code moved fails loudly instead of testing less."""
    found: list[str] = []
    for pattern in patterns:
        hits = sorted(
            str(p.relative_to(ROOT)) for p in ROOT.glob(pattern) if "__pycache__" not in p.parts
        )
        if not hits:
            sys.exit(f"[tool.mutants.groups.{group}] {what}: {pattern!r} matches nothing")
        found.extend(h for h in hits if h not in found)
    return found


def prepare(group: Group, packages: list[str], sources: list[str], tests: list[str]) -> Path:
    """A fresh copy of the packages and tests, with mutmut's settings for this group."""
    work = WORK / group.name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "mutants", ".hypothesis")
    for package in packages:
        shutil.copytree(ROOT / package, work / package, ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    only = []
    for path in sources:
        only.append(f"{path}/*" if (ROOT / path).is_dir() else path)
    settings = {
        # Every package is copied (the tests import all of them); only these are mutated.
        "source_paths": packages,
        "only_mutate": only,
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        "use_git_change_detection": False,
    }
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    text += "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    (work / "pyproject.toml").write_text(text, "utf-8")
    return work


def mutmut(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if not os.environ.get("MUTANTS_POSTGRES"):
        # SQLite only unless asked: the PostgreSQL branches (advisory locks) need a server
        # and double the time; MUTANTS_POSTGRES=1 with VAULT_TEST_DATABASE_URL covers them.
        env.pop("VAULT_TEST_DATABASE_URL", None)
    return subprocess.run(  # noqa: S603 - our venv's mutmut, fixed arguments
        [str(exe), *args], cwd=work, env=env, text=True, capture_output=True, check=False
    )


def results(work: Path) -> dict[str, str]:
    out = mutmut(work, "results", "--all", "true")
    status: dict[str, str] = {}
    for line in out.stdout.splitlines():
        name, sep, state = line.strip().rpartition(": ")
        if sep:
            status[name] = state
    return status


def run_group(group: Group, packages: list[str], jobs: int) -> tuple[int, int, list[str]]:
    sources = expand(group.paths, "paths", group.name)
    tests = expand(group.tests, "tests", group.name)
    work = prepare(group, packages, sources, tests)
    print(f"== {group.name}: mutating {', '.join(sources)}", flush=True)
    print(f"   tests: {' '.join(tests)}", flush=True)
    patterns = group.mutant_patterns()
    if patterns:
        print(f"   functions: {', '.join(group.functions)}", flush=True)
    run = mutmut(work, "run", "--max-children", str(jobs), *patterns)
    (work / "run.log").write_text(run.stdout + run.stderr, "utf-8")
    status = results(work)
    if patterns:
        status = {k: v for k, v in status.items() if any(fnmatch(k, p) for p in patterns)}
    if run.returncode != 0 or not status:
        print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
        sys.exit(f"mutmut failed for {group.name} (log: {work / 'run.log'})")
    killed = sum(1 for s in status.values() if s in KILLED)
    survivors = sorted(f"{name}: {s}" for name, s in status.items() if s not in KILLED)
    with (work / "survivors.txt").open("w", encoding="utf-8") as out:
        for i, line in enumerate(survivors):
            out.write(line + "\n")
            if i < SHOW_DIFFS:  # one mutmut process per diff: the first ones tell enough
                out.write(mutmut(work, "show", line.split(": ")[0]).stdout + "\n")
    return killed, len(status), survivors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help="group names (default: all)")
    args = parser.parse_args()
    packages, groups = load_groups()
    names = {g.name for g in groups}
    unknown = set(args.groups) - names
    if unknown:
        sys.exit(f"unknown group(s) {sorted(unknown)}; known: {sorted(names)}")
    chosen = [g for g in groups if not args.groups or g.name in args.groups]
    jobs = int(os.environ.get("MUTANTS_JOBS", "1"))
    summary = []
    for group in chosen:
        killed, total, survivors = run_group(group, packages, jobs)
        rate = 100.0 * killed / total if total else 0.0
        summary.append((group.name, killed, total, rate))
        for line in survivors:
            print(f"   survivor {line}")
        print(f"   {group.name}: {killed}/{total} killed ({rate:.1f} %)", flush=True)
    print("\nkill rate per module group")
    for name, killed, total, rate in summary:
        print(f"  {name:<12} {killed:>4}/{total:<4} {rate:5.1f} %")
    print(f"survivors and their diffs: {WORK}/<group>/survivors.txt")


if __name__ == "__main__":
    main()
