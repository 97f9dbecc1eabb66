"""One-time password resets: an administrator starts one, two people's codes finish it.

An administrator never sets another person's password: they could then log in
as that person and read what that person may read. They issue a reset
instead. Issuing revokes the user's tokens and retires the old password at
once, and makes two random codes. The first is shown to the issuing
administrator once. The second goes to a second person, the *holder*: the
user's department head (of the same department), or the information
supervisor when the department has none or the user is a head themselves;
never the issuing administrator and never the user. Both give their code to
the user in person, and the user sets a new password with both
(:func:`complete`), so no one alone can take an account over.

Codes are stored only as keyed hashes (HMAC-SHA256 under a key derived from
the key file, bound to the reset and the code's part), so the database alone
does not reveal them and cannot be searched for them offline. The holder's code
is also kept sealed (AES-256-GCM under another derived key) until the holder
fetches it, once; it is erased then, and whenever the reset ends. A reset is
used once, expires, and allows a few wrong attempts, counted by one atomic
statement per attempt; a wrong answer never says which code was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, AuditSink, Outcome
from policies.directory import revoke_tokens
from policies.errors import Refused, UnknownUser
from policies.models import Notification
from policies.roles import Role
from vault.auth_models import PasswordReset
from vault.models import User, UserRole

VALID_FOR = timedelta(hours=24)
MAX_ATTEMPTS = 5
NOTIFICATION_EVENT = "password_reset"
# Crockford's base32: no I, L, O, U, so a code read out or copied by hand survives.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_CHARS = 16  # 80 bits
_R = PasswordReset.__table__  # type: ignore[attr-defined]
_U = User.__table__  # type: ignore[attr-defined]


class ResetKeys:
    """The two keys of resets, derived from the key file (kept outside the database)."""

    def __init__(self, keys: Any) -> None:
        self._mac = keys.index_key("password-reset:code")
        self._seal = AESGCM(keys.index_key("password-reset:seal"))

    def mac(self, uid: str, part: str, code: str) -> str:
        message = f"{uid}\x00{part}\x00{normalise_code(code)}".encode()
        return hmac.new(self._mac, message, hashlib.sha256).hexdigest()

    def seal(self, uid: str, holder: str, code: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._seal.encrypt(nonce, code.encode(), f"{uid}\x00{holder}".encode())

    def open(self, uid: str, holder: str, sealed: bytes) -> str | None:
        try:
            plain = self._seal.decrypt(sealed[:12], sealed[12:], f"{uid}\x00{holder}".encode())
        except (InvalidTag, ValueError):
            return None
        return plain.decode()


def new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_CHARS))
    return "-".join(raw[i : i + 4] for i in range(0, _CODE_CHARS, 4))


def normalise_code(code: str) -> str:
    """Upper case without separators, as people type a code they were handed."""
    return "".join(c for c in code.upper() if c not in "- \t")[:64]


@dataclass(frozen=True, slots=True)
class IssuedReset:
    uid: str
    username: str
    admin_code: str  # shown once to the issuing administrator, stored only as a hash
    holder: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class HeldCode:
    uid: str
    username: str
    code: str
    expires_at: datetime


def _holders(session: Session, role: Role, department: str | None, excluded: set[str]) -> list[str]:
    query = (
        select(User.username)
        .join(UserRole, col(UserRole.user_id) == col(User.id))
        .where(UserRole.role == role.value, col(User.disabled).is_(False))
        .order_by(col(User.username))
    )
    if department is not None:
        query = query.where(User.department == department)
    return [name for name in session.exec(query).all() if name not in excluded]


def choose_holder(session: Session, user: User, issuer: str) -> str | None:
    """Who hands the second code over: the department head, else the information supervisor.

    Never the issuing administrator and never the user; the first by name when
    several qualify, so the choice is reproducible and can be explained.
    """
    excluded = {user.username, issuer}
    user_roles = set(session.exec(select(UserRole.role).where(UserRole.user_id == user.id)).all())
    if user.department and Role.DEPARTMENT_HEAD.value not in user_roles:
        heads = _holders(session, Role.DEPARTMENT_HEAD, user.department, excluded)
        if heads:
            return heads[0]
    supervisors = _holders(session, Role.INFO_SUPERVISOR, None, excluded)
    return supervisors[0] if supervisors else None


def issue(
    session: Session,
    *,
    username: str,
    issuer: Actor,
    keys: ResetKeys,
    audit: AuditSink,
    now: datetime,
    valid_for: timedelta = VALID_FOR,
) -> IssuedReset:
    """Start a reset: revoke the user's tokens, retire the password, make the two codes."""
    user = session.exec(select(User).where(User.username == username).with_for_update()).first()
    if user is None:
        raise UnknownUser(f"no user {username!r}")
    holder = choose_holder(session, user, issuer.username)
    if holder is None:
        raise Refused(
            f"no one can hand over the second code for {username!r}: it needs an enabled "
            "department head of the user's department or an information supervisor, other "
            "than you and the user",
            rule="reset-needs-a-second-person",
            event=AuditEvent(
                action=AuditAction.USER_CHANGE,
                actor=issuer,
                outcome=Outcome.DENIED,
                reason="no second person to hand over the code",
                detail={"op": "password_reset_issue", "user": username},
            ),
        )
    assert user.id is not None
    session.connection().execute(  # a newer reset replaces any pending one
        sa.update(_R)
        .where(_R.c.user_id == user.id, _R.c.state == "pending")
        .values(state="cancelled", closed_at=now, holder_code_sealed=None)
    )
    uid = "PR-" + secrets.token_hex(8).upper()
    admin_code, holder_code = new_code(), new_code()
    expires = now + valid_for
    session.add(
        PasswordReset(
            uid=uid,
            user_id=user.id,
            issued_by=issuer.username,
            holder=holder,
            admin_code_hmac=keys.mac(uid, "admin", admin_code),
            holder_code_hmac=keys.mac(uid, "holder", holder_code),
            holder_code_sealed=keys.seal(uid, holder, holder_code),
            created_at=now,
            expires_at=expires,
        )
    )
    user.password_hash = None  # the old password stops working with the tokens
    session.add(user)
    session.flush()
    revoke_tokens(session, username)
    session.add(
        Notification(
            recipient=holder,
            request_uid=None,
            event=NOTIFICATION_EVENT,
            message=(
                f"password reset {uid} for {username}, issued by {issuer.username}: fetch your "
                f"code once at GET /me/password-reset-codes and give it to {username} in "
                f"person, never to anyone else; it expires at {expires.isoformat()}"
            ),
            created_at=now,
        )
    )
    audit.append(
        session,
        AuditEvent(
            action=AuditAction.USER_CHANGE,
            actor=issuer,
            detail={
                "op": "password_reset_issue",
                "user": username,
                "reset": uid,
                "holder": holder,
                "expires_at": expires.isoformat(),
            },
        ),
    )
    return IssuedReset(uid, username, admin_code, holder, expires)


