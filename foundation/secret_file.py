"""Reading a secret kept in a file: a PIN, a key-file passphrase, an operator's password.

One rule for every such file, so none is weaker than the others: a regular file
that only its owner can read, not empty; its trailing line break is not part of
the secret. The message names the file and what to do, never its content.
"""

from __future__ import annotations

import stat
from pathlib import Path


class SecretFileError(ValueError):
    """The file cannot be used; the message is one line and holds no secret."""


def read_secret_file(path: Path, what: str) -> str:
    """The secret in ``path`` (``what`` names it in messages: "PIN file", ...)."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise SecretFileError(f"{what} {path} is missing or unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(f"{what} {path} is not a regular file")
    if st.st_mode & 0o077:
        raise SecretFileError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    secret = text.rstrip("\r\n")
    if not secret:
        raise SecretFileError(f"{what} {path} is empty")
    return secret
