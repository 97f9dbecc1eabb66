"""The command line as a user meets it: clear one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit.models import entry_table
from tests.factories import archive
from vault.schema import SHIPPED_SCHEMA_FILE


def run(
    *args: str, data: Path, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)]
        if args and args[0] not in ("schema",)
        else [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    run("init", "--demo", data=path)  # a demo vault: `seed` writes only to one
    return path


def test_init_creates_private_key_file_and_refuses_twice(data: Path) -> None:
    key = data / "keys" / "keyring.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "vault.db").stat().st_mode) & 0o077 == 0
    again = run("init", data=data, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_schema_json_lists_fields() -> None:
    proc = run("schema", "--json", data=Path("."))
    payload = json.loads(proc.stdout)
    fields = {f["name"]: f for f in payload["fields"]}
    assert (
        fields["mobile_phone"]["searchable"] is True
        and fields["mobile_phone"]["group"] == "contact"
    )
    assert fields["health"]["zh"].startswith("健康") and fields["health"]["searchable"] is False
    assert {"name", "group", "zh", "en", "type", "searchable"} <= set(fields["name"])


def test_import_bad_file_lists_rows_and_imports_nothing(data: Path, tmp_path: Path) -> None:
    run(
        "user",
        "add",
        "zhang.wei",
        "--role",
        "salesperson",
        "--department",
        "销售一部",
        "--password-stdin",
        data=data,
        stdin="a long enough password\n",
    )
    src = tmp_path / "bad.jsonl"
    src.write_text(
        "\n".join([json.dumps(archive()), "{oops", json.dumps(archive(grade="Q"))]) + "\n",
        encoding="utf-8",
    )
    proc = run("customer", "import", str(src), data=data, check=False)
    assert proc.returncode == 1
    assert "2 of 3 rows are invalid; nothing was imported" in proc.stderr.replace("\n", " ")
    assert "not valid JSON" in proc.stderr and "grade" in proc.stderr
    orphan = tmp_path / "orphan.jsonl"
    orphan.write_text(json.dumps(archive(owner="wang.fang")) + "\n", encoding="utf-8")
    warned = run("customer", "import", str(orphan), data=data)
    assert "Imported 1 archives" in warned.stdout
    assert "not yet users of this vault: wang.fang" in " ".join(warned.stderr.split())
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(archive()) + "\n", encoding="utf-8")
    ok = run("customer", "import", str(good), "--owner", "li.na", data=data)
    assert "Imported 1 archives" in ok.stdout


def _add(data: Path, name: str, role: str, department: str) -> None:
    run(
        "user",
        "add",
        name,
        "--role",
        role,
        "--department",
        department,
        "--password-stdin",
        data=data,
        stdin="a long enough password\n",
    )


def test_import_checks_the_people_each_row_names(data: Path, tmp_path: Path) -> None:
    """Each imported row passes the checks filing an archive makes: contacts are
    salespeople of the archive's department, a secret or top-secret archive has a
    custodian who is an information officer or the supervisor (not a salesperson)."""
    _add(data, "zhang.wei", "salesperson", "销售一部")
    _add(data, "li.na", "salesperson", "销售一部")
    _add(data, "wang.fang", "salesperson", "销售二部")
    _add(data, "chen.jing", "information_officer", "客户服务部")
    rows = [
        archive(contacts=["li.na"]),
        archive(contacts=["wang.fang"]),  # line 2: another department
        archive(classification="secret"),  # line 3: no custodian
        archive(classification="secret", custodian="li.na"),  # line 4: a salesperson
        archive(contacts=["nobody.x"]),  # line 5: not a user
        archive(owner="wang.fang"),  # line 6: the owner is in 销售二部
        archive(classification="top_secret", custodian="chen.jing"),
    ]
    src = tmp_path / "people.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    proc = run("customer", "import", str(src), data=data, check=False)
    assert proc.returncode == 1, proc.stdout
    out = " ".join(proc.stderr.split())
    assert "5 of 7 rows are invalid; nothing was imported" in out
    assert "contact wang.fang is in department 销售二部" in out
    assert "a secret archive needs a custodian" in out
    assert "custodian li.na is not an information officer" in out
    assert "nobody.x is not a user" in out
    assert "owner wang.fang is in department 销售二部" in out
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in (rows[0], rows[-1])) + "\n", encoding="utf-8")
    assert "Imported 2 archives" in run("customer", "import", str(good), data=data).stdout


def test_seed_rotate_status(data: Path) -> None:
    assert "Seeded 30" in run("seed", "--customers", "30", data=data).stdout
    rotated = run("keys", "rotate", "--level", "internal", data=data).stdout
    assert "internal: now v2" in rotated and "retired v1" in rotated
    status = run("keys", "status", data=data).stdout
    assert "retired" in status and "active" in status


def test_status_flags_archives_the_key_file_cannot_open(data: Path) -> None:
    """A database from before a rotation served with the key file of after it: every read
    would fail, so `keys status` says so and exits 1 instead of a table that looks fine."""
    run("seed", "--customers", "5", data=data)
    run("keys", "rotate", "--level", "internal", data=data)
    engine = sa.create_engine(f"sqlite:///{data / 'vault.db'}")
    with engine.begin() as conn:  # as the pre-rotation backup had them
        n = conn.execute(
            sa.text("UPDATE archive SET kek_version = 1 WHERE classification = 'internal'")
        ).rowcount
        conn.execute(
            sa.text("UPDATE archive SET kek_version = 7 WHERE archive_no = :no"),
            {"no": conn.execute(sa.text("SELECT archive_no FROM archive LIMIT 1")).scalar_one()},
        )
    engine.dispose()
    proc = run("keys", "status", data=data, check=False)
    assert proc.returncode == 1, proc.stdout
    line = " ".join(proc.stderr.split())
    assert f"{n} archive(s) are wrapped by a key version the key file no longer holds" in line
    assert "does not match this database" in line and "Traceback" not in proc.stderr
    assert "not in the key file" in proc.stdout and "v7" in proc.stdout


def test_missing_wrong_and_open_key_files_are_refused(data: Path, tmp_path: Path) -> None:
    key = data / "keys" / "keyring.json"
    key.chmod(0o644)
    proc = run("seed", "--customers", "1", data=data, check=False)
    assert (
        proc.returncode == 1 and "readable by others" in proc.stderr and "chmod 600" in proc.stderr
    )
    key.chmod(0o600)
    other = tmp_path / "other"
    run("init", data=other)
    saved = key.read_bytes()
    key.write_bytes((other / "keys" / "keyring.json").read_bytes())
    proc = run("seed", "--customers", "1", data=data, check=False)
    assert proc.returncode == 1 and "belongs to another vault" in proc.stderr
    key.unlink()
    proc = run("seed", "--customers", "1", data=data, check=False)
    assert proc.returncode == 1 and "missing" in proc.stderr
    key.write_bytes(saved)
    key.chmod(0o600)
    assert run("seed", "--customers", "1", data=data).returncode == 0


def test_commands_on_an_uninitialised_vault(tmp_path: Path) -> None:
    proc = run("seed", "--customers", "1", data=tmp_path / "nothing", check=False)
    assert proc.returncode == 1 and "archive-vault init" in proc.stderr


def test_demo_is_idempotent(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    first = run("demo", "--customers", "40", "--no-serve", data=data)
    assert "Initialised demo vault" in first.stdout and "Seeded 40" in first.stdout
    assert "Demo logins" in first.stdout and "qian.audit" in first.stdout
    second = run("demo", "--customers", "40", "--no-serve", data=data)
    assert "not seeding again" in second.stdout


def test_a_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    proc = run("init", data=afile, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error:")


def test_seed_follows_a_company_schema(tmp_path: Path) -> None:
    raw = (SHIPPED_SCHEMA_FILE).read_text(encoding="utf-8")
    # A company that drops the lifestyle group and adds a sensitive field to career.
    parsed = tomllib.loads(raw)
    assert any(f["group"] == "lifestyle" for f in parsed["fields"])
    lines = []
    for block in raw.split("[[fields]]"):
        if 'group = "lifestyle"' in block:
            continue
        lines.append(block)
    custom = "[[fields]]".join(lines).replace(
        '[groups.lifestyle]\nzh = "生活习惯"\nen = "Lifestyle"\n', ""
    )
    custom += '\n[[fields]]\nname = "salary"\ngroup = "career"\nzh = "薪资"\nen = "Salary"\nsensitive = "financial"\n'
    schema_file = tmp_path / "company.toml"
    schema_file.write_text(custom, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    env["VAULT_SCHEMA_FILE"] = str(schema_file)
    data = tmp_path / "var"
    for args in (["init", "--demo"], ["seed", "--customers", "20"]):
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
    assert "Seeded 20" in proc.stdout


def test_user_add_refuses_control_and_bidi_characters_naming_the_field(data: Path) -> None:
    for option, value in (("--department", "销售\u202e一部"), ("--credential", "介绍信\x1b[2J")):
        proc = run(
            "user",
            "add",
            "ma.chao",
            "--role",
            "external" if option == "--credential" else "salesperson",
            option,
            value,
            "--password-stdin",
            data=data,
            stdin="a long enough password\n",
            check=False,
        )
        field = option.removeprefix("--")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith(f"error: {field} must not contain control"), proc.stderr


def test_the_operator_resets_a_password_only_through_a_one_time_reset(data: Path) -> None:
    def add(name: str, role: str) -> subprocess.CompletedProcess:
        return run(
            "user",
            "add",
            name,
            "--role",
            role,
            "--department",
            "销售一部",
            "--password-stdin",
            data=data,
            stdin="a long enough password\n",
            check=False,
        )

    assert add("li.na", "salesperson").returncode == 0
    lonely = run("user", "reset-password", "li.na", data=data, check=False)
    assert lonely.returncode == 1 and "second code" in lonely.stderr
    assert add("head.one", "department_head").returncode == 0
    # no way to overwrite an existing user's password
    again = add("li.na", "salesperson")
    assert again.returncode == 1 and "already exists" in again.stderr
    reset = run("user", "reset-password", "li.na", data=data)
    assert "head.one received the second code" in " ".join(reset.stdout.split())


def _as_before_manifests(data: Path) -> None:
    """The key file of a vault created before sealed manifests: no ``manifests`` record."""
    key = data / "keys" / "keyring.json"
    keyring = json.loads(key.read_text())
    keyring.pop("manifests")
    key.write_text(json.dumps(keyring))


def test_upgrade_seals_the_manifests_of_archives_from_before_them(data: Path) -> None:
    """A vault upgraded from before sealed manifests: `upgrade` seals them with the key file."""
    run("seed", "--customers", "3", data=data)
    _as_before_manifests(data)
    engine = sa.create_engine(f"sqlite:///{data / 'vault.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE archive SET manifest = NULL"))
    (data / "keys" / "keyring.json").rename(data / "keyring.moved")
    proc = run("upgrade", data=data)  # migrations still apply; the warning says what to run
    assert "seal-manifests" in proc.stderr
    failed = run("seal-manifests", data=data, check=False)
    assert failed.returncode == 1 and "key file" in failed.stderr
    (data / "keyring.moved").rename(data / "keys" / "keyring.json")
    proc = run("upgrade", data=data)
    assert "Sealed manifests: 3 archive(s)" in proc.stdout
    with engine.connect() as conn:
        missing = conn.execute(sa.text("SELECT count(*) FROM archive WHERE manifest IS NULL"))
        assert missing.scalar_one() == 0
    assert json.loads((data / "keys" / "keyring.json").read_text())["manifests"]["all_sealed"]
    assert "Sealed manifests: 0" in run("seal-manifests", data=data).stdout
    engine.dispose()


def test_upgrade_fills_the_masked_names_of_archives_from_before_them(data: Path) -> None:
    """A vault from before masked names (column empty after migration 0014): `upgrade`
    fills the customer list's masked names with the key file, once."""
    run("seed", "--customers", "3", data=data)
    engine = sa.create_engine(f"sqlite:///{data / 'vault.db'}")
    with engine.begin() as conn:
        seeded = conn.execute(sa.text("SELECT count(masked_name_ct) FROM archive"))
        assert seeded.scalar_one() == 3  # seeding files them like any filing
        conn.execute(sa.text("UPDATE archive SET masked_name_ct = NULL"))
    proc = run("upgrade", data=data)
    assert "Masked names for the customer list: 3 archive(s)" in proc.stdout
    with engine.connect() as conn:
        sealed = conn.execute(sa.text("SELECT masked_name_ct FROM archive")).scalars().all()
        audited = conn.execute(
            sa.select(sa.func.count()).where(entry_table.c.action == "vault:mask-names")
        ).scalar_one()
    assert len(sealed) == 3 and all(ct is not None and ct[0] == 0xA5 for ct in sealed)
    assert audited == 1
    again = run("upgrade", data=data)
    assert "Masked names for the customer list: 0 archive(s)" in again.stdout
    engine.dispose()


