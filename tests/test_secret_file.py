"""One rule for every secret kept in a file (PIN, key-file passphrase, operator password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.secret_file import SecretFileError, read_secret_file


def test_an_owner_only_file_gives_its_secret_without_the_line_break(tmp_path: Path) -> None:
    path = tmp_path / "pin"
    path.write_text("12 34\n")
    path.chmod(0o600)
    assert read_secret_file(path, "PIN file") == "12 34"


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (lambda p: (p.write_text("s3cret\n"), p.chmod(0o640)), "readable by others"),
        (lambda p: (p.write_text("\n"), p.chmod(0o600)), "is empty"),
        (lambda p: p.mkdir(mode=0o700), "missing or unreadable"),
        (lambda p: None, "missing or unreadable"),
    ],
)
def test_a_file_that_cannot_be_trusted_is_refused_without_its_content(
    tmp_path: Path, setup, says: str
) -> None:
    path = tmp_path / "secret"
    setup(path)
    with pytest.raises(SecretFileError, match=says) as caught:
        read_secret_file(path, "passphrase file")
    assert "s3cret" not in str(caught.value) and str(path) in str(caught.value)
