"""Pydantic shapes of the inventory and attribution API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hostwarden.registry.models import (
    Domain,
    Instance,
    IpAssignment,
    IpRange,
    MachineRoom,
    NatMapping,
)

# Times arrive as text so that a value without a zone gets hostwarden's own message
# ("add the zone, e.g. +08:00") instead of being read as UTC or local time.
TimeText = str


class RoomCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    address: str = ""
    licences: list[str] = Field(default_factory=list)
    reason: str = ""


class RoomOut(BaseModel):
    id: int
    name: str
    address: str
    licences: list[str]
    created_at: datetime

    @classmethod
    def of(cls, row: MachineRoom) -> RoomOut:
        return cls(
            id=row.id,
            name=row.name,
            address=row.address,
            licences=[x for x in row.licences.split(",") if x],
            created_at=row.created_at,
        )


class RangeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cidr: str
    room_id: int | None = None
    purpose: str = ""
    reason: str = ""


class RangeOut(BaseModel):
    id: int
    cidr: str
    room_id: int | None
    purpose: str
    created_at: datetime

    @classmethod
    def of(cls, row: IpRange) -> RangeOut:
        return cls(
            id=row.id,
            cidr=row.cidr,
            room_id=row.room_id,
            purpose=row.purpose,
            created_at=row.created_at,
        )


class InstanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hostname: str
    kind: str
    customer_id: int
    room_id: int | None = None
    external_id: str | None = None
    created_at: TimeText | None = None
    reason: str = ""


class InstanceOut(BaseModel):
    id: int
    hostname: str
    external_id: str | None
    kind: str
    room_id: int | None
    customer_id: int
    status: str
    created_at: datetime
    terminated_at: datetime | None

    @classmethod
    def of(cls, row: Instance) -> InstanceOut:
        return cls(
            id=row.id,
            hostname=row.hostname,
            external_id=row.external_id,
            kind=row.kind,
            room_id=row.room_id,
            customer_id=row.customer_id,
            status=row.status,
            created_at=row.created_at,
            terminated_at=row.terminated_at,
        )


class EndRequest(BaseModel):
    """Ends something at a moment (default now)."""

    model_config = ConfigDict(extra="forbid")
    at: TimeText | None = None
    reason: str = ""


class AssignmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = Field(description="An address or CIDR prefix, IPv4 or IPv6.")
    customer_id: int
    instance_id: int | None = None
    valid_from: TimeText | None = Field(None, description="ISO 8601 with a zone; default now.")
    valid_to: TimeText | None = None
    reassign: bool = Field(
        False, description="End the current holder's interval at valid_from instead of refusing."
    )
    reason: str = ""


class AssignmentOut(BaseModel):
    id: int
    prefix: str
    customer_id: int
    instance_id: int | None
    valid_from: datetime
    valid_to: datetime | None
    source: str
    created_at: datetime

    @classmethod
    def of(cls, row: IpAssignment) -> AssignmentOut:
        return cls(
            id=row.id,
            prefix=row.prefix,
            customer_id=row.customer_id,
            instance_id=row.instance_id,
            valid_from=row.valid_from,
            valid_to=row.valid_to,
            source=row.source,
            created_at=row.created_at,
        )


class NatCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_ip: str
    port_start: int
    port_end: int
    private_ip: str
    valid_from: TimeText | None = None
    valid_to: TimeText | None = None
    reason: str = ""


class NatOut(BaseModel):
    id: int
    public_ip: str
    port_start: int
    port_end: int
    private_ip: str
    valid_from: datetime
    valid_to: datetime | None

    @classmethod
    def of(cls, row: NatMapping) -> NatOut:
        return cls(
            id=row.id,
            public_ip=row.public_ip,
            port_start=row.port_start,
            port_end=row.port_end,
            private_ip=row.private_ip,
            valid_from=row.valid_from,
            valid_to=row.valid_to,
        )


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    customer_id: int
    instance_id: int | None = None
    valid_from: TimeText | None = None
    valid_to: TimeText | None = None
    reason: str = ""


class DomainOut(BaseModel):
    id: int
    name: str
    customer_id: int
    instance_id: int | None
    valid_from: datetime
    valid_to: datetime | None

    @classmethod
    def of(cls, row: Domain) -> DomainOut:
        return cls(
            id=row.id,
            name=row.name,
            customer_id=row.customer_id,
            instance_id=row.instance_id,
            valid_from=row.valid_from,
            valid_to=row.valid_to,
        )


class AttributionOut(BaseModel):
    """Who held the address (and port) at the moment asked."""

    ip: str
    at: str
    port: int | None
    customer_id: int
    instance_id: int | None
    assignment: dict[str, Any]
    nat: dict[str, Any] | None
    domains: list[str]
