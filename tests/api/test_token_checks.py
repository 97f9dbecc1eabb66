"""The token and password checks of ``api.security``, one rule at a time.

The HTTP tests (``test_auth.py``) prove forged tokens get a 401; these pin the
rule behind each refusal (which claim, which boundary, which reason), so a
check that is loosened or moved by one second fails here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from jose import jwt

from api import security
from api.security import (
    AUDIENCE,
    InvalidToken,
    TokenService,
    check_password_strength,
    hash_password,
    verify_password,
)

SECRET = b"s" * 32
ISSUER = "archive-vault-test"
TTL = timedelta(minutes=15)


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(secret=SECRET, issuer=ISSUER, ttl=TTL)


def _claims(**over: object) -> dict:
    now = int(time.time())
    claims = {
        "sub": "zhang.wei",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "jti": "j" * 32,
        "gen": 3,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _token(key: bytes = SECRET, algorithm: str = "HS256", **over: object) -> str:
    return jwt.encode(_claims(**over), key, algorithm=algorithm)


def _refused(tokens: TokenService, token: object, reason: str, **kw: object) -> None:
    with pytest.raises(InvalidToken) as caught:
        tokens.verify(token, **kw)  # type: ignore[arg-type]
    assert str(caught.value) == reason


def test_issue_then_verify(tokens: TokenService) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token, ttl = tokens.issue("chen.jing", generation=7, now=now)
    assert ttl == 900
    claims = tokens.verify(token)
    assert claims.username == "chen.jing" and claims.generation == 7
    assert claims.issued_at == now and claims.expires_at == now + TTL
    assert len(claims.jti) == 32
    raw = jwt.get_unverified_claims(token)
    assert raw["aud"] == AUDIENCE and raw["iss"] == ISSUER and raw["gen"] == 7
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert tokens.issue("chen.jing", generation=7)[0] != tokens.issue("chen.jing", generation=7)[0]


def test_the_secret_is_at_least_256_bits() -> None:
    with pytest.raises(ValueError, match=r"^the token signing secret must be at least 256 bits$"):
        TokenService(secret=b"s" * 31, issuer=ISSUER, ttl=TTL)
    TokenService(secret=b"s" * 32, issuer=ISSUER, ttl=TTL)


@pytest.mark.parametrize(
    "token", [None, 7, "", "abc", "a.b", "a.b.c.d", "x" * 5000, "eyJ.eyJ.sig", "..", "a.b.c"]
)
def test_malformed_tokens(tokens: TokenService, token: object) -> None:
    _refused(tokens, token, "malformed token")


def _token_of_length(length: int) -> str:
    for jti in ("j" * 32, "j" * 33, "j" * 34):
        for n in range(length * 3 // 4 - 400, length * 3 // 4):
            token = _token(jti=jti, pad="x" * n)
            if len(token) == length:
                return token
    raise AssertionError(f"no token of {length} characters")


def test_length_limit_is_4096(tokens: TokenService) -> None:
    assert tokens.verify(_token_of_length(4096)).username == "zhang.wei"
    _refused(tokens, _token_of_length(4097), "malformed token")


def test_only_hs256_is_accepted(tokens: TokenService) -> None:
    _refused(tokens, _token(algorithm="HS512"), "token algorithm not accepted")
    _refused(tokens, _token(algorithm="HS384"), "token algorithm not accepted")


def test_signature_audience_and_issuer(tokens: TokenService) -> None:
    _refused(tokens, _token(key=b"k" * 32), "invalid token")
    _refused(tokens, _token(aud="another-api"), "invalid token")
    _refused(tokens, _token(iss="someone-else"), "invalid token")


@pytest.mark.parametrize("claim", ["exp", "iat", "aud", "iss", "sub", "jti", "gen"])
def test_every_claim_is_required(tokens: TokenService, claim: str) -> None:
    claims = _claims()
    del claims[claim]
    _refused(tokens, jwt.encode(claims, SECRET, algorithm="HS256"), "invalid token")


@pytest.mark.parametrize(
    "over",
    [{"sub": ""}, {"sub": 5}, {"jti": ""}, {"jti": 5}, {"gen": True}, {"gen": -1}, {"gen": "1"}],
)
def test_claim_types(tokens: TokenService, over: dict) -> None:
    _refused(tokens, _token(**over), "invalid token")


def test_generation_zero_is_valid(tokens: TokenService) -> None:
    assert tokens.verify(_token(gen=0)).generation == 0


def test_expired_by_the_wall_clock(tokens: TokenService) -> None:
    _refused(tokens, _token(exp=int(time.time()) - 5), "token expired")


def test_expiry_by_the_services_clock_includes_the_last_second(tokens: TokenService) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token = _token(iat=int(now.timestamp()), exp=int(now.timestamp()) + 600)
    expires = now + timedelta(seconds=600)
    assert tokens.verify(token, now=expires - timedelta(seconds=1)).username == "zhang.wei"
    _refused(tokens, token, "token expired", now=expires)
    _refused(tokens, token, "token expired", now=expires + timedelta(seconds=1))


def test_issued_in_the_future_allows_a_minute_of_skew(tokens: TokenService) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    iat = int(now.timestamp())
    token = _token(iat=iat, exp=iat + 600)
    assert tokens.verify(token, now=now - timedelta(minutes=1)).username == "zhang.wei"
    _refused(tokens, token, "token issued in the future", now=now - timedelta(minutes=1, seconds=1))


def test_a_cached_token_is_still_checked_for_expiry(tokens: TokenService) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token = _token(iat=int(now.timestamp()), exp=int(now.timestamp()) + 600)
    assert tokens.verify(token).username == "zhang.wei"  # now cached
    _refused(tokens, token, "token expired", now=now + timedelta(seconds=600))


class _Wall:
    """The wall clock ``api.security`` reads, set by the test (jose keeps the real one)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)
        wall = self

        class Pinned(datetime):
            @classmethod
            def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
                return wall.now

        monkeypatch.setattr(security, "datetime", Pinned)


