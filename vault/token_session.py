"""Reaching a PKCS#11 token: library, token, PIN and one logged-in session per process.

PKCS#11 logs in per token and per process, not per session: a second login
fails, so each process keeps one session per (library, token) and shares it,
serialised by a lock (a session is not safe to use from two threads at once).
A later open in the same process must give the same PIN (compared in constant
time as a digest): the login already made cannot check it again. A forked child
cannot use its parent's session (PKCS#11 forbids it): it re-initialises the
library and logs in anew.

Every failure becomes one ``HsmError`` line naming what to fix (library, token
label, PIN, missing object) and never the PIN.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from pkcs11 import exceptions as px

from foundation.secret_file import SecretFileError, read_secret_file
from foundation.settings import Settings
from vault.errors import KeyFileError


class HsmError(KeyFileError):
    """The HSM cannot be used: library, token, PIN or a key object is missing or refused."""

    code = "key-provider"


@dataclass
class Token:
    """One logged-in session on a token; every call on it goes through ``use``."""

    label: str
    session: Any = field(repr=False)
    pin_digest: bytes = field(repr=False)
    pid: int = field(default_factory=os.getpid)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def check_process(self) -> None:
        """Refuse to use, in a forked child, the session its parent opened."""
        if self.pid != os.getpid():
            raise HsmError(
                f"PKCS#11 token {self.label!r}: a session opened by another process "
                "cannot be used (open the vault again in this one)"
            )

    @contextmanager
    def use(self, what: str) -> Iterator[Any]:
        """The session, under the lock; a PKCS#11 failure becomes an ``HsmError`` on ``what``."""
        with self.lock:
            self.check_process()
            try:
                yield self.session
            except px.PKCS11Error as exc:
                raise HsmError(
                    f"PKCS#11 token {self.label!r}: {what} failed ({type(exc).__name__})"
                ) from None


_OPEN: dict[tuple[str, str], Token] = {}
_OPEN_LOCK = threading.Lock()


def read_pin(settings: Settings) -> str:
    """The user PIN from VAULT_PKCS11_PIN or VAULT_PKCS11_PIN_FILE (one of them, not both)."""
    given = settings.pkcs11_pin.get_secret_value()
    path = settings.pkcs11_pin_file
    if given and path is not None:
        raise HsmError("set VAULT_PKCS11_PIN or VAULT_PKCS11_PIN_FILE, not both")
    if path is None:
        if not given:
            raise HsmError(
                "no PIN for the PKCS#11 token: set VAULT_PKCS11_PIN_FILE (or VAULT_PKCS11_PIN)"
            )
        return given
    try:
        return read_secret_file(path, "PIN file")
    except SecretFileError as exc:
        raise HsmError(str(exc)) from None


def _library(settings: Settings) -> Any:
    path = settings.pkcs11_library
    if path is None:
        raise HsmError(
            "VAULT_PKCS11_LIBRARY is not set: name the HSM's PKCS#11 module (a .so file)"
        )
    if not path.is_file():
        raise HsmError(f"PKCS#11 library {path} not found (VAULT_PKCS11_LIBRARY)")
    try:
        return pkcs11.lib(str(path))
    except (px.PKCS11Error, OSError):
        raise HsmError(f"PKCS#11 library {path} could not be loaded") from None


def open_token(settings: Settings) -> Token:
    """This process's logged-in session on the configured token (opened on first use)."""
    label = settings.pkcs11_token_label
    if not label:
        raise HsmError("VAULT_PKCS11_TOKEN_LABEL is not set: name the token holding the keys")
    pin = read_pin(settings)
    digest = hashlib.sha256(pin.encode()).digest()
    library = _library(settings)
    key = (str(settings.pkcs11_library), label)
    with _OPEN_LOCK:
        token = _OPEN.get(key)
        if token is not None and token.pid != os.getpid():  # forked: start afresh
            _OPEN.clear()
            token = None
            try:
                library.reinitialize()
            except px.PKCS11Error:
                raise HsmError(
                    f"PKCS#11 library {settings.pkcs11_library} could not be loaded"
                ) from None
        if token is not None:
            if not hmac.compare_digest(token.pin_digest, digest):
                raise HsmError(f"wrong PIN for PKCS#11 token {label!r}")
            return token
        try:
            found = library.get_token(token_label=label)
        except px.NoSuchToken:
            raise HsmError(
                f"no PKCS#11 token labelled {label!r} (check VAULT_PKCS11_TOKEN_LABEL and "
                "that the HSM is connected)"
            ) from None
        except px.MultipleTokensReturned:
            raise HsmError(f"more than one PKCS#11 token is labelled {label!r}") from None
        except px.PKCS11Error as exc:
            raise HsmError(f"PKCS#11 token {label!r}: {type(exc).__name__}") from None
        try:
            session = found.open(rw=True, user_pin=pin)
        except (px.PinIncorrect, px.PinInvalid, px.PinLenRange):
            raise HsmError(f"wrong PIN for PKCS#11 token {label!r}") from None
        except px.PinLocked:
            raise HsmError(f"the PIN of PKCS#11 token {label!r} is locked") from None
        except px.PKCS11Error as exc:
            raise HsmError(
                f"cannot log in to PKCS#11 token {label!r} ({type(exc).__name__})"
            ) from None
        token = Token(label=label, session=session, pin_digest=digest)
        _OPEN[key] = token
        return token