def fetch_codes(
    session: Session, *, holder: Actor, keys: ResetKeys, audit: AuditSink, now: datetime
) -> list[HeldCode]:
    """The holder's pending codes, each given out once (erased from the database here)."""
    rows = session.exec(
        select(PasswordReset, User.username)
        .join(User, col(User.id) == col(PasswordReset.user_id))
        .where(
            PasswordReset.holder == holder.username,
            PasswordReset.state == "pending",
            col(PasswordReset.expires_at) > now,
            col(PasswordReset.holder_code_sealed).is_not(None),
        )
        .order_by(col(PasswordReset.id))
        .with_for_update(of=PasswordReset)
    ).all()
    out = []
    for reset, username in rows:
        assert reset.holder_code_sealed is not None
        code = keys.open(reset.uid, reset.holder, reset.holder_code_sealed)
        reset.holder_code_sealed, reset.holder_fetched_at = None, now
        session.add(reset)
        if code is None:  # sealed under another key file: useless, so erased all the same
            continue
        out.append(HeldCode(reset.uid, username, code, reset.expires_at))
        audit.append(
            session,
            AuditEvent(
                action=AuditAction.USER_CHANGE,
                actor=holder,
                detail={"op": "password_reset_code_fetched", "user": username, "reset": reset.uid},
            ),
        )
    return out


