"""Pydantic shapes of the core's API input and output."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hostwarden.core.masking import mask_email
from hostwarden.core.models import ApiToken, User


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    email: str
    roles: list[str]
    locale: str
    is_active: bool
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User, *, full_email: bool = False) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            email=user.email if full_email or not user.email else mask_email(user.email),
            roles=user.role_list,
            locale=user.locale,
            is_active=user.is_active,
            locked_until=user.locked_until,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    password: str
    roles: list[str] = Field(min_length=1)
    display_name: str = ""
    email: str = ""
    locale: str = "en"
    reason: str = ""


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: str | None = None
    email: str | None = None
    roles: list[str] | None = None
    locale: str | None = None
    is_active: bool | None = None
    reason: str = ""


class PasswordSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str
    reason: str = ""


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    user_id: int
    username: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenOut:
        return cls(
            id=token.id,
            name=token.name,
            prefix=token.prefix,
            user_id=token.user_id,
            username=token.user.username,
            roles=token.role_list,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
            last_used_at=token.last_used_at,
        )


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    roles: list[str] | None = None
    days: int = 90
    user_id: int | None = Field(None, description="Admins only: make the token for this user.")
    reason: str = ""


class TokenCreated(TokenOut):
    token: str = Field(description="The secret; shown once, store it now.")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class AuditEntryOut(BaseModel):
    seq: int
    ts: str
    actor: str
    role: str
    action: str
    object_type: str
    object_id: str
    before: Any
    after: Any
    reason: str
    request_id: str
    prev_hash: str
    entry_hash: str


class AuditPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AuditEntryOut]


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
