"""People and machines that use hostwarden: users, passwords, lock-out, tokens, sessions."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hostwarden.core.models import ApiToken, User, WebSession
from hostwarden.core.rbac import Role, parse_roles
from hostwarden.core.runtime import Actor, Operation, Runtime, new_request_id, system_actor
from hostwarden.core.timeutil import as_utc, isoformat, utcnow
from hostwarden.errors import (
    AccountLocked,
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("hostwarden-timing-equaliser")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
LOCALES = ("en", "zh-CN")
TOKEN_PREFIX = "hw_"  # noqa: S105  (a public marker, not a secret)


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def user_summary(user: User) -> dict[str, object]:
    """What the audit trail records of a user: never the password hash."""
    return {
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "roles": user.role_list,
        "locale": user.locale,
        "is_active": user.is_active,
    }


def _check_password(runtime: Runtime, password: str) -> None:
    minimum = runtime.settings.auth.password_min_length
    if len(password) < minimum:
        raise ValidationFailed(
            f"the password has {len(password)} characters; at least {minimum} are needed.",
            hint="Choose a longer password or a passphrase.",
        )


def _check_locale(locale: str) -> str:
    if locale not in LOCALES:
        raise ValidationFailed(f"'{locale}' is not a supported language.", hint="Use en or zh-CN.")
    return locale


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}.", hint="List users to find the right id.")
    return user


def get_user_by_name(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise NotFound(f"no user named '{username}'.", hint="Check `hostwarden user list`.")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def create_user(
    op: Operation,
    username: str,
    password: str,
    roles: list[str],
    *,
    display_name: str = "",
    email: str = "",
    locale: str = "en",
    reason: str = "",
) -> User:
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise ValidationFailed(
            f"'{username}' is not a valid username.",
            hint="Use 2–64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
        )
    _check_password(op.runtime, password)
    role_list = parse_roles(roles)
    if op.session.scalar(select(User.id).where(User.username == name)) is not None:
        raise Conflict(f"a user named '{name}' already exists.", hint="Pick another username.")
    user = User(
        username=name,
        display_name=display_name.strip(),
        email=email.strip(),
        password_hash=_hasher.hash(password),
        roles=",".join(r.value for r in role_list),
        locale=_check_locale(locale),
    )
    op.session.add(user)
    op.session.flush()
    op.audit("user.create", "user", user.id, after=user_summary(user), reason=reason)
    return user


def update_user(
    op: Operation,
    user_id: int,
    *,
    display_name: str | None = None,
    email: str | None = None,
    roles: list[str] | None = None,
    locale: str | None = None,
    is_active: bool | None = None,
    reason: str = "",
) -> User:
    user = get_user(op.session, user_id)
    before = user_summary(user)
    if display_name is not None:
        user.display_name = display_name.strip()
    if email is not None:
        user.email = email.strip()
    if roles is not None:
        user.roles = ",".join(r.value for r in parse_roles(roles))
    if locale is not None:
        user.locale = _check_locale(locale)
    if is_active is not None:
        if not is_active and user.id == op.actor.user_id:
            raise Conflict("you cannot disable your own account.", hint="Ask another admin.")
        user.is_active = is_active
    after = user_summary(user)
    if after == before:
        return user
    _refuse_losing_last_admin(op.session, user, before)
    action = "user.update"
    if before["is_active"] != after["is_active"]:
        action = "user.enable" if user.is_active else "user.disable"
    op.audit(action, "user", user.id, before=before, after=after, reason=reason)
    if not user.is_active:
        _end_sessions(op.session, user.id)
    op.runtime.token_cache.clear()
    return user


def _refuse_losing_last_admin(session: Session, user: User, before: dict[str, object]) -> None:
    was_admin = Role.ADMIN.value in list(before["roles"]) and bool(before["is_active"])  # type: ignore[call-overload]
    still_admin = Role.ADMIN.value in user.role_list and user.is_active
    if was_admin and not still_admin:
        others = [
            u
            for u in list_users(session)
            if u.id != user.id and u.is_active and Role.ADMIN.value in u.role_list
        ]
        if not others:
            raise Conflict(
                f"'{user.username}' is the last active admin.",
                hint="Give another user the admin role first.",
            )


def set_password(op: Operation, user_id: int, password: str, *, reason: str = "") -> User:
    """Set a new password; also lifts a lock-out and ends the user's console sessions."""
    _check_password(op.runtime, password)
    user = get_user(op.session, user_id)
    user.password_hash = _hasher.hash(password)
    user.password_changed_at = utcnow()
    user.failed_logins = 0
    user.locked_until = None
    _end_sessions(op.session, user.id)
    op.runtime.token_cache.clear()
    op.audit("user.password_set", "user", user.id, reason=reason)
    return user


