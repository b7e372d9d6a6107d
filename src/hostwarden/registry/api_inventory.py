"""API routes of the inventory (rooms, ranges, instances, IP/NAT assignments, domains) and
of attribution: who held an address at a moment."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from hostwarden.api.deps import Principal, require, runtime_of
from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Runtime
from hostwarden.errors import NotFound
from hostwarden.registry import attribution, inventory
from hostwarden.registry.schemas_inventory import (
    AssignmentCreate,
    AssignmentOut,
    AttributionOut,
    DomainCreate,
    DomainOut,
    EndRequest,
    InstanceCreate,
    InstanceOut,
    NatCreate,
    NatOut,
    RangeCreate,
    RangeOut,
    RoomCreate,
    RoomOut,
)

attribution_router = APIRouter(prefix="/api/v1/attribution", tags=["attribution"])
inventory_router = APIRouter(prefix="/api/v1", tags=["inventory"])


@attribution_router.get("")
async def attribute(
    request: Request,
    ip: str = Query(description="IPv4 or IPv6 address."),
    at: str = Query(description="ISO 8601 moment with its zone, e.g. 2026-05-01T10:00:00+08:00."),
    port: int | None = Query(None, description="Port, to resolve a NAT/CGNAT public address."),
    who: Principal = require(Perm.REGISTRY_READ),
) -> AttributionOut:
    """The customer, instance, assignment interval, NAT block and domains that held the
    address at that moment; 404 when nobody did."""
    runtime = runtime_of(request)
    # A lookup on a current index takes microseconds and is answered on the event loop;
    # when the index must be checked or rebuilt (database work), a worker thread does it.
    if attribution.index_is_current(runtime):
        return _attribute(runtime, ip, at, port)
    return await run_in_threadpool(_attribute, runtime, ip, at, port)


def _attribute(runtime: Runtime, ip: str, at: str, port: int | None) -> AttributionOut:
    found = attribution.attribute(runtime, ip, at, port)
    if found is None:
        hint = attribution.nobody_hint(runtime, ip, at, port)
        raise NotFound(f"nobody held {ip.strip()} at {at.strip()}.", hint=hint)
    return AttributionOut(**found.as_dict())


# --- machine rooms and ranges -----------------------------------------------------------


@inventory_router.get("/rooms")
def list_rooms(request: Request, who: Principal = require(Perm.REGISTRY_READ)) -> list[RoomOut]:
    with runtime_of(request).reading() as session:
        return [RoomOut.of(r) for r in inventory.list_rooms(session)]


@inventory_router.post("/rooms", status_code=201)
def create_room(
    body: RoomCreate, request: Request, who: Principal = require(Perm.INVENTORY_WRITE)
) -> RoomOut:
    with runtime_of(request).operation(who.actor()) as op:
        room = inventory.create_room(
            op, body.name, address=body.address, licences=body.licences, reason=body.reason
        )
        return RoomOut.of(room)


@inventory_router.get("/ip-ranges")
def list_ranges(request: Request, who: Principal = require(Perm.REGISTRY_READ)) -> list[RangeOut]:
    with runtime_of(request).reading() as session:
        return [RangeOut.of(r) for r in inventory.list_ranges(session)]


@inventory_router.post("/ip-ranges", status_code=201)
def create_range(
    body: RangeCreate, request: Request, who: Principal = require(Perm.INVENTORY_WRITE)
) -> RangeOut:
    with runtime_of(request).operation(who.actor()) as op:
        row = inventory.create_range(
            op, body.cidr, room_id=body.room_id, purpose=body.purpose, reason=body.reason
        )
        return RangeOut.of(row)


# --- instances --------------------------------------------------------------------------


@inventory_router.get("/instances")
def list_instances(
    request: Request,
    customer_id: int | None = None,
    who: Principal = require(Perm.REGISTRY_READ),
) -> list[InstanceOut]:
    with runtime_of(request).reading() as session:
        rows = inventory.list_instances(session, customer_id=customer_id)
        return [InstanceOut.of(r) for r in rows]


@inventory_router.post("/instances", status_code=201)
def create_instance(
    body: InstanceCreate, request: Request, who: Principal = require(Perm.INVENTORY_WRITE)
) -> InstanceOut:
    with runtime_of(request).operation(who.actor()) as op:
        row = inventory.create_instance(
            op,
            body.hostname,
            body.kind,
            body.customer_id,
            room_id=body.room_id,
            external_id=body.external_id,
            created_at=body.created_at,
            reason=body.reason,
        )
        return InstanceOut.of(row)


@inventory_router.post("/instances/{instance_id}/terminate")
def terminate_instance(
    instance_id: int,
    request: Request,
    body: EndRequest | None = None,
    who: Principal = require(Perm.INVENTORY_WRITE),
) -> InstanceOut:
    """Terminate; the instance's current IP assignments end at the same moment."""
    end = body or EndRequest()
    with runtime_of(request).operation(who.actor()) as op:
        row = inventory.terminate_instance(op, instance_id, at=end.at, reason=end.reason)
        return InstanceOut.of(row)