def test_a_cached_token_expires_by_the_wall_clock_at_its_exp(
    tokens: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = _Wall(monkeypatch)
    exp = int(wall.now.timestamp()) + 600  # jose, on the real clock, sees it valid throughout
    token = _token(iat=int(wall.now.timestamp()), exp=exp)
    assert tokens.verify(token).username == "zhang.wei"  # decoded and cached
    wall.now = datetime.fromtimestamp(exp - 1, UTC)
    assert tokens.verify(token).username == "zhang.wei"
    wall.now = datetime.fromtimestamp(exp, UTC)
    _refused(tokens, token, "token expired")


def test_a_verified_token_is_decoded_once(
    tokens: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding costs more than the rest of the auth check: a token seen before is not."""
    decoded: list[str] = []
    real = tokens._decode

    def counting(token: str) -> object:
        decoded.append(token)
        return real(token)

    monkeypatch.setattr(tokens, "_decode", counting)
    one, two = _token(sub="zhang.wei"), _token(sub="li.na")
    for token in (one, two, one, two, one):
        tokens.verify(token)
    assert decoded == [one, two]


def test_the_cache_tells_tokens_apart(tokens: TokenService) -> None:
    one, two = _token(sub="zhang.wei"), _token(sub="li.na")
    assert tokens.verify(one).username == "zhang.wei"
    assert tokens.verify(two).username == "li.na"
    assert tokens.verify(one).username == "zhang.wei"
    # A token edited after a good one was cached is decoded, not taken from the cache.
    head, _, sig = one.split(".")
    forged_body = _token(sub="admin").split(".")[1]
    _refused(tokens, f"{head}.{forged_body}.{sig}", "invalid token")


def test_the_cache_is_bounded(tokens: TokenService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "VERIFIED_CACHE_SIZE", 3)
    issued = [_token(jti=f"{i:032d}") for i in range(5)]
    for token in issued:
        tokens.verify(token)
    cached = tokens._verified  # bounded memory per worker: the oldest entries go first
    assert len(cached) == 3
    assert [c.jti for c in cached.values()] == [f"{i:032d}" for i in (2, 3, 4)]


# -- passwords ------------------------------------------------------------------------


def test_password_length_limits() -> None:
    for ok in ("p" * 10, "p" * 256):
        check_password_strength(ok)
    for bad in ("p" * 9, "p" * 257, "", None):
        with pytest.raises(ValueError, match=r"^a password has 10–256 characters$"):
            check_password_strength(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        hash_password("short")


def test_verify_password() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery") is True
    assert verify_password(stored, "correct horse batterz") is False
    assert verify_password(None, "correct horse battery") is False
    assert verify_password("not a hash", "correct horse battery") is False


def test_overlong_passwords_are_compared_on_their_first_256_characters() -> None:
    """Bounded work per attempt: Argon2 never sees more than the longest valid password."""
    stored = hash_password("p" * 256)
    assert verify_password(stored, "p" * 256 + "anything after") is True
    assert verify_password(stored, "p" * 255) is False