def change_own_password(op: Operation, user_id: int, current: str, new: str) -> User:
    user = get_user(op.session, user_id)
    if not _verify(user.password_hash, current):
        raise AuthenticationFailed("the current password is wrong.", hint="Type it again.")
    return set_password(op, user_id, new, reason="changed by the user")


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _end_sessions(session: Session, user_id: int) -> None:
    for row in session.scalars(select(WebSession).where(WebSession.user_id == user_id)):
        session.delete(row)


@dataclass(frozen=True)
class LoginResult:
    user_id: int
    username: str
    roles: tuple[str, ...]
    locale: str
    session_token: str


def login(
    runtime: Runtime, username: str, password: str, *, ip: str = "", user_agent: str = ""
) -> LoginResult:
    """Check a password, count failures, lock after too many, open a console session."""
    name = username.strip().lower()
    settings = runtime.settings.auth
    failure: Exception | None = None
    result: LoginResult | None = None
    actor = Actor(name=name or "anonymous", roles=(), request_id=new_request_id())
    with runtime.operation(actor) as op:
        user = op.session.scalar(select(User).where(User.username == name))
        if user is not None:
            # The trail records the roles the person held when signing in.
            op.actor = Actor(user.username, tuple(user.role_list), actor.request_id, user.id)
        now = utcnow()
        if user is None or not user.is_active:
            _verify(_DUMMY_HASH, password)
            failure = AuthenticationFailed(
                "wrong username or password.", hint="Check both and try again."
            )
        elif user.locked_until is not None and as_utc(user.locked_until) > now:
            failure = _locked_error(user.locked_until)
        elif not _verify(user.password_hash, password):
            user.failed_logins += 1
            op.audit(
                "user.login_failed",
                "user",
                user.id,
                after={"failed_logins": user.failed_logins},
                reason=f"from {ip or 'unknown address'}",
            )
            if user.failed_logins >= settings.lockout_threshold:
                user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
                user.failed_logins = 0
                op.audit(
                    "user.lock",
                    "user",
                    user.id,
                    after={"locked_until": isoformat(user.locked_until)},
                    reason=f"{settings.lockout_threshold} failed logins",
                )
                failure = _locked_error(user.locked_until)
            else:
                failure = AuthenticationFailed(
                    "wrong username or password.", hint="Check both and try again."
                )
        else:
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = now
            token = secrets.token_urlsafe(32)
            op.session.add(
                WebSession(
                    session_hash=hash_secret(token),
                    user_id=user.id,
                    expires_at=now + timedelta(hours=settings.session_hours),
                    ip=ip[:64],
                    user_agent=user_agent[:400],
                )
            )
            op.audit("user.login", "user", user.id, reason=f"console login from {ip or 'unknown'}")
            result = LoginResult(user.id, user.username, tuple(user.role_list), user.locale, token)
    if failure is not None:
        raise failure
    assert result is not None
    return result


def _locked_error(until: datetime) -> AccountLocked:
    return AccountLocked(
        f"the account is locked until {as_utc(until):%Y-%m-%d %H:%M} UTC after repeated "
        "failed logins.",
        hint="Wait until then, or ask an admin to set a new password.",
    )