def test_a_manifest_removed_in_the_database_is_reported_never_sealed(data: Path) -> None:
    """Every archive carries a manifest (the key file says so from `init`): one set to NULL
    is tampering, and neither `seal-manifests` nor `upgrade` seals it."""
    run("seed", "--customers", "3", data=data)
    engine = sa.create_engine(f"sqlite:///{data / 'vault.db'}")
    with engine.begin() as conn:
        no = conn.execute(sa.text("SELECT archive_no FROM archive ORDER BY id")).scalars().first()
        conn.execute(
            sa.text("UPDATE archive SET manifest = NULL WHERE archive_no = :no"), {"no": no}
        )
    for command in ("seal-manifests", "upgrade"):
        proc = run(command, data=data, check=False)
        assert proc.returncode == 1, proc.stdout
        line = " ".join(proc.stderr.split())
        assert line.startswith("error: 1 archive(s) have no sealed manifest"), line
        assert f"tampered with in the database ({no})" in line and "nothing was sealed" in line
        assert "Sealed manifests" not in proc.stdout
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT manifest FROM archive WHERE archive_no = :no"), {"no": no}
            ).scalar_one()
            is None
        )
        refusals = (
            conn.execute(
                sa.select(entry_table.c.archives).where(
                    entry_table.c.action == "vault:seal-manifests",
                    entry_table.c.outcome == "error",
                )
            )
            .scalars()
            .all()
        )
    assert len(refusals) == 2 and all(no in archives for archives in refusals)
    engine.dispose()