def complete(
    session: Session,
    *,
    username: str,
    admin_code: str,
    holder_code: str,
    new_password_hash: str,
    keys: ResetKeys,
    audit: AuditSink,
    actor: Actor,
    now: datetime,
    username_hmac: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> bool:
    """Set the new password if both codes match a pending reset; False otherwise.

    Whatever the outcome, the attempt is recorded in ``session`` (the caller
    commits it), and the answer does not say what was wrong. The attempt is
    counted by one ``UPDATE … RETURNING`` that also locks the reset's row, so
    concurrent attempts are counted one by one and only ``max_attempts`` are
    ever compared.
    """
    conn = session.connection()
    user_id = conn.execute(sa.select(_U.c.id).where(_U.c.username == username)).scalar()
    row = None
    if user_id is not None:
        row = conn.execute(
            sa.update(_R)
            .where(
                _R.c.user_id == user_id,
                _R.c.state == "pending",
                _R.c.expires_at > sa.literal(now, _R.c.expires_at.type),
            )
            .values(attempts=_R.c.attempts + 1)
            .returning(
                _R.c.id, _R.c.uid, _R.c.attempts, _R.c.admin_code_hmac, _R.c.holder_code_hmac
            )
        ).first()

    def record(outcome: Outcome, reason: str | None, uid: str | None) -> None:
        detail: dict[str, Any] = {"op": "password_reset_complete", "reset": uid}
        if user_id is not None:
            detail["user"] = username
        else:
            detail["username_hmac"] = username_hmac
        # A name that is no user is never logged as typed (it may be a password).
        who = actor if user_id is not None else Actor("unknown", actor.role, actor.client)
        audit.append(
            session,
            AuditEvent(
                action=AuditAction.USER_CHANGE,
                actor=who,
                outcome=outcome,
                reason=reason,
                detail=detail,
            ),
        )

    if row is None:
        record(Outcome.DENIED, "no pending reset (none, used, expired or ended)", None)
        return False
    reset_id, uid, attempts, admin_mac, holder_mac = row
    if attempts > max_attempts:
        _close(conn, reset_id, "exhausted", now)
        record(Outcome.DENIED, "too many attempts", uid)
        return False
    # Both compared, in constant time, and combined without short-circuit.
    admin_ok = hmac.compare_digest(keys.mac(uid, "admin", admin_code), admin_mac)
    holder_ok = hmac.compare_digest(keys.mac(uid, "holder", holder_code), holder_mac)
    if not (admin_ok & holder_ok):
        if attempts >= max_attempts:
            _close(conn, reset_id, "exhausted", now)
        record(Outcome.DENIED, "wrong codes", uid)
        return False
    if not _close(conn, reset_id, "used", now):  # pragma: no cover - the row lock forbids it
        record(Outcome.DENIED, "no pending reset (none, used, expired or ended)", uid)
        return False
    conn.execute(
        sa.update(_U)
        .where(_U.c.id == user_id)
        .values(password_hash=new_password_hash, failed_logins=0, locked_until=None)
    )
    revoke_tokens(session, username)
    record(Outcome.ALLOWED, None, uid)
    return True


def _close(conn: Any, reset_id: int, state: str, now: datetime) -> bool:
    result = conn.execute(
        sa.update(_R)
        .where(_R.c.id == reset_id, _R.c.state == "pending")
        .values(state=state, closed_at=now, holder_code_sealed=None)
    )
    return bool(result.rowcount == 1)
