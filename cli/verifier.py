"""``archive-vault audit verifier``: what an auditor takes away to check the log alone.

The offline verifier (``audit.verify`` with ``audit.merkle`` and
``audit.checkpoint``) needs only Python and ``cryptography``, so the auditor
need not install, or trust, the vault. This command writes those three
modules, the log's public key and a short instruction into a directory of the
auditor's. The key is what makes a bundle's signatures mean anything: without
``--pubkey`` the verifier falls back to the key inside the bundle, which whoever
wrote the bundle chose. So the command prints the key's SHA-256 fingerprint, to
be read out to the auditor over a second channel (a phone call, a signed memo)
and compared with what the auditor received.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer

import audit.checkpoint
import audit.merkle
import audit.verify
from cli.common import DEFAULT_DATA_DIR, DataDir, console, err
from foundation.settings import Settings
from vault.vault import open_vault

_MODULES = {"verify.py": audit.verify, "merkle.py": audit.merkle, "checkpoint.py": audit.checkpoint}
_PACKAGE_DOC = '"""The archive-vault offline audit verifier (see README.txt)."""\n'
_README = """archive-vault offline audit verifier

Needs Python 3.11 or newer and the `cryptography` package (pip install cryptography).
Nothing else of the vault, and no access to its database or keys.

Check a bundle (written by `archive-vault audit export --out bundle.json`):

    cd {where}
    python3 -m audit.verify --pubkey audit.pem --state auditor-state.json /path/to/bundle.json

--pubkey audit.pem   pins the log's signing key. Without it the verifier trusts the key
                     inside the bundle, which whoever wrote the bundle chose.
--state FILE         remembers the newest checkpoint you accepted; the next bundle must
                     extend it (a rewritten or cut-back log is refused). Keep it yourself.

Before the first use, confirm the key's fingerprint with the vault's operator over a
second channel (phone, signed memo). Fingerprint (SHA-256 of audit.pem):

    {fingerprint}
"""


def fingerprint(pem: str) -> str:
    digest = hashlib.sha256(pem.encode("ascii")).hexdigest()
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def verifier(
    out: Annotated[Path, typer.Option("--out", help="A new directory to write the verifier to.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Write the offline verifier, the log's public key and instructions for an auditor."""
    pem = open_vault(Settings(data_dir=data_dir)).audit_log().public_key_pem()
    try:
        out.mkdir(mode=0o755)
    except FileExistsError:
        err.print(f"[red]error:[/] {out} already exists; name a new directory", highlight=False)
        raise typer.Exit(2) from None
    package = out / "audit"
    package.mkdir(mode=0o755)
    (package / "__init__.py").write_text(_PACKAGE_DOC, encoding="utf-8")
    for name, module in _MODULES.items():
        source = Path(str(module.__file__)).read_text(encoding="utf-8")
        (package / name).write_text(source, encoding="utf-8")
    (out / "audit.pem").write_text(pem, encoding="ascii")
    print_ = fingerprint(pem)
    (out / "README.txt").write_text(
        _README.format(where=out.resolve(), fingerprint=print_), encoding="utf-8"
    )
    for path in (out, package, *out.rglob("*")):  # public material: the auditor may share it
        path.chmod(0o755 if path.is_dir() else 0o644)
    console.print(f"wrote the verifier to {out}; key fingerprint {print_}", highlight=False)
