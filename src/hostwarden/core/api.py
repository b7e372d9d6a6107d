"""API routes of the core: users, API tokens and the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from hostwarden.api.deps import Principal, require, runtime_of
from hostwarden.core import audit, auth
from hostwarden.core.audit import canonical_json
from hostwarden.core.rbac import Perm
from hostwarden.core.schemas import (
    AuditEntryOut,
    AuditPage,
    PasswordSet,
    RevokeRequest,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserOut,
    UserPatch,
)
from hostwarden.errors import PermissionDenied

users = APIRouter(prefix="/api/v1/users", tags=["users"])
tokens = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])
audit_router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@users.get("")
def list_users(request: Request, who: Principal = require(Perm.USERS_READ)) -> list[UserOut]:
    with runtime_of(request).reading() as session:
        full = who.can(Perm.USERS_WRITE)
        return [UserOut.of(u, full_email=full) for u in auth.list_users(session)]


@users.post("", status_code=201)
def create_user(
    body: UserCreate, request: Request, who: Principal = require(Perm.USERS_WRITE)
) -> UserOut:
    with runtime_of(request).operation(who.actor()) as op:
        user = auth.create_user(
            op,
            body.username,
            body.password,
            body.roles,
            display_name=body.display_name,
            email=body.email,
            locale=body.locale,
            reason=body.reason,
        )
        return UserOut.of(user, full_email=True)


@users.get("/me")
def me(request: Request, who: Principal = require(Perm.ACCOUNT_SELF)) -> UserOut:
    with runtime_of(request).reading() as session:
        return UserOut.of(auth.get_user(session, who.user_id), full_email=True)


@users.get("/{user_id}")
def get_user(user_id: int, request: Request, who: Principal = require(Perm.USERS_READ)) -> UserOut:
    with runtime_of(request).reading() as session:
        return UserOut.of(auth.get_user(session, user_id), full_email=who.can(Perm.USERS_WRITE))


@users.patch("/{user_id}")
def update_user(
    user_id: int, body: UserPatch, request: Request, who: Principal = require(Perm.USERS_WRITE)
) -> UserOut:
    with runtime_of(request).operation(who.actor()) as op:
        user = auth.update_user(
            op,
            user_id,
            display_name=body.display_name,
            email=body.email,
            roles=body.roles,
            locale=body.locale,
            is_active=body.is_active,
            reason=body.reason,
        )
        return UserOut.of(user, full_email=True)


@users.put("/{user_id}/password", status_code=204)
def set_password(
    user_id: int, body: PasswordSet, request: Request, who: Principal = require(Perm.USERS_WRITE)
) -> None:
    with runtime_of(request).operation(who.actor()) as op:
        auth.set_password(op, user_id, body.password, reason=body.reason)


@tokens.get("")
def list_tokens(
    request: Request,
    all_users: bool = Query(False, alias="all", description="Admins: every user's tokens."),
    who: Principal = require(Perm.ACCOUNT_SELF),
) -> list[TokenOut]:
    if all_users and not who.can(Perm.TOKENS_ADMIN):
        raise PermissionDenied("only admins may list other users' tokens.", hint="Drop ?all.")
    with runtime_of(request).reading() as session:
        rows = auth.list_tokens(session, None if all_users else who.user_id)
        return [TokenOut.of(t) for t in rows]


@tokens.post("", status_code=201)
def create_token(
    body: TokenCreate, request: Request, who: Principal = require(Perm.TOKENS_OWN)
) -> TokenCreated:
    owner = body.user_id or who.user_id
    if owner != who.user_id and not who.can(Perm.TOKENS_ADMIN):
        raise PermissionDenied(
            "only admins may make tokens for other users.",
            hint="Leave user_id out to make your own.",
        )
    with runtime_of(request).operation(who.actor()) as op:
        token, secret = auth.create_token(
            op, owner, body.name, roles=body.roles, days=body.days, reason=body.reason
        )
        return TokenCreated(**TokenOut.of(token).model_dump(), token=secret)


@tokens.delete("/{token_id}")
def revoke_token(
    token_id: int,
    request: Request,
    body: RevokeRequest | None = None,
    who: Principal = require(Perm.TOKENS_OWN),
) -> TokenOut:
    runtime = runtime_of(request)
    with runtime.operation(who.actor()) as op:
        token = auth.get_token(op.session, token_id)
        if token.user_id != who.user_id and not who.can(Perm.TOKENS_ADMIN):
            raise PermissionDenied(
                "this token belongs to another user.",
                hint="Only admins may revoke other users' tokens.",
            )
        token = auth.revoke_token(op, token_id, reason=body.reason if body else "")
        return TokenOut.of(token)


@audit_router.get("")
def list_audit(
    request: Request,
    since: datetime | None = Query(None, alias="from"),
    until: datetime | None = Query(None, alias="to"),
    action: str | None = None,
    object_type: str | None = None,
    actor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    who: Principal = require(Perm.AUDIT_READ),
) -> AuditPage:
    with runtime_of(request).reading() as session:
        rows, total = audit.list_entries(
            session,
            since=since,
            until=until,
            action=action,
            object_type=object_type,
            actor=actor,
            limit=limit,
            offset=offset,
        )
        items = [AuditEntryOut(**audit.entry_dict(e)) for e in rows]
    return AuditPage(total=total, limit=limit, offset=offset, items=items)


@audit_router.get("/verify")
def verify_audit(request: Request, who: Principal = require(Perm.AUDIT_READ)) -> dict[str, object]:
    """Walk the whole chain and every signed checkpoint; names the first tampered entry."""
    return audit.verify(runtime_of(request)).as_dict()


@audit_router.get("/export", response_class=StreamingResponse)
def export_audit(
    request: Request,
    since: datetime | None = Query(None, alias="from"),
    until: datetime | None = Query(None, alias="to"),
    who: Principal = require(Perm.AUDIT_READ),
) -> StreamingResponse:
    """JSON lines in chain order, with hashes so the recipient can re-check the links."""
    runtime = runtime_of(request)

    def lines() -> Iterator[str]:
        with runtime.reading() as session:
            for item in audit.iter_export(session, since, until):
                yield canonical_json(item) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
