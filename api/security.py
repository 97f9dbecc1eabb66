"""Passwords (Argon2id) and access tokens (short-lived JWTs with an explicit allow-list).

Tokens are HS256 under a secret from the key file, and only HS256 is accepted,
so ``alg: none`` and RS/HS confusion fail at decode. Every claim we rely on
(``exp``, ``iat``, ``aud``, ``iss``, ``sub``, ``jti``, and ``gen``, the user's
token generation) is required. A token says who; what they may do, and whether
its generation is still the user's current one, is read from the database on
every request, so a disabled user's tokens, and tokens from before a password
change or reset, stop working at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from jose import JWTError, jwt

ALGORITHMS = ("HS256",)  # the allow-list: nothing else is ever accepted
AUDIENCE = "archive-vault-api"
VERIFIED_CACHE_SIZE = 4096  # verified tokens remembered per worker (by hash)
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub", "jti")
GENERATION_CLAIM = "gen"  # required too, checked by hand (python-jose knows only the standard ones)

# Argon2id with the library's RFC 9106 low-memory profile.
_hasher = PasswordHasher()
# Verified against when the user does not exist, so that an unknown username
# takes as long to refuse as a wrong password (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

MIN_PASSWORD = 10
MAX_PASSWORD = 256


class InvalidToken(Exception):
    """Any token problem; deliberately one type with a short reason for the 401."""


def hash_password(password: str) -> str:
    check_password_strength(password)
    return _hasher.hash(password)


def check_password_strength(password: str) -> None:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password has {MIN_PASSWORD}–{MAX_PASSWORD} characters")


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant-time check (argon2's own); also burns the same time for unknown users."""
    if len(password) > MAX_PASSWORD:
        password = password[:MAX_PASSWORD]
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class TokenClaims:
    username: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    # The user's token generation at issue; only the current one is accepted.
    generation: int


class TokenService:
    def __init__(self, *, secret: bytes, issuer: str, ttl: timedelta) -> None:
        if len(secret) < 32:
            raise ValueError("the token signing secret must be at least 256 bits")
        self._secret = secret
        self.issuer = issuer
        self.ttl = ttl
        # Tokens that verified, by their SHA-256: a token is presented on every
        # request, and re-decoding it costs more than the rest of the auth check.
        # Expiry is still checked on every use; revocation is the principal
        # load's job (api.deps.caller_for), which runs on every request anyway.
        self._verified: dict[bytes, TokenClaims] = {}
        self._verified_lock = threading.Lock()

    def issue(
        self, username: str, *, generation: int, now: datetime | None = None
    ) -> tuple[str, int]:
        """A signed token for ``username`` under their current token ``generation``."""
        now = now or datetime.now(UTC)
        claims = {
            "sub": username,
            GENERATION_CLAIM: generation,
            "iss": self.issuer,
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": secrets.token_hex(16),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHMS[0]), int(
            self.ttl.total_seconds()
        )

    def verify(self, token: str, *, now: datetime | None = None) -> TokenClaims:
        if not isinstance(token, str) or len(token) > 4096 or token.count(".") != 2:
            raise InvalidToken("malformed token")
        digest = hashlib.sha256(token.encode()).digest()
        claims = self._verified.get(digest)
        if claims is None:
            claims = self._decode(token)
            with self._verified_lock:
                if len(self._verified) >= VERIFIED_CACHE_SIZE:
                    self._verified.pop(next(iter(self._verified)))
                self._verified[digest] = claims
        if datetime.now(UTC) >= claims.expires_at:
            raise InvalidToken("token expired")
        if now is not None:  # the service's clock, which tests move
            if now >= claims.expires_at:
                raise InvalidToken("token expired")
            if claims.issued_at > now + timedelta(minutes=1):
                raise InvalidToken("token issued in the future")
        return claims

    def _decode(self, token: str) -> TokenClaims:
        """Signature, algorithm and every required claim, checked by python-jose."""
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken("token algorithm not accepted")
        options: dict[str, Any] = {f"require_{c}": True for c in REQUIRED_CLAIMS}
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=list(ALGORITHMS),
                audience=AUDIENCE,
                issuer=self.issuer,
                options=options,
            )
        except JWTError as exc:
            reason = "token expired" if "expired" in str(exc).lower() else "invalid token"
            raise InvalidToken(reason) from None
        sub, jti = claims.get("sub"), claims.get("jti")
        if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
            raise InvalidToken("invalid token")
        generation = claims.get(GENERATION_CLAIM)
        if type(generation) is not int or generation < 0:  # required; bool is not an int here
            raise InvalidToken("invalid token")
        issued = datetime.fromtimestamp(int(claims["iat"]), UTC)
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return TokenClaims(sub, jti, issued, expires, generation)
