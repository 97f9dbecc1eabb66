"""A normal install (``pip install .``, not editable) holds everything the program needs.

The wheel is built once per test session from a copy of the source tree, then compared
with that tree file by file: every module and every data file the code loads at run time
(migrations and their template, routers, templates, static files, translations, Casbin
model and policy, TOML configuration) must be in it, so a new file that the packaging
configuration does not pick up fails here rather than on an operator's machine.

The smoke test installs that wheel into a fresh virtual environment and runs the
commands an operator runs, from a directory outside the repository: ``init``,
``user add``, ``customer import``, ``serve`` (one authenticated read of an archive over
HTTP, the sign-in page and its stylesheet) and ``audit verify``. The project is imported
from the wheel, never from the source tree (checked: the modules' files live in the new
environment); the dependencies are not downloaded again: a ``.pth`` file makes the
running environment's site-packages visible after the new environment's own (as
``--system-site-packages`` would for a system Python), so only what the wheel holds is
the project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.factories import archive
from tests.served import served_cli

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("foundation", "audit", "vault", "policies", "api", "cli")
PASSWORD = "a long enough password"


def _source_files() -> list[str]:
    """The packages' files as the repository has them (tracked or new, never ignored)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard",
             "--", *PACKAGES],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split()  # fmt: skip
        return sorted(f for f in listed if (ROOT / f).is_file())
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file
        return sorted(
            str(p.relative_to(ROOT))
            for pkg in PACKAGES
            for p in (ROOT / pkg).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )


@pytest.fixture(scope="session")
def sources() -> list[str]:
    files = _source_files()
    assert "vault/migrations/env.py" in files
    return files


@pytest.fixture(scope="session")
def wheel(sources: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the tree: nothing stale in a ``build/`` directory
    of the working tree can slip into it, and the tree is left as it was."""
    base = tmp_path_factory.mktemp("wheel")
    src, out = base / "src", base / "dist"
    for rel in [*sources, "pyproject.toml", "README.md"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("archive_vault-*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_packages(wheel: Path, sources: list[str]) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    shipped = {n for n in names if ".dist-info/" not in n}
    assert sorted(set(sources) - shipped) == [], "files the wheel is missing"
    assert sorted(shipped - set(sources)) == [], "files the wheel should not carry"
    for essential in (
        "vault/migrations/env.py",
        "vault/migrations/script.py.mako",
        "vault/migrations/versions/0001_initial_schema_store_audit_policies.py",
        "api/routers/customers.py",
        "api/web/templates/login.html",
        "api/web/static/vault.css",
        "api/web/locale/zh/LC_MESSAGES/base.po",
        "policies/model.conf",
        "policies/policy.csv",
        "policies/chains.toml",
        "policies/detection.toml",
        "vault/profile_schema.toml",
    ):
        assert essential in shipped
    assert "archive-vault = cli.main:main" in scripts


def _outside_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VAULT_") and k != "PYTHONPATH"}


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; its ``bin`` directory."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # Only now (pip must not see the running environment's editable install): the
    # dependencies, from the environment running the tests, after the venv's own.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    deps = [p for p in sys.path if p in ours or p.endswith(("site-packages", "dist-packages"))]
    Path(site, "_archive_vault_test_deps.pth").write_text("\n".join(deps) + "\n")
    where = subprocess.run(
        [str(python), "-c",
         "import json, api, cli, vault.migrate, api.web, api.routers\n"
         "print(json.dumps({'api': api.__file__, 'cli': cli.__file__, 'web': api.web.__file__,"
         " 'migrations': str(vault.migrate.MIGRATIONS)}))"],
        capture_output=True, text=True, cwd=venv, env=_outside_env(), timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    for name, path in json.loads(where.stdout).items():
        assert Path(path).is_relative_to(site), f"{name} imported from {path}, not the wheel"
    return venv / "bin"


def _run(bin_dir: Path, env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None):
    proc = subprocess.run(
        [str(bin_dir / "archive-vault"), *args],
        capture_output=True, text=True, env=env, cwd=cwd, input=stdin, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, f"{args[0]}: {proc.stderr}"
    return proc


def test_the_installed_wheel_inits_serves_and_verifies(
    installed: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "PYTHONPATH"}
    env["VAULT_LOGIN_DELAY_SECONDS"] = "0"
    work = tmp_path / "outside"  # the commands run here, far from the source tree
    work.mkdir()
    data = str(work / "var")
    _run(installed, env, work, "init", "--data-dir", data)
    _run(
        installed, env, work,
        "user", "add", "zhang.wei", "--role", "salesperson", "--department", "销售一部",
        "--password-stdin", "--data-dir", data, stdin=PASSWORD + "\n",
    )  # fmt: skip
    one = work / "one.jsonl"
    one.write_text(json.dumps(archive()) + "\n", encoding="utf-8")
    _run(installed, env, work, "customer", "import", str(one), "--data-dir", data)

    with served_cli(
        data, env=env, command=[str(installed / "archive-vault")], cwd=work, log=work / "serve.log"
    ) as served:
        base = served.base
        token = httpx.post(
            f"{base}/auth/token", data={"username": "zhang.wei", "password": PASSWORD}, timeout=30
        )
        assert token.status_code == 200, token.text
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        listed = httpx.get(f"{base}/customers?owner=zhang.wei", headers=auth, timeout=30)
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["items"]
        read = httpx.get(
            f"{base}/customers/{item['archive_no']}?groups=contact", headers=auth, timeout=30
        )
        assert read.status_code == 200, read.text
        assert read.json()["content"]["contact"]["mobile_phone"] == "13800138000"
        page = httpx.get(f"{base}/login", timeout=30)  # a template, in its Chinese catalog
        assert page.status_code == 200 and "登录" in page.text
        assert httpx.get(f"{base}/static/vault.css", timeout=30).status_code == 200
    verified = _run(installed, env, work, "audit", "verify", "--data-dir", data)
    assert "OK:" in verified.stdout