def resolve_session(runtime: Runtime, token: str) -> User | None:
    with runtime.reading() as session:
        row = session.scalar(
            select(WebSession).where(WebSession.session_hash == hash_secret(token))
        )
        if row is None or as_utc(row.expires_at) <= utcnow():
            return None
        user = row.user
        if not user.is_active:
            return None
        session.expunge(user)
        return user


def logout(runtime: Runtime, token: str) -> None:
    with runtime.reading() as session:
        row = session.scalar(
            select(WebSession).where(WebSession.session_hash == hash_secret(token))
        )
        if row is None:
            return
        user = row.user
        actor = Actor(user.username, tuple(user.role_list), new_request_id(), user.id)
    with runtime.operation(actor) as op:
        found = op.session.scalar(
            select(WebSession).where(WebSession.session_hash == hash_secret(token))
        )
        if found is not None:
            op.session.delete(found)
            op.audit("user.logout", "user", actor.user_id or 0)


def purge_expired_sessions(runtime: Runtime) -> int:
    with runtime.operation(system_actor("auth")) as op:
        expired = list(
            op.session.scalars(select(WebSession).where(WebSession.expires_at <= utcnow()))
        )
        for row in expired:
            op.session.delete(row)
        if expired:
            op.audit(
                "session.purge",
                "web_session",
                "*",
                after={"removed": len(expired)},
                reason="console sessions past their expiry",
            )
        return len(expired)


# --- API tokens -------------------------------------------------------------------------


def token_summary(token: ApiToken) -> dict[str, object]:
    return {
        "name": token.name,
        "prefix": token.prefix,
        "user_id": token.user_id,
        "roles": token.role_list,
        "expires_at": isoformat(token.expires_at),
        "revoked": token.revoked_at is not None,
    }


def create_token(
    op: Operation,
    user_id: int,
    name: str,
    *,
    roles: list[str] | None = None,
    days: int = 90,
    reason: str = "",
) -> tuple[ApiToken, str]:
    """Make a token for a user; its roles must be a subset of the user's. Returns the
    secret once: only its hash is kept."""
    user = get_user(op.session, user_id)
    if not user.is_active:
        raise Conflict(f"user '{user.username}' is disabled.", hint="Enable the user first.")
    if not name.strip():
        raise ValidationFailed("a token needs a name.", hint="Say what will use it, e.g. billing.")
    max_days = op.runtime.settings.auth.token_max_days
    if not 1 <= days <= max_days:
        raise ValidationFailed(
            f"a token must expire in 1 to {max_days} days; {days} was asked.",
            hint="Pick a shorter lifetime (auth.token_max_days sets the upper bound).",
        )
    wanted = parse_roles(roles) if roles else parse_roles(user.role_list)
    extra = [r.value for r in wanted if r.value not in user.role_list]
    if extra:
        raise PermissionDenied(
            f"user '{user.username}' does not hold role(s) {', '.join(extra)}.",
            hint="A token can only carry roles its owner has.",
        )
    prefix = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        user_id=user.id,
        name=name.strip(),
        prefix=prefix,
        token_hash=hash_secret(secret),
        roles=",".join(r.value for r in wanted),
        expires_at=utcnow() + timedelta(days=days),
    )
    op.session.add(token)
    op.session.flush()
    op.audit("token.create", "api_token", token.id, after=token_summary(token), reason=reason)
    return token, secret


