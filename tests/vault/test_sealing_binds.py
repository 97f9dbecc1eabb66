"""Content is bound to where it belongs by its associated data, and the sealing recipe holds.

Each archive has its own random DEK, so a ciphertext moved to another archive
already fails because the key differs, and the sealed manifest (which records
each group's ciphertext digest) refuses it before the content is even opened.
Neither proves that the content's associated data names the archive, the level,
the group and the revision. The store-level tests here take both other locks
out of the way, the way an attacker who knows one DEK would: the archives share
one DEK (the key generator is pinned) and the manifest is re-sealed to list the
moved ciphertext. What is left to refuse the move is the associated data alone.
"""

from __future__ import annotations

import os
import struct

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tests.factories import SALES, archive
from vault import crypto
from vault import manifest as mf
from vault.crypto import InvalidCiphertext, Sealer
from vault.envelope import content_aad
from vault.errors import DecryptionFailed
from vault.models import Archive, ContentHistory, SealedGroup
from vault.store import ArchiveStore
from vault.vault import Vault

SHARED_DEK = bytes(range(32))

# -- the store: same DEK, one component of the associated data differs ----------------


@pytest.fixture
def shared_dek(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every archive created from here on gets the same DEK; the list counts the draws."""
    draws: list[int] = []

    def pinned() -> bytes:
        draws.append(1)
        return SHARED_DEK

    def pinned_batch(count: int) -> list[bytes]:  # filing draws a batch's DEKs at once
        return [pinned() for _ in range(count)]

    monkeypatch.setattr(crypto, "new_key", pinned)
    monkeypatch.setattr(crypto, "new_keys", pinned_batch)
    return draws


def _row(engine: sa.Engine, archive_no: str) -> Archive:
    with Session(engine) as s:
        return s.exec(select(Archive).where(Archive.archive_no == archive_no)).one()


def _ciphertext(engine: sa.Engine, archive_no: str, group: str) -> tuple[int, bytes]:
    aid = _row(engine, archive_no).id
    with Session(engine) as s:
        row = s.exec(
            select(SealedGroup).where(
                SealedGroup.archive_id == aid, SealedGroup.group_name == group
            )
        ).one()
        return row.revision, row.ciphertext


def _plant(vault: Vault, archive_no: str, group: str, ciphertext: bytes) -> None:
    """Write ``ciphertext`` as ``group`` of ``archive_no`` and re-seal the archive's manifest
    under the shared DEK so that it lists exactly these bytes (as one who holds the DEK can)."""
    arc = _row(vault.engine, archive_no)
    dek = Sealer(SHARED_DEK, arc.dek_version)
    manifest = mf.open_manifest(dek, archive_no, arc.classification, arc.manifest, keys=vault.keys)
    with Session(vault.engine) as s:
        row = s.exec(
            select(SealedGroup).where(
                SealedGroup.archive_id == arc.id, SealedGroup.group_name == group
            )
        ).one()
        row.ciphertext = ciphertext
        s.add(row)
        stored = s.get(Archive, arc.id)
        assert stored is not None
        stored.manifest = mf.seal(
            dek,
            archive_no,
            arc.classification,
            manifest.written(group, row.revision, ciphertext),
        )
        s.add(stored)
        s.commit()


def _assert_opens_with_shared_dek(store: ArchiveStore, vault: Vault, archive_no: str) -> None:
    """Control: the manifest as re-sealed here opens, so the DEK is the shared one and what
    refuses the planted group afterwards can only be that group's own associated data."""
    _plant(vault, archive_no, "identity", _ciphertext(vault.engine, archive_no, "identity")[1])
    assert store.reader.read(archive_no, ["identity"], actor=SALES).content["identity"]


def test_same_dek_other_archive_number_is_refused(
    store: ArchiveStore, vault: Vault, shared_dek: list[int]
) -> None:
    one = store.filing.create(
        archive(profile={"name": "甲", "mobile_phone": "13800000001"}), actor=SALES
    )
    two = store.filing.create(
        archive(profile={"name": "乙", "mobile_phone": "13800000002"}), actor=SALES
    )
    assert len(shared_dek) == 2  # both DEKs came from the pinned generator
    _assert_opens_with_shared_dek(store, vault, two.archive_no)
    _, moved = _ciphertext(vault.engine, one.archive_no, "contact")
    _plant(vault, two.archive_no, "contact", moved)
    with pytest.raises(DecryptionFailed, match=f"archive {two.archive_no}, field group 'contact'"):
        store.reader.read(two.archive_no, ["contact"], actor=SALES)
    # The archive it came from still reads: nothing but the binding refused the copy.
    assert store.reader.read(one.archive_no, ["contact"], actor=SALES).content == {
        "contact": {"mobile_phone": "13800000001"}
    }


def test_same_dek_same_number_other_level_is_refused(
    store: ArchiveStore, vault: Vault, shared_dek: list[int]
) -> None:
    first = store.filing.create(
        archive(profile={"name": "甲", "mobile_phone": "13800000001"}), actor=SALES
    )
    number = first.archive_no
    _, moved = _ciphertext(vault.engine, number, "contact")
    # The internal archive's row goes out of the way; a secret archive takes its number.
    with Session(vault.engine) as s:
        s.execute(
            sa.update(Archive)
            .where(Archive.archive_no == number)
            .values(archive_no="KH-1999-000001")
        )
        s.commit()
    second = store.filing.create(
        archive(
            archive_no=number,
            classification="secret",
            profile={"name": "乙", "mobile_phone": "13800000002"},
        ),
        actor=SALES,
    )
    assert second.archive_no == number and second.classification == "secret"
    assert len(shared_dek) == 2
    assert _ciphertext(vault.engine, number, "contact")[0] == 1  # same revision as the moved one
    _assert_opens_with_shared_dek(store, vault, number)
    _plant(vault, number, "contact", moved)
    with pytest.raises(DecryptionFailed, match=f"archive {number}, field group 'contact'"):
        store.reader.read(number, ["contact"], actor=SALES)


def test_same_archive_other_group_is_refused_by_its_own_binding(
    store: ArchiveStore, vault: Vault, shared_dek: list[int]
) -> None:
    meta = store.filing.create(archive(profile={"name": "甲", "notes": "备注"}), actor=SALES)
    _assert_opens_with_shared_dek(store, vault, meta.archive_no)
    _, notes = _ciphertext(vault.engine, meta.archive_no, "notes")
    _plant(vault, meta.archive_no, "identity", notes)
    with pytest.raises(DecryptionFailed, match="field group 'identity'"):
        store.reader.read(meta.archive_no, ["identity"], actor=SALES)


def test_same_group_older_revision_is_refused_by_its_own_binding(
    store: ArchiveStore, vault: Vault, shared_dek: list[int]
) -> None:
    meta = store.filing.create(
        archive(profile={"name": "甲", "mobile_phone": "13800000001"}), actor=SALES
    )
    store.archives.update(meta.archive_no, {"mobile_phone": "13900001111"}, actor=SALES)
    _assert_opens_with_shared_dek(store, vault, meta.archive_no)
    with Session(vault.engine) as s:
        old = s.exec(select(ContentHistory).where(ContentHistory.group_name == "contact")).one()
    assert old.revision == 1 and _ciphertext(vault.engine, meta.archive_no, "contact")[0] == 2
    _plant(vault, meta.archive_no, "contact", old.ciphertext)
    with pytest.raises(DecryptionFailed, match="field group 'contact'"):
        store.reader.read(meta.archive_no, ["contact"], actor=SALES)


# -- the content's associated data names every component ------------------------------

_PLACE = {
    "archive_no": "KH-2026-000001",
    "group": "contact",
    "level": "internal",
    "dek_version": 1,
    "revision": 1,
}
_ELSEWHERE = {
    "archive_no": "KH-2026-000002",
    "group": "identity",
    "level": "secret",
    "dek_version": 2,
    "revision": 2,
}


@pytest.mark.parametrize("component", sorted(_PLACE))
def test_content_associated_data_names_each_component(component: str) -> None:
    """One DEK and one header version, so only the associated data differs.

    Through the store the DEK version is also in the authenticated header, which
    the DEK's sealer checks; this is where its own place in the content's
    associated data is seen.
    """
    dek = Sealer(SHARED_DEK, 1)
    blob = dek.seal(b'{"mobile_phone":"13800000001"}', content_aad(**_PLACE))
    assert dek.open(blob, content_aad(**_PLACE))
    moved = {**_PLACE, component: _ELSEWHERE[component]}
    with pytest.raises(InvalidCiphertext):
        dek.open(blob, content_aad(**moved))


# -- the sealing recipe ---------------------------------------------------------------

KEY = bytes(range(100, 132))


def test_round_trip_and_layout() -> None:
    sealer = Sealer(KEY, 7)
    blob = sealer.seal(b"secret words", b"where")
    assert len(blob) == crypto.OVERHEAD + len(b"secret words")
    assert crypto.OVERHEAD == 7 + 12 + 16
    assert blob[: crypto.HEADER_LEN] == struct.pack(">BBBI", 0xA5, 1, 1, 7)
    assert crypto.key_version_of(blob) == 7
    assert sealer.open(blob, b"where") == b"secret words"
    assert sealer.open(sealer.seal(b"", b""), b"") == b""


def test_each_seal_takes_a_fresh_nonce() -> None:
    sealer = Sealer(KEY, 1)
    a, b = sealer.seal(b"same", b"ad"), sealer.seal(b"same", b"ad")
    assert (
        a[crypto.HEADER_LEN : crypto.HEADER_LEN + 12]
        != b[crypto.HEADER_LEN : crypto.HEADER_LEN + 12]
    )
    assert a != b


def test_published_aes_gcm_vector_through_the_recipe() -> None:
    """The body after the header is plain AES-256-GCM with the header in the associated
    data: checked against the cryptography library's AESGCM directly, not our own code."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = Sealer(KEY, 3).seal(b"plaintext", b"ad")
    header, nonce, body = blob[:7], blob[7:19], blob[19:]
    assert AESGCM(KEY).decrypt(nonce, body, header + b"ad") == b"plaintext"
    with pytest.raises(Exception):  # noqa: B017 - without the header it must not authenticate
        AESGCM(KEY).decrypt(nonce, body, b"ad")


def test_wrong_associated_data_key_or_version_is_refused() -> None:
    blob = Sealer(KEY, 1).seal(b"x", b"ad")
    for sealer, ad in [
        (Sealer(KEY, 1), b"ae"),
        (Sealer(KEY, 1), b""),
        (Sealer(bytes(32), 1), b"ad"),
        (Sealer(KEY, 2), b"ad"),
    ]:
        with pytest.raises(InvalidCiphertext):
            sealer.open(blob, ad)


@pytest.mark.parametrize("offset", range(0, crypto.OVERHEAD + 1))
def test_every_header_nonce_and_tag_byte_is_authenticated(offset: int) -> None:
    sealer = Sealer(KEY, 1)
    blob = bytearray(sealer.seal(b"x", b"ad"))
    blob[offset] ^= 0x80
    with pytest.raises(InvalidCiphertext):
        sealer.open(bytes(blob), b"ad")


@pytest.mark.parametrize(
    ("magic", "fmt", "alg"), [(0xA4, 1, 1), (0xA5, 0, 1), (0xA5, 2, 1), (0xA5, 1, 0), (0xA5, 1, 2)]
)
def test_unknown_magic_format_or_algorithm_is_refused_before_decrypting(
    magic: int, fmt: int, alg: int
) -> None:
    blob = struct.pack(">BBBI", magic, fmt, alg, 1) + os.urandom(12 + 16 + 4)
    with pytest.raises(InvalidCiphertext):
        crypto.key_version_of(blob)
    with pytest.raises(InvalidCiphertext):
        Sealer(KEY, 1).open(blob, b"")


def test_short_blobs_are_refused() -> None:
    blob = Sealer(KEY, 1).seal(b"", b"")
    assert len(blob) == crypto.OVERHEAD
    for cut in (0, 1, crypto.HEADER_LEN, crypto.OVERHEAD - 1):
        with pytest.raises(InvalidCiphertext):
            crypto.key_version_of(blob[:cut])
        with pytest.raises(InvalidCiphertext):
            Sealer(KEY, 1).open(blob[:cut], b"")


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_keys_are_256_bits(length: int) -> None:
    with pytest.raises(ValueError, match=r"^keys are 256 bits$"):
        Sealer(bytes(length), 1)


def test_new_keys_are_random_and_256_bits() -> None:
    a, b = crypto.new_key(), crypto.new_key()
    assert len(a) == len(b) == 32 and a != b


def test_associated_data_encoding_is_fixed_and_unambiguous() -> None:
    assert crypto.aad() == b"archive-vault/aad/1"
    assert crypto.aad("ab", 7, b"\x00") == (
        b"archive-vault/aad/1"
        + b"\x00\x00\x00\x02ab"
        + b"\x00\x00\x00\x017"
        + b"\x00\x00\x00\x01\x00"
    )
    # Length prefixes: moving a boundary or splitting a part changes the bytes.
    assert crypto.aad("ab", "c") != crypto.aad("a", "bc")
    assert crypto.aad("abc") != crypto.aad("ab", "c")
    assert crypto.aad("x") != crypto.aad(b"x", b"")
