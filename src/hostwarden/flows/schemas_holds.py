"""Pydantic shapes of the legal-hold API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hostwarden.flows.models import LegalHold


class LegalHoldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: ISO 8601 with its zone (2026-05-01T10:00:00+08:00), or a date meaning that UTC day.
    start: str
    #: As ``start``; a date holds that whole day. None: everything from ``start`` on.
    end: str | None = None
    #: Addresses or CIDR prefixes, matched on either side of a flow.
    ips: list[str] = Field(default_factory=list)
    customer_ids: list[int] = Field(default_factory=list)
    reason: str = Field(min_length=1)
    case_ref: str = ""


class LegalHoldRelease(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1)


class LegalHoldOut(BaseModel):
    id: int
    case_ref: str
    reason: str
    start_at: datetime
    end_at: datetime | None
    ips: list[str]
    customer_ids: list[int]
    created_by: str
    created_at: datetime
    active: bool
    released_at: datetime | None
    released_by: str
    release_reason: str

    @classmethod
    def of(cls, hold: LegalHold) -> LegalHoldOut:
        return cls(
            id=hold.id,
            case_ref=hold.case_ref,
            reason=hold.reason,
            start_at=hold.start_at,
            end_at=hold.end_at,
            ips=hold.prefix_list,
            customer_ids=hold.customer_list,
            created_by=hold.created_by,
            created_at=hold.created_at,
            active=hold.released_at is None,
            released_at=hold.released_at,
            released_by=hold.released_by,
            release_reason=hold.release_reason,
        )
