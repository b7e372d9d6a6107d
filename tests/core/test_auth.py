"""Users, passwords, lock-out and API tokens."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from hostwarden.core import auth
from hostwarden.core.models import ApiToken, AuditEntry, User
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.timeutil import utcnow
from hostwarden.errors import (
    AccountLocked,
    AuthenticationFailed,
    Conflict,
    PermissionDenied,
    ValidationFailed,
)
from tests.conftest import make_user

PASSWORD = "correct-horse-9"


def user_row(runtime: Runtime, username: str) -> User:
    with runtime.reading() as session:
        user = auth.get_user_by_name(session, username)
        session.expunge(user)
        return user


def actions_for(runtime: Runtime, user_id: int) -> list[str]:
    with runtime.reading() as session:
        return list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.object_type == "user", AuditEntry.object_id == str(user_id))
                .order_by(AuditEntry.seq)
            )
        )


def new_token(
    runtime: Runtime, user_id: int, roles: list[str] | None = None, days: int = 30
) -> tuple[ApiToken, str]:
    with runtime.operation(system_actor("test")) as op:
        return auth.create_token(op, user_id, "ci", roles=roles, days=days)


# --- passwords -----------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_hashes_never_in_plain(runtime: Runtime) -> None:
    make_user(runtime, "alice", ["abuse"], PASSWORD)

    stored = user_row(runtime, "alice").password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_two_users_with_the_same_password_get_different_hashes(runtime: Runtime) -> None:
    make_user(runtime, "alice", ["abuse"], PASSWORD)
    make_user(runtime, "bob", ["abuse"], PASSWORD)

    assert user_row(runtime, "alice").password_hash != user_row(runtime, "bob").password_hash


def test_a_short_password_is_refused_with_the_length_rule(runtime: Runtime) -> None:
    minimum = runtime.settings.auth.password_min_length
    with pytest.raises(ValidationFailed) as caught:
        make_user(runtime, "alice", ["abuse"], "x" * (minimum - 1))

    assert f"has {minimum - 1} characters" in caught.value.message
    assert f"at least {minimum}" in caught.value.message


def test_a_password_of_exactly_the_minimum_length_is_accepted(runtime: Runtime) -> None:
    minimum = runtime.settings.auth.password_min_length
    make_user(runtime, "alice", ["abuse"], "x" * minimum)

    assert auth.login(runtime, "alice", "x" * minimum).username == "alice"


def test_the_password_never_reaches_the_audit_trail(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"], PASSWORD)
    with runtime.operation(system_actor("test")) as op:
        auth.set_password(op, user_id, "another-secret-77")

    with runtime.db.engine.connect() as conn:
        dump = " ".join(
            str(v) for row in conn.execute(text("SELECT * FROM audit_entries")) for v in row
        )
    assert PASSWORD not in dump
    assert "another-secret-77" not in dump
    assert "$argon2" not in dump


# --- usernames and roles ---------------------------------------------------------------


@pytest.mark.parametrize("username", ["a", "-alice", "al ice", "alice!", "x" * 65, "", "ä-user"])
def test_invalid_usernames_are_refused_with_the_rule(runtime: Runtime, username: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        make_user(runtime, username, ["abuse"])

    assert "not a valid username" in caught.value.message
    assert caught.value.hint is not None
    assert "2–64 characters" in caught.value.hint


@pytest.mark.parametrize("username", ["al", "alice.wong", "noc_2", "a-b", "x" * 64])
def test_valid_usernames_are_accepted(runtime: Runtime, username: str) -> None:
    make_user(runtime, username, ["abuse"])

    assert user_row(runtime, username).username == username


def test_usernames_are_stored_lower_case_and_are_unique_regardless_of_case(
    runtime: Runtime,
) -> None:
    make_user(runtime, " Alice ", ["abuse"])
    assert user_row(runtime, "alice").username == "alice"

    with pytest.raises(Conflict, match="'alice' already exists"):
        make_user(runtime, "ALICE", ["noc"])


def test_an_unknown_role_is_refused_by_name(runtime: Runtime) -> None:
    with pytest.raises(ValidationFailed) as caught:
        make_user(runtime, "alice", ["abuse", "wizard"])

    assert "'wizard' is not a role" in caught.value.message
    assert "auditor" in (caught.value.hint or "")


def test_a_user_needs_at_least_one_role(runtime: Runtime) -> None:
    with pytest.raises(ValidationFailed, match="at least one role"):
        make_user(runtime, "alice", [])


def test_roles_are_normalised_and_deduplicated(runtime: Runtime) -> None:
    make_user(runtime, "alice", ["NOC", "abuse", "noc,abuse"])

    assert user_row(runtime, "alice").role_list == ["abuse", "noc"]


def test_an_unknown_role_in_an_update_is_refused_and_changes_nothing(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])
    with pytest.raises(ValidationFailed, match="'root' is not a role"):  # noqa: SIM117
        with runtime.operation(system_actor("test")) as op:
            auth.update_user(op, user_id, roles=["root"])

    assert user_row(runtime, "alice").role_list == ["abuse"]


# --- logging in and lock-out -----------------------------------------------------------


def test_a_correct_password_logs_in_and_is_audited(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse", "noc"], PASSWORD)

    result = auth.login(runtime, "Alice", PASSWORD, ip="192.0.2.1")

    assert (result.user_id, result.username, result.roles) == (user_id, "alice", ("abuse", "noc"))
    assert auth.resolve_session(runtime, result.session_token) is not None
    assert actions_for(runtime, user_id)[-1] == "user.login"


def test_a_wrong_password_and_an_unknown_user_fail_alike(runtime: Runtime) -> None:
    make_user(runtime, "alice", ["abuse"], PASSWORD)

    with pytest.raises(AuthenticationFailed) as wrong:
        auth.login(runtime, "alice", "not-the-password")
    with pytest.raises(AuthenticationFailed) as unknown:
        auth.login(runtime, "nobody", "not-the-password")

    assert type(wrong.value) is type(unknown.value) is AuthenticationFailed
    assert str(wrong.value) == str(unknown.value)


def test_the_account_locks_after_the_threshold_of_failed_logins(runtime: Runtime) -> None:
    threshold = runtime.settings.auth.lockout_threshold
    user_id = make_user(runtime, "alice", ["abuse"], PASSWORD)

    for _ in range(threshold - 1):
        with pytest.raises(AuthenticationFailed) as caught:
            auth.login(runtime, "alice", "wrong-password")
        assert not isinstance(caught.value, AccountLocked)
    with pytest.raises(AccountLocked) as locked:
        auth.login(runtime, "alice", "wrong-password")

    assert "locked until" in locked.value.message
    user = user_row(runtime, "alice")
    assert user.locked_until is not None
    minutes = runtime.settings.auth.lockout_minutes
    assert user.locked_until > utcnow() + timedelta(minutes=minutes - 1)
    actions = actions_for(runtime, user_id)
    assert actions.count("user.login_failed") == threshold
    assert actions[-1] == "user.lock"


def test_a_locked_account_refuses_even_the_right_password_until_locked_until(
    runtime: Runtime,
) -> None:
    make_user(runtime, "alice", ["abuse"], PASSWORD)
    for _ in range(runtime.settings.auth.lockout_threshold - 1):
        with pytest.raises(AuthenticationFailed):
            auth.login(runtime, "alice", "wrong-password")
    with pytest.raises(AccountLocked):
        auth.login(runtime, "alice", "wrong-password")

    with pytest.raises(AccountLocked):
        auth.login(runtime, "alice", PASSWORD)

    # Once locked_until has passed, the right password works again.
    with runtime.operation(system_actor("test")) as op:
        user = auth.get_user_by_name(op.session, "alice")
        user.locked_until = utcnow() - timedelta(seconds=1)
    assert auth.login(runtime, "alice", PASSWORD).username == "alice"


def test_setting_a_new_password_lifts_the_lock(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"], PASSWORD)
    for _ in range(runtime.settings.auth.lockout_threshold):
        with pytest.raises(AuthenticationFailed):
            auth.login(runtime, "alice", "wrong-password")
    with pytest.raises(AccountLocked):
        auth.login(runtime, "alice", PASSWORD)

    with runtime.operation(system_actor("test")) as op:
        auth.set_password(op, user_id, "a-brand-new-pass")

    assert user_row(runtime, "alice").locked_until is None
    assert auth.login(runtime, "alice", "a-brand-new-pass").username == "alice"
    with pytest.raises(AuthenticationFailed):
        auth.login(runtime, "alice", PASSWORD)


def test_a_successful_login_resets_the_failure_count(runtime: Runtime) -> None:
    make_user(runtime, "alice", ["abuse"], PASSWORD)
    threshold = runtime.settings.auth.lockout_threshold
    for _ in range(threshold - 1):
        with pytest.raises(AuthenticationFailed):
            auth.login(runtime, "alice", "wrong-password")
    auth.login(runtime, "alice", PASSWORD)

    with pytest.raises(AuthenticationFailed) as caught:
        auth.login(runtime, "alice", "wrong-password")
    assert not isinstance(caught.value, AccountLocked)
    assert user_row(runtime, "alice").failed_logins == 1


def test_a_disabled_user_cannot_log_in(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"], PASSWORD)
    session_token = auth.login(runtime, "alice", PASSWORD).session_token
    with runtime.operation(system_actor("test")) as op:
        auth.update_user(op, user_id, is_active=False)

    with pytest.raises(AuthenticationFailed):
        auth.login(runtime, "alice", PASSWORD)
    assert auth.resolve_session(runtime, session_token) is None
    assert "user.disable" in actions_for(runtime, user_id)


def test_changing_ones_own_password_needs_the_current_one(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"], PASSWORD)

    with pytest.raises(AuthenticationFailed, match="current password is wrong"):  # noqa: SIM117
        with runtime.operation(system_actor("test")) as op:
            auth.change_own_password(op, user_id, "not-it-at-all", "a-brand-new-pass")
    with runtime.operation(system_actor("test")) as op:
        auth.change_own_password(op, user_id, PASSWORD, "a-brand-new-pass")

    assert auth.login(runtime, "alice", "a-brand-new-pass").user_id == user_id


def test_logout_ends_the_session(runtime: Runtime) -> None:
    make_user(runtime, "alice", ["abuse"], PASSWORD)
    token = auth.login(runtime, "alice", PASSWORD).session_token

    auth.logout(runtime, token)

    assert auth.resolve_session(runtime, token) is None


# --- the last admin --------------------------------------------------------------------


def admin_id(runtime: Runtime) -> int:
    return user_row(runtime, "admin").id


@pytest.mark.parametrize(
    "change", [{"roles": ["auditor"]}, {"is_active": False}], ids=["demote", "disable"]
)
def test_the_last_admin_cannot_be_removed(runtime: Runtime, change: dict[str, object]) -> None:
    with pytest.raises(Conflict, match="last active admin"):  # noqa: SIM117
        with runtime.operation(system_actor("test")) as op:
            auth.update_user(op, admin_id(runtime), **change)  # type: ignore[arg-type]

    admin = user_row(runtime, "admin")
    assert admin.role_list == ["admin"]
    assert admin.is_active


def test_an_admin_can_be_demoted_when_another_active_admin_remains(runtime: Runtime) -> None:
    make_user(runtime, "second", ["admin"])
    with runtime.operation(system_actor("test")) as op:
        auth.update_user(op, admin_id(runtime), roles=["auditor"])

    assert user_row(runtime, "admin").role_list == ["auditor"]


def test_a_disabled_admin_does_not_count_as_the_remaining_admin(runtime: Runtime) -> None:
    second = make_user(runtime, "second", ["admin"])
    with runtime.operation(system_actor("test")) as op:
        auth.update_user(op, second, is_active=False)

    with pytest.raises(Conflict, match="last active admin"):  # noqa: SIM117
        with runtime.operation(system_actor("test")) as op:
            auth.update_user(op, admin_id(runtime), roles=["noc"])


# --- API tokens ------------------------------------------------------------------------


def test_a_token_secret_is_returned_once_and_only_its_sha256_is_stored(
    runtime: Runtime,
) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])
    token, secret = new_token(runtime, user_id)

    assert secret.startswith("hw_")
    with runtime.db.engine.connect() as conn:
        stored = (
            conn.execute(text("SELECT * FROM api_tokens WHERE id = :i"), {"i": token.id})
            .mappings()
            .one()
        )
        audit_dump = " ".join(
            str(v) for row in conn.execute(text("SELECT * FROM audit_entries")) for v in row
        )
    assert stored["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in stored.values())
    assert secret not in audit_dump
    # Listing tokens later cannot show the secret: nothing holds it any more.
    with runtime.reading() as session:
        listed = auth.list_tokens(session, user_id)
    assert [t.id for t in listed] == [token.id]
    assert secret not in repr(vars(listed[0]))


def test_a_token_resolves_to_its_owner_and_its_roles(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse", "noc"])
    _, narrow = new_token(runtime, user_id, roles=["noc"])
    _, full = new_token(runtime, user_id)

    ident = auth.resolve_token(runtime, narrow)
    assert (ident.user_id, ident.username, ident.roles) == (user_id, "alice", ("noc",))
    assert auth.resolve_token(runtime, full).roles == ("abuse", "noc")


def test_a_token_cannot_carry_a_role_its_owner_lacks(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])

    with pytest.raises(PermissionDenied) as caught:
        new_token(runtime, user_id, roles=["abuse", "admin"])

    assert "admin" in caught.value.message
    assert "abuse" not in caught.value.message


def test_a_token_loses_a_role_its_owner_loses(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse", "noc"])
    _, secret = new_token(runtime, user_id)
    with runtime.operation(system_actor("test")) as op:
        auth.update_user(op, user_id, roles=["noc"])

    assert auth.resolve_token(runtime, secret).roles == ("noc",)


def test_a_revoked_token_is_refused(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])
    token, secret = new_token(runtime, user_id)
    with runtime.operation(system_actor("test")) as op:
        auth.revoke_token(op, token.id, reason="leaked")

    with pytest.raises(AuthenticationFailed, match="revoked or expired"):
        auth.resolve_token(runtime, secret)


def test_an_expired_token_is_refused(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])
    token, secret = new_token(runtime, user_id)
    with runtime.operation(system_actor("test")) as op:
        op.session.get(ApiToken, token.id).expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]

    with pytest.raises(AuthenticationFailed):
        auth.resolve_token(runtime, secret)


def test_a_token_of_a_disabled_user_is_refused(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])
    _, secret = new_token(runtime, user_id)
    with runtime.operation(system_actor("test")) as op:
        auth.update_user(op, user_id, is_active=False)

    with pytest.raises(AuthenticationFailed):
        auth.resolve_token(runtime, secret)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # right prefix, wrong secret
        lambda s: "hw_00000000_" + s.split("_", 2)[2],  # unknown prefix
        lambda s: s.removeprefix("hw_"),  # not a hostwarden token
        lambda s: "",
    ],
    ids=["wrong-secret", "unknown-prefix", "no-marker", "empty"],
)
def test_a_wrong_token_secret_is_refused(runtime: Runtime, mangle: object) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])
    _, secret = new_token(runtime, user_id)

    with pytest.raises(AuthenticationFailed):
        auth.resolve_token(runtime, mangle(secret))  # type: ignore[operator]


@pytest.mark.parametrize("days", [0, -1, 366])
def test_a_token_lifetime_outside_the_allowed_range_is_refused(runtime: Runtime, days: int) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])

    with pytest.raises(ValidationFailed, match="1 to 365 days"):
        new_token(runtime, user_id, days=days)


def test_creating_and_revoking_tokens_is_audited(runtime: Runtime) -> None:
    user_id = make_user(runtime, "alice", ["abuse"])
    token, _ = new_token(runtime, user_id)
    with runtime.operation(system_actor("test")) as op:
        auth.revoke_token(op, token.id, reason="rotated")

    with runtime.reading() as session:
        actions = list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.object_type == "api_token", AuditEntry.object_id == str(token.id))
                .order_by(AuditEntry.seq)
            )
        )
    assert actions == ["token.create", "token.revoke"]
