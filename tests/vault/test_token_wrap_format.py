"""The stored form of a DEK wrapped in an HSM: its header, and the binding it carries."""

from __future__ import annotations

import pytest

from vault import crypto
from vault.crypto import InvalidCiphertext, Sealer

DEK = bytes(range(32))


def test_a_token_wrapped_dek_names_key_wrap_and_its_kek_version() -> None:
    blob = crypto.kwp_blob(7, b"w" * 40)
    assert blob[:3] == bytes([crypto.MAGIC, crypto.FORMAT_V1, crypto.ALG_AES_256_KWP])
    assert crypto.kwp_body(blob, 7) == b"w" * 40
    for bad in (
        crypto.kwp_blob(6, b"w" * 40),  # another version
        blob[:2] + bytes([crypto.ALG_AES_256_GCM]) + blob[3:],  # another algorithm
        bytes([0]) + blob[1:],  # not ours
        blob[:1] + bytes([2]) + blob[2:],  # another format
        crypto.kwp_blob(7, b"w" * 15),  # too short to be a wrap
    ):
        with pytest.raises(InvalidCiphertext):
            crypto.kwp_body(bad, 7)
    assert crypto.kwp_body(crypto.kwp_blob(7, b"w" * 16), 7) == b"w" * 16


def test_an_aes_gcm_sealer_refuses_a_token_wrapped_dek() -> None:
    blob = crypto.kwp_blob(1, b"w" * 48)
    with pytest.raises(InvalidCiphertext):
        Sealer(bytes(32), 1).open(blob, b"ad")


def test_the_binding_names_version_and_associated_data() -> None:
    value = crypto.bind_key(DEK, 3, b"archive A")
    assert len(value) == crypto.KEY_LEN + crypto.BINDING_LEN and value[:32] == DEK
    assert crypto.unbind_key(value, 3, b"archive A") == DEK
    assert crypto.bind_key(DEK, 3, b"archive A") == value  # deterministic, as key wrap is
    for version, ad in ((4, b"archive A"), (3, b"archive B"), (3, b"")):
        with pytest.raises(InvalidCiphertext):
            crypto.unbind_key(value, version, ad)
    with pytest.raises(InvalidCiphertext):
        crypto.unbind_key(value[:-1], 3, b"archive A")
    with pytest.raises(InvalidCiphertext):
        crypto.unbind_key(value + b"x", 3, b"archive A")
    flipped = value[:40] + bytes([value[40] ^ 1]) + value[41:]
    with pytest.raises(InvalidCiphertext):
        crypto.unbind_key(flipped, 3, b"archive A")
    with pytest.raises(ValueError, match="256 bits"):
        crypto.bind_key(DEK[:16], 3, b"archive A")
