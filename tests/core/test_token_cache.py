"""Bearer tokens are resolved from a short cache; revocation still takes effect."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hostwarden.core import auth
from hostwarden.core.models import ApiToken
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.errors import AuthenticationFailed
from tests.conftest import Initialised, make_token, make_user


def token_id(runtime: Runtime) -> int:
    with runtime.reading() as session:
        value = session.scalar(select(ApiToken.id).order_by(ApiToken.id.desc()))
    assert value is not None
    return value


def test_revoking_in_the_same_process_takes_effect_at_once(runtime: Runtime) -> None:
    secret = make_token(runtime, "admin")
    assert auth.resolve_token(runtime, secret).username == "admin"
    with runtime.operation(system_actor("test")) as op:
        auth.revoke_token(op, token_id(runtime))
    with pytest.raises(AuthenticationFailed):
        auth.resolve_token(runtime, secret)


def test_another_process_sees_a_revocation_once_the_cache_entry_expires(
    runtime: Runtime, initialised: Initialised, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = make_token(runtime, "admin")
    other = Runtime.open(initialised.settings)  # stands for a second API process
    try:
        assert auth.resolve_token(other, secret).username == "admin"
        with runtime.operation(system_actor("test")) as op:
            auth.revoke_token(op, token_id(runtime))
        assert auth.resolve_token(other, secret).username == "admin", "cached for a moment"
        monkeypatch.setattr(auth, "TOKEN_CACHE_SECONDS", 0.0)
        with pytest.raises(AuthenticationFailed):
            auth.resolve_token(other, secret)
    finally:
        other.close()


def test_losing_a_role_or_being_disabled_clears_the_cache(runtime: Runtime) -> None:
    make_user(runtime, "ops", ["noc", "abuse"])
    secret = make_token(runtime, "ops")
    assert set(auth.resolve_token(runtime, secret).roles) == {"noc", "abuse"}
    with runtime.operation(system_actor("test")) as op:
        user = auth.get_user_by_name(op.session, "ops")
        auth.update_user(op, user.id, roles=["noc"])
    assert auth.resolve_token(runtime, secret).roles == ("noc",)
    with runtime.operation(system_actor("test")) as op:
        auth.update_user(op, user.id, is_active=False)
    with pytest.raises(AuthenticationFailed):
        auth.resolve_token(runtime, secret)


def test_a_wrong_secret_with_a_known_prefix_is_never_served_from_the_cache(
    runtime: Runtime,
) -> None:
    secret = make_token(runtime, "admin")
    auth.resolve_token(runtime, secret)
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationFailed):
        auth.resolve_token(runtime, forged)


def test_last_use_is_written_at_most_once_a_minute(runtime: Runtime) -> None:
    secret = make_token(runtime, "admin")
    auth.resolve_token(runtime, secret)
    with runtime.reading() as session:
        first = session.scalar(
            select(ApiToken.last_used_at).where(ApiToken.id == token_id(runtime))
        )
    assert first is not None
    runtime.token_cache.clear()
    auth.resolve_token(runtime, secret)
    with runtime.reading() as session:
        again = session.scalar(
            select(ApiToken.last_used_at).where(ApiToken.id == token_id(runtime))
        )
    assert again == first