# --- IP assignments ---------------------------------------------------------------------


@inventory_router.get("/assignments")
def list_assignments(
    request: Request,
    customer_id: int | None = None,
    instance_id: int | None = None,
    ip: str | None = Query(None, description="Only prefixes containing this address/prefix."),
    current: bool = Query(False, description="Only assignments that still hold."),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    who: Principal = require(Perm.REGISTRY_READ),
) -> list[AssignmentOut]:
    with runtime_of(request).reading() as session:
        rows = inventory.list_assignments(
            session,
            customer_id=customer_id,
            instance_id=instance_id,
            ip=ip,
            current_only=current,
            limit=limit,
            offset=offset,
        )
        return [AssignmentOut.of(r) for r in rows]


@inventory_router.post("/assignments", status_code=201)
def create_assignment(
    body: AssignmentCreate, request: Request, who: Principal = require(Perm.INVENTORY_WRITE)
) -> AssignmentOut:
    """Assign an address or prefix to a customer (and instance) from valid_from on; 409
    names the conflicting assignment, and reassign=true ends the current holder's."""
    with runtime_of(request).operation(who.actor()) as op:
        row = inventory.assign(
            op,
            body.prefix,
            body.customer_id,
            instance_id=body.instance_id,
            valid_from=body.valid_from,
            valid_to=body.valid_to,
            reassign=body.reassign,
            source="api",
            reason=body.reason,
        )
        return AssignmentOut.of(row)


@inventory_router.post("/assignments/{assignment_id}/release")
def release_assignment(
    assignment_id: int,
    request: Request,
    body: EndRequest | None = None,
    who: Principal = require(Perm.INVENTORY_WRITE),
) -> AssignmentOut:
    end = body or EndRequest()
    with runtime_of(request).operation(who.actor()) as op:
        row = inventory.release(op, assignment_id, at=end.at, reason=end.reason)
        return AssignmentOut.of(row)


# --- NAT port blocks --------------------------------------------------------------------


@inventory_router.get("/nat-mappings")
def list_nat(
    request: Request,
    public_ip: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    who: Principal = require(Perm.REGISTRY_READ),
) -> list[NatOut]:
    with runtime_of(request).reading() as session:
        rows = inventory.list_nat(session, public_ip=public_ip, limit=limit, offset=offset)
        return [NatOut.of(r) for r in rows]


@inventory_router.post("/nat-mappings", status_code=201)
def create_nat(
    body: NatCreate, request: Request, who: Principal = require(Perm.INVENTORY_WRITE)
) -> NatOut:
    with runtime_of(request).operation(who.actor()) as op:
        row = inventory.create_nat(
            op,
            body.public_ip,
            body.port_start,
            body.port_end,
            body.private_ip,
            valid_from=body.valid_from,
            valid_to=body.valid_to,
            reason=body.reason,
        )
        return NatOut.of(row)


@inventory_router.post("/nat-mappings/{nat_id}/release")
def release_nat(
    nat_id: int,
    request: Request,
    body: EndRequest | None = None,
    who: Principal = require(Perm.INVENTORY_WRITE),
) -> NatOut:
    end = body or EndRequest()
    with runtime_of(request).operation(who.actor()) as op:
        return NatOut.of(inventory.release_nat(op, nat_id, at=end.at, reason=end.reason))


# --- domains ----------------------------------------------------------------------------


@inventory_router.get("/domains")
def list_domains(
    request: Request,
    customer_id: int | None = None,
    name: str | None = None,
    who: Principal = require(Perm.REGISTRY_READ),
) -> list[DomainOut]:
    with runtime_of(request).reading() as session:
        rows = inventory.list_domains(session, customer_id=customer_id, name=name)
        return [DomainOut.of(r) for r in rows]


@inventory_router.post("/domains", status_code=201)
def create_domain(
    body: DomainCreate, request: Request, who: Principal = require(Perm.INVENTORY_WRITE)
) -> DomainOut:
    with runtime_of(request).operation(who.actor()) as op:
        row = inventory.create_domain(
            op,
            body.name,
            body.customer_id,
            instance_id=body.instance_id,
            valid_from=body.valid_from,
            valid_to=body.valid_to,
            reason=body.reason,
        )
        return DomainOut.of(row)


@inventory_router.post("/domains/{domain_id}/release")
def release_domain(
    domain_id: int,
    request: Request,
    body: EndRequest | None = None,
    who: Principal = require(Perm.INVENTORY_WRITE),
) -> DomainOut:
    end = body or EndRequest()
    with runtime_of(request).operation(who.actor()) as op:
        return DomainOut.of(inventory.release_domain(op, domain_id, at=end.at, reason=end.reason))