def list_tokens(session: Session, user_id: int | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return list(session.scalars(query))


def get_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no API token with id {token_id}.", hint="List tokens to find the id.")
    return token


def revoke_token(op: Operation, token_id: int, *, reason: str = "") -> ApiToken:
    token = get_token(op.session, token_id)
    if token.revoked_at is None:
        before = token_summary(token)
        token.revoked_at = utcnow()
        op.runtime.token_cache.clear()
        op.audit(
            "token.revoke",
            "api_token",
            token.id,
            before=before,
            after=token_summary(token),
            reason=reason,
        )
    return token


@dataclass(frozen=True)
class TokenIdentity:
    token_id: int
    user_id: int
    username: str
    roles: tuple[str, ...]
    locale: str
    expires_at: datetime


#: How long a resolved token is trusted without asking the database again. Changes made in
#: this process (revocation, disabling the user, new roles, new password) clear it at once;
#: another process sees them within this many seconds.
TOKEN_CACHE_SECONDS = 2.0


class TokenCache:
    """Resolved bearer tokens of one runtime, keyed by the token's hash.

    Every API call authenticates; asking the database each time costs more than the
    attribution lookup it guards, so answers are kept for TOKEN_CACHE_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, TokenIdentity]] = {}

    def get(self, key: str) -> TokenIdentity | None:
        with self._lock:
            found = self._entries.get(key)
        if found is None or time.monotonic() - found[0] > TOKEN_CACHE_SECONDS:
            return None
        return found[1]

    def put(self, key: str, identity: TokenIdentity) -> None:
        with self._lock:
            if len(self._entries) > 10_000:  # bounded: tokens are few, junk is not kept
                self._entries.clear()
            self._entries[key] = (time.monotonic(), identity)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _bad_token() -> AuthenticationFailed:
    return AuthenticationFailed(
        "the API token is unknown, revoked or expired.",
        hint="Create a new one with `hostwarden token create`.",
    )


def _token_key(secret: str) -> tuple[str, str]:
    """The token's prefix and the hash it is stored under; malformed secrets refused."""
    parts = secret.split("_")
    if not secret.startswith(TOKEN_PREFIX) or len(parts) < 3:
        raise _bad_token()
    return parts[1], hash_secret(secret)


def cached_token(runtime: Runtime, secret: str) -> TokenIdentity | None:
    """The identity of a bearer secret if this process resolved it a moment ago (no
    database, safe on the event loop); None means "ask ``resolve_token``"."""
    _, key = _token_key(secret)
    cached = runtime.token_cache.get(key)
    if cached is not None and cached.expires_at <= utcnow():
        raise _bad_token()
    return cached


def resolve_token(runtime: Runtime, secret: str) -> TokenIdentity:
    """Find the live token for a bearer secret or raise AuthenticationFailed. Every API
    call passes here, so it only reads (and may answer from the short cache); the
    last-use time is written at most once a minute, in a transaction of its own."""
    bad = _bad_token()
    prefix, key = _token_key(secret)
    now = utcnow()
    cached = runtime.token_cache.get(key)
    if cached is not None:
        if cached.expires_at <= now:
            raise bad
        return cached
    with runtime.reading() as session:
        row = session.execute(
            select(
                ApiToken.id,
                ApiToken.token_hash,
                ApiToken.roles,
                ApiToken.expires_at,
                ApiToken.revoked_at,
                ApiToken.last_used_at,
                User.id,
                User.username,
                User.roles,
                User.locale,
                User.is_active,
            )
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.prefix == prefix)
        ).first()
    if row is None:
        raise bad
    (
        token_id,
        token_hash,
        token_roles,
        expires_at,
        revoked_at,
        last_used_at,
        user_id,
        username,
        user_roles,
        locale,
        is_active,
    ) = row
    if not hmac.compare_digest(token_hash, key):
        raise bad
    if revoked_at is not None or as_utc(expires_at) <= now or not is_active:
        raise bad
    held = set(user_roles.split(","))
    identity = TokenIdentity(
        token_id,
        user_id,
        username,
        tuple(r for r in token_roles.split(",") if r and r in held),
        locale,
        as_utc(expires_at),
    )
    runtime.token_cache.put(key, identity)
    if last_used_at is None or now - as_utc(last_used_at) > timedelta(minutes=1):
        # Usage bookkeeping, not a state change worth an audit entry.
        with runtime.db.session() as session:
            session.execute(
                update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now)
            )
    return identity
