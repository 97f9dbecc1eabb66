"""The PKCS#11 key provider against a real SoftHSM2 token made for this test session.

KEKs wrap and unwrap DEKs inside the token, audit MACs and checkpoint signatures are
computed there, and none of that key material can be read out. Skipped only when
SoftHSM2 is not installed and VAULT_REQUIRE_SOFTHSM is not 1 (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as px
from sqlmodel import Session, select

from audit.checkpoint import CheckpointError, load_public_key_pem, open_checkpoint
from audit.events import SYSTEM
from audit.log import AuditLog
from foundation.settings import Settings
from tests.audit.test_mac import forge_next_entry
from tests.factories import SALES, archive
from vault import crypto, migrate
from vault.crypto import InvalidCiphertext
from vault.errors import DecryptionFailed, KeyFileError
from vault.hsm import HsmKeys, kek_name, label
from vault.keys import LEVELS, Keyring
from vault.models import Archive, VaultMeta
from vault.rotation import rotate
from vault.store import ArchiveStore
from vault.token_session import HsmError
from vault.vault import init_vault, open_vault

TOKEN = "av-test"
PIN = "4711-user"
SO_PIN = "0815-so"
LIBRARIES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh token in a temporary token directory; the environment that reaches it."""
    util = shutil.which("softhsm2-util")
    library = next((p for p in LIBRARIES if p.is_file()), None)
    if util is None or library is None:
        if os.environ.get("VAULT_REQUIRE_SOFTHSM") == "1":
            pytest.fail("VAULT_REQUIRE_SOFTHSM=1 but SoftHSM2 (softhsm2-util) is not installed")
        pytest.skip("SoftHSM2 is not installed (softhsm2-util); VAULT_REQUIRE_SOFTHSM=1 fails")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin_file = root / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read when this process loads the library
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN, "--so-pin", SO_PIN, "--pin", PIN],
        check=True,
        capture_output=True,
    )
    yield {
        "SOFTHSM2_CONF": str(conf),
        "VAULT_KEY_PROVIDER": "pkcs11",
        "VAULT_PKCS11_LIBRARY": str(library),
        "VAULT_PKCS11_TOKEN_LABEL": TOKEN,
        "VAULT_PKCS11_PIN_FILE": str(pin_file),
    }
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