def test_cli_gives_content_roles_directly_only_at_first_bootstrap(data: Path) -> None:
    def add(name: str, *roles: str, check: bool = True) -> subprocess.CompletedProcess:
        args = ["user", "add", name, "--department", "销售一部", "--password-stdin"]
        for role in roles:
            args += ["--role", role]
        return run(*args, data=data, stdin="a long enough password\n", check=check)

    first = add("zhao.lei", "info_supervisor")
    assert "first bootstrap" in first.stdout and "zhao.lei: info_supervisor" in first.stdout
    # From the first supervisor on, a content role is a request the supervisor signs, and
    # the account is activated by a one-time reset: the administrator sets no password.
    chosen = add("ma.chao", "salesperson", check=False)
    assert chosen.returncode == 2 and "--password-stdin" in chosen.stderr
    assert "Added" not in chosen.stdout
    second = run("user", "add", "ma.chao", "--role", "salesperson", "--department", "销售一部",
                 data=data)  # fmt: skip
    assert "ma.chao: none yet" in second.stdout and "Role request R-" in second.stdout
    assert "first bootstrap" not in second.stdout
    assert "Activation " in second.stdout and "zhao.lei received the second code" in second.stdout
    engine = sa.create_engine(f"sqlite:///{data / 'vault.db'}")
    with engine.connect() as conn:
        hashed = conn.execute(
            sa.text("SELECT password_hash FROM app_user WHERE username = 'ma.chao'")
        ).scalar_one()
    engine.dispose()
    assert hashed is None  # nobody but the user will know it
    # compliance reads every request and the whole log: a request too
    promote = run("user", "set-role", "ma.chao", "--role", "compliance", data=data)
    assert "ma.chao: none yet" in promote.stdout and "Role request R-" in promote.stdout
    # The only supervisor cannot be the one who signs their own promotion.
    own = run(
        "user",
        "set-role",
        "zhao.lei",
        "--role",
        "info_supervisor",
        "--role",
        "salesperson",
        data=data,
        check=False,
    )
    assert own.returncode == 1 and "no one could sign" in own.stderr
    # An account that is or was an administrator never gets one, even at bootstrap.
    both = add("mole", "admin", "salesperson", check=False)
    assert both.returncode == 1 and "admin role" in both.stderr and "Traceback" not in both.stderr
    add("ops", "admin")
    for role in ("compliance", "salesperson"):
        again = run("user", "set-role", "ops", "--role", role, data=data, check=False)
        assert again.returncode == 1 and "has held the admin role" in again.stderr
