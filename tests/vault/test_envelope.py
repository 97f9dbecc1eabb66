"""The envelope on its own: what each kind of ciphertext is bound to, the DEK's wrapping
under its level's KEK, the KEK cache, the active KEK version read from the database, and
what a refusal says (never the content, always where it failed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel

from vault import crypto
from vault.crypto import InvalidCiphertext, Sealer
from vault.envelope import Envelope, attachment_aad, chunk_aad, content_aad, interaction_aad
from vault.errors import ArchiveDestroyed, DecryptionFailed, KeyFileError
from vault.keys import Keyring
from vault.models import VaultMeta

DEK = bytes(range(32))


class Keys:
    """A key provider with one KEK per (level, version), wrapping as the key file does."""

    vault_id = "vault-1"

    def __init__(self, *versions: tuple[str, int]) -> None:
        self.known = {v: bytes([i + 1]) * 32 for i, v in enumerate(versions)}
        self.asked: list[tuple[str, int]] = []

    def _sealer(self, level: str, version: int) -> Sealer:
        self.asked.append((level, version))
        return Sealer(self.known[(level, version)], version)

    def wrap_dek(self, level: str, version: int, dek: bytes, associated: bytes) -> bytes:
        return self._sealer(level, version).seal(dek, associated)

    def wrap_deks(self, level, version, items):
        return self._sealer(level, version).seal_many(items)

    def unwrap_dek(self, level: str, version: int, wrapped: bytes, associated: bytes) -> bytes:
        return self._sealer(level, version).open(wrapped, associated)

    def check_kek(self, level: str, version: int) -> None:
        self._sealer(level, version)


def test_each_kind_of_ciphertext_is_bound_to_its_own_associated_data() -> None:
    assert content_aad("A-1", "contact", "secret", 2, 5) == crypto.aad(
        "content", "A-1", "contact", "secret", 2, 5
    )
    assert interaction_aad("A-1", "secret", 2, "I-9") == crypto.aad(
        "interaction", "A-1", "secret", 2, "I-9"
    )
    assert attachment_aad("A-1", "secret", 2, "F-9") == crypto.aad(
        "attachment-meta", "A-1", "secret", 2, "F-9"
    )
    assert chunk_aad("A-1", "secret", 2, "F-9", 4, True) == crypto.aad(
        "attachment-chunk", "A-1", "secret", 2, "F-9", 4, 1
    )
    assert chunk_aad("A-1", "secret", 2, "F-9", 4, False) == crypto.aad(
        "attachment-chunk", "A-1", "secret", 2, "F-9", 4, 0
    )


def test_a_wrapped_dek_names_the_vault_the_archive_and_the_level() -> None:
    env = Envelope(Keys(("secret", 1)))
    assert env.dek_aad("A-1", "secret") == crypto.aad("dek", "vault-1", "A-1", "secret")
    wrapped = env.wrap(DEK, "A-1", "secret", 1)
    kek = Sealer(bytes([1]) * 32, 1)
    assert kek.open(wrapped, crypto.aad("dek", "vault-1", "A-1", "secret")) == DEK
    assert crypto.key_version_of(wrapped) == 1


def test_the_key_file_caches_its_keks_per_level_and_version_until_forgotten() -> None:
    keys = Keyring.generate()
    first = keys._sealer("secret", 1)
    assert first.version == 1
    assert keys._sealer("secret", 1) is first
    assert keys._sealer("internal", 1) is not first
    v2 = keys.add_version("secret")
    assert keys._sealer("secret", v2) is not first and keys._sealer("secret", v2).version == 2
    keys.forget_keks()
    assert keys._sealer("secret", 1) is not first
    wrapped = keys.wrap_dek("secret", 1, DEK, b"ad")
    keys.retire("secret", 1)  # the retired KEK is neither cached nor found again
    with pytest.raises(KeyFileError, match="retired"):
        keys.unwrap_dek("secret", 1, wrapped, b"ad")


def test_an_unwrapped_dek_seals_with_its_own_version() -> None:
    env = Envelope(Keys(("secret", 3)))
    wrapped = env.wrap(DEK, "A-1", "secret", 3)
    dek = env.dek("A-1", "secret", 3, 7, wrapped)
    assert dek.version == 7
    assert Sealer(DEK, 7).open(dek.seal(b"x", b"ad"), b"ad") == b"x"
    row = SimpleNamespace(
        archive_no="A-1", classification="secret", kek_version=3, dek_version=7, wrapped_dek=wrapped
    )
    assert crypto.key_version_of(env.dek_of(row).seal(b"y", b"ad")) == 7
    assert Sealer(DEK, 7).open(env.dek_of(row).seal(b"y", b"ad"), b"ad") == b"y"


def test_a_destroyed_archive_has_no_dek() -> None:
    env = Envelope(Keys(("secret", 1)))
    with pytest.raises(ArchiveDestroyed) as caught:
        env.dek("A-1", "secret", 1, 1, None)
    assert str(caught.value) == "archive A-1 has been destroyed"


def test_a_dek_moved_to_another_archive_or_level_does_not_unwrap() -> None:
    env = Envelope(Keys(("secret", 1), ("internal", 1)))
    wrapped = env.wrap(DEK, "A-1", "secret", 1)
    with pytest.raises(DecryptionFailed) as caught:
        env.dek("A-2", "secret", 1, 1, wrapped)
    assert str(caught.value) == (
        "archive A-2: its data key does not open under KEK secret v1 (tampered, moved "
        "from another archive, or the wrong keys)"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(DecryptionFailed):
        env.dek("A-1", "internal", 1, 1, wrapped)


def test_a_group_opens_only_where_it_was_sealed() -> None:
    env = Envelope(Keys(("secret", 1)))
    dek = Sealer(DEK, 2)
    blob = dek.seal(b'{"name": "x"}', content_aad("A-1", "contact", "secret", 2, 5))
    assert env.open_group(dek, "A-1", "contact", "secret", 5, blob) == {"name": "x"}
    with pytest.raises(DecryptionFailed) as caught:
        env.open_group(dek, "A-1", "contact", "secret", 4, blob)
    assert str(caught.value) == (
        "archive A-1, field group 'contact': ciphertext failed authentication "
        "(tampered, or copied from another archive or group)"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    for other in [("A-2", "contact", "secret"), ("A-1", "other", "secret")]:
        with pytest.raises(DecryptionFailed):
            env.open_group(dek, *other, 5, blob)
    with pytest.raises(InvalidCiphertext):  # the DEK's own version is in the binding
        Sealer(DEK, 2).open(blob, content_aad("A-1", "contact", "secret", 3, 5))


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    SQLModel.metadata.create_all(engine, tables=[VaultMeta.__table__])  # type: ignore[attr-defined]
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_the_active_kek_version_comes_from_the_database(session: Session) -> None:
    keys = Keys(("secret", 1), ("secret", 4), ("internal", 1))
    env = Envelope(keys)
    assert env.active_kek(session, "secret") == 1  # nothing recorded: the first version
    assert keys.asked == [("secret", 1)]
    session.add(VaultMeta(key="kek_active:secret", value="4"))
    session.add(VaultMeta(key="kek_active:top_secret", value="9"))
    session.flush()
    assert env.active_kek(session, "secret") == 4
    assert keys.asked[-1] == ("secret", 4)
    assert env.active_kek(session, "internal") == 1
    session.add(VaultMeta(key="kek_active:internal", value="2"))
    session.flush()
    with pytest.raises(KeyError):  # the key file lacks it: fail before anything is sealed
        env.active_kek(session, "internal")


class _Recording:
    """A session stand-in on a named dialect that records the statement it is given."""

    def __init__(self, dialect: str) -> None:
        self.bind = SimpleNamespace(dialect=SimpleNamespace(name=dialect))
        self.statements: list[Any] = []

    def get_bind(self) -> Any:
        return self.bind

    def exec(self, stmt: Any) -> Any:
        self.statements.append(stmt)
        return SimpleNamespace(first=lambda: None)


@pytest.mark.parametrize(("dialect", "shared"), [("postgresql", True), ("sqlite", False)])
def test_the_active_kek_is_read_under_a_share_lock_on_postgresql(dialect, shared) -> None:
    """A rotation in another process waits for a writer that read the active version."""
    session = _Recording(dialect)
    assert Envelope(Keys(("secret", 1))).active_kek(session, "secret") == 1  # type: ignore[arg-type]
    lock = session.statements[0]._for_update_arg
    assert (lock is not None and lock.read) is shared


class _ManifestKeys(Keys):
    def __init__(self, complete: bool) -> None:
        super().__init__()
        self.complete = complete

    def manifests_complete(self) -> bool:
        return self.complete


@pytest.mark.parametrize(
    ("complete", "says"),
    [(True, "its sealed manifest of field groups is missing"), (False, "no sealed manifest")],
)
def test_a_missing_manifest_is_judged_by_the_key_file(complete, says) -> None:
    env = Envelope(_ManifestKeys(complete))
    row = SimpleNamespace(archive_no="A-1", classification="secret", manifest=None)
    with pytest.raises(DecryptionFailed, match=f"^archive A-1: {says}"):
        env.manifest(Sealer(DEK, 1), row)