def _settings(softhsm: dict[str, str], data_dir: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "expected_archives": 1000,
        "key_provider": "pkcs11",
        "pkcs11_library": Path(softhsm["VAULT_PKCS11_LIBRARY"]),
        "pkcs11_token_label": TOKEN,
        "pkcs11_pin_file": Path(softhsm["VAULT_PKCS11_PIN_FILE"]),
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def hsm_store(softhsm: dict[str, str], tmp_path: Path, engine: sa.Engine) -> ArchiveStore:
    vault = init_vault(_settings(softhsm, tmp_path / "var"), engine=engine)
    return ArchiveStore(vault=vault, audit=vault.audit_log())


def _keys(store: ArchiveStore) -> HsmKeys:
    assert isinstance(store.keys, HsmKeys)
    return store.keys


def _objects(keys: HsmKeys) -> list[object]:
    prefix = label(keys.vault_id, "")
    with keys.token.lock:
        return [
            o
            for o in keys.token.session.get_objects({})
            if str(o[Attribute.LABEL]).startswith(prefix)
        ]


def _all_objects(keys: HsmKeys) -> int:
    with keys.token.lock:
        return len(list(keys.token.session.get_objects({})))


def _read(store: ArchiveStore, no: str) -> str:
    return store.reader.read(no, ["identity"], actor=SALES).content["identity"]["name"]


def test_archives_round_trip_through_wrapping_in_the_token(hsm_store: ArchiveStore) -> None:
    no = hsm_store.filing.create(archive(profile={"name": "客户甲"}), actor=SALES).archive_no
    assert _read(hsm_store, no) == "客户甲"
    assert not hsm_store.settings.resolved_key_file.exists()  # no key file at all
    with Session(hsm_store.engine) as s:
        row = s.exec(select(Archive).where(Archive.archive_no == no)).one()
    wrapped = bytes(row.wrapped_dek or b"")
    assert wrapped[2] == crypto.ALG_AES_256_KWP  # the header names key wrap in the token
    # A fresh process opening the vault (a new provider object) reads it too.
    again = ArchiveStore(vault=open_vault(hsm_store.settings, engine=hsm_store.engine))
    assert _read(again, no) == "客户甲"
    # Derived keys (blind indexes, secrets) are the same in every process, one per name.
    first, second = _keys(hsm_store), _keys(again)
    assert second.index_key("name") == first.index_key("name") != first.index_key("mobile")
    assert second.secret("token_signing") == first.secret("token_signing")
    assert len({first.secret("token_signing"), first.secret("web_csrf")}) == 2


def test_a_wrapped_dek_opens_only_for_its_archive_level_and_version(
    hsm_store: ArchiveStore,
) -> None:
    env = hsm_store.envelope
    dek = crypto.new_key()
    wrapped = env.wrap(dek, "KH-1", "internal", 1)
    assert env.unwrap("KH-1", "internal", 1, wrapped) == dek
    with pytest.raises(DecryptionFailed, match="KH-2: its data key does not open"):
        env.unwrap("KH-2", "internal", 1, wrapped)  # moved to another archive
    keys = _keys(hsm_store)
    with pytest.raises(InvalidCiphertext):  # the binding names the level too
        keys.unwrap_dek("internal", 1, wrapped, env.dek_aad("KH-1", "secret"))
    tampered = bytearray(wrapped)
    tampered[-3] ^= 1
    with pytest.raises(DecryptionFailed):
        env.unwrap("KH-1", "internal", 1, bytes(tampered))
    relabelled = crypto.kwp_blob(2, wrapped[crypto.HEADER_LEN :])
    assert keys.add_version("internal") == 2
    with pytest.raises(InvalidCiphertext):  # another KEK version
        keys.unwrap_dek("internal", 2, relabelled, env.dek_aad("KH-1", "internal"))
    # Neither format is ever taken for the other.
    with pytest.raises(InvalidCiphertext):
        Keyring.generate().unwrap_dek("internal", 1, wrapped, env.dek_aad("KH-1", "internal"))
    gcm = Keyring.generate().wrap_dek("internal", 1, dek, env.dek_aad("KH-1", "internal"))
    with pytest.raises(InvalidCiphertext):
        keys.unwrap_dek("internal", 1, gcm, env.dek_aad("KH-1", "internal"))


def test_no_key_material_can_be_read_out_of_the_token(hsm_store: ArchiveStore) -> None:
    keys = _keys(hsm_store)
    secret_objects = [keys._need(kek_name(level, 1)) for level in LEVELS]
    secret_objects += [keys._need("audit-mac"), keys._need("derive")]
    secret_objects.append(keys._need("audit-sign", ObjectClass.PRIVATE_KEY))
    with keys.token.lock:
        for obj in secret_objects:
            assert obj[Attribute.EXTRACTABLE] is False
            assert obj[Attribute.SENSITIVE] is True
            assert obj[Attribute.TOKEN] is True
            with pytest.raises(px.AttributeSensitive):
                obj[Attribute.VALUE]
        for level in LEVELS:  # a KEK only wraps and unwraps
            kek = keys._need(kek_name(level, 1))
            assert kek[Attribute.ENCRYPT] is False and kek[Attribute.DECRYPT] is False


def test_audit_entries_are_maced_and_checkpoints_signed_in_the_token(
    hsm_store: ArchiveStore,
) -> None:
    hsm_store.filing.create(archive(), actor=SALES)
    log: AuditLog = hsm_store.audit
    log.checkpoint()
    cp = log.latest_checkpoint()
    assert cp is not None and cp.size >= 1
    # Plain Ed25519: it verifies with `cryptography` and the exported PEM key alone.
    pinned = load_public_key_pem(log.public_key_pem())
    assert open_checkpoint(cp.note, pinned, log.origin).root == cp.root
    with pytest.raises(CheckpointError):
        open_checkpoint(cp.note, Ed25519PrivateKey.generate().public_key(), log.origin)
    report = log.verify()
    assert report.ok, report.summary()
    forged = forge_next_entry(log.engine)  # written without the token's MAC key
    report = log.verify()
    assert [(p.kind, p.seq) for p in report.all_problems()] == [("forged", forged)]


def test_rotation_makes_a_new_kek_object_and_destroys_the_old(hsm_store: ArchiveStore) -> None:
    numbers = [
        hsm_store.filing.create(archive(profile={"name": f"客户{i}"}), actor=SALES).archive_no
        for i in range(3)
    ]
    keys = _keys(hsm_store)
    (report,) = rotate(hsm_store, actor=SYSTEM, levels=["internal"])
    assert report.target_version == 2 and report.rewrapped == 3 and report.retired == [1]
    assert [_read(hsm_store, no) for no in numbers] == ["客户0", "客户1", "客户2"]
    assert keys.versions("internal") == {
        2: {"created_at": None, "retired_at": None, "active": True}
    }
    assert keys._find(kek_name("internal", 1), ObjectClass.SECRET_KEY) is None
    with pytest.raises(HsmError, match=r"kek-internal-v1 is missing from PKCS#11 token"):
        keys.check_kek("internal", 1)


def test_a_forked_child_logs_in_afresh_and_never_uses_its_parents_session(
    hsm_store: ArchiveStore,
) -> None:
    no = hsm_store.filing.create(archive(profile={"name": "客户乙"}), actor=SALES).archive_no
    keys = _keys(hsm_store)
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only when both rules hold
        code = 1
        try:
            try:
                keys.check_kek("secret", 1)
                keys.forget_keks()
                keys.check_kek("secret", 1)  # the parent's session: refused
            except HsmError as exc:
                if "opened by another process" in str(exc):
                    hsm_store.engine.dispose(close=False)  # no pooled parent connection
                    fresh = ArchiveStore(
                        vault=open_vault(hsm_store.settings, engine=hsm_store.engine)
                    )
                    code = 0 if _read(fresh, no) == "客户乙" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _read(hsm_store, no) == "客户乙"  # the parent's session still works


def test_a_failed_init_removes_the_keys_it_made_in_the_token(
    softhsm: dict[str, str],
    tmp_path: Path,
    engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(softhsm, tmp_path / "var")
    probe = init_vault(_settings(softhsm, tmp_path / "probe"), engine=_sqlite(tmp_path))
    assert isinstance(probe.keys, HsmKeys) and len(_objects(probe.keys)) == 7
    before = _all_objects(probe.keys)

    def fail(_engine: sa.Engine, revision: str = "head") -> None:
        raise RuntimeError("migration broke")

    monkeypatch.setattr(migrate, "upgrade", fail)
    with pytest.raises(RuntimeError, match="migration broke"):
        init_vault(settings, engine=engine)
    assert _all_objects(probe.keys) == before


def _sqlite(tmp_path: Path) -> sa.Engine:
    from foundation.db import make_engine

    return make_engine(f"sqlite:///{tmp_path / 'probe.db'}")


def test_a_wrong_pin_and_a_missing_token_or_library_are_one_clear_line(
    softhsm: dict[str, str], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("not-the-pin")
    wrong.chmod(0o600)
    cases = [
        (dict(pkcs11_pin_file=wrong), f"wrong PIN for PKCS#11 token '{TOKEN}'"),
        (dict(pkcs11_token_label="nope"), "no PKCS#11 token labelled 'nope'"),
        (dict(pkcs11_library=tmp_path / "none.so"), "PKCS#11 library"),
    ]
    for changes, says in cases:
        with pytest.raises(KeyFileError) as caught:
            init_vault(_settings(softhsm, tmp_path / "v", **changes))
        assert says in str(caught.value) and "\n" not in str(caught.value)
        assert "not-the-pin" not in str(caught.value) and PIN not in str(caught.value)
        assert not (tmp_path / "v" / "vault.db").exists()  # refused before anything was made


# -- the command line, in fresh processes ---------------------------------------------


def _cli(env: dict[str, str], data: Path, *args: str, check: bool = True):
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "400"},  # one line stays one line, however long
        timeout=180,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_the_cli_on_the_token_verifies_independently_and_refuses_a_wrong_pin(
    softhsm: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, **softhsm}
    data = tmp_path / "var"
    assert "PKCS#11 token" in _cli(env, data, "init", "--demo").stdout
    _cli(env, data, "seed", "--customers", "4")
    assert "internal: now v2" in _cli(env, data, "keys", "rotate", "--level", "internal").stdout
    _cli(env, data, "audit", "checkpoint")
    _cli(env, data, "audit", "verify")
    pem = tmp_path / "log.pem"
    pem.write_text(_cli(env, data, "audit", "pubkey").stdout)
    bundle = tmp_path / "bundle.json"
    _cli(env, data, "audit", "export", "--out", str(bundle))
    offline = subprocess.run(  # the auditor's verifier: no token, no vault, the PEM key only
        [sys.executable, "-m", "audit.verify", str(bundle), "--pubkey", str(pem)],
        capture_output=True,
        text=True,
        env={k: v for k, v in cli_env.items() if not k.startswith(("VAULT_", "SOFTHSM"))},
        timeout=120,
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr

    wrong = tmp_path / "wrong-pin"
    wrong.write_text("1234-wrong\n")
    wrong.chmod(0o600)
    refused = _cli(
        {**env, "VAULT_PKCS11_PIN_FILE": str(wrong)}, data, "keys", "status", check=False
    )
    assert refused.returncode != 0
    assert f"wrong PIN for PKCS#11 token '{TOKEN}'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "1234-wrong" not in refused.stderr


def test_a_kek_imported_under_the_next_label_is_refused(hsm_store: ArchiveStore) -> None:
    """Someone with the PIN imports an AES key they know as the next KEK version: new
    archives must not be wrapped under it (they would be readable outside the token)."""
    from pkcs11 import KeyType

    keys = _keys(hsm_store)
    with keys.token.use("planting a known key") as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: bytes(32),
                Attribute.LABEL: label(keys.vault_id, kek_name("internal", 2)),
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.WRAP: True,
                Attribute.UNWRAP: True,
            }
        )
    keys.forget_keks()
    assert keys.active_version("internal") == 2
    with pytest.raises(HsmError, match="not generated there"):
        keys.wrap_dek("internal", 2, bytes(32), b"aad")
    # The database names the active version, so the planted label alone is not used...
    made = hsm_store.filing.create(archive(profile={"name": "客户丙"}), actor=SALES)
    with Session(hsm_store.engine) as session:
        row = session.exec(select(Archive).where(Archive.archive_no == made.archive_no)).one()
        assert row.kek_version == 1
        # ...and with the database pointed at it as well, it is refused, not used.
        session.add(VaultMeta(key="kek_active:internal", value="2"))
        session.commit()
    with pytest.raises(HsmError, match="not generated there"):
        hsm_store.filing.create(archive(profile={"name": "客户丁"}), actor=SALES)
