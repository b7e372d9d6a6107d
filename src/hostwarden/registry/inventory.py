"""Inventory operations: machine rooms, IP ranges, instances, IP/NAT assignments, domains.

The only place that writes these tables. Every write takes an ``Operation``, records an
audit entry and bumps ``RegistryGeneration``, so attribution indexes in every process
rebuild. Assignments, NAT blocks and domains hold for a half-open interval
``[valid_from, valid_to)``; ``valid_to`` None means "still current". History is never
overwritten: a reassignment closes the previous interval at the new one's start.

Rules for IP assignments (CIDR prefixes either nest or are disjoint):

- the prefix must lie inside one registered ``IpRange``;
- the same prefix can have only one holder at a time;
- a prefix nested in another one during the same time is allowed only for the same
  customer (a /32 of the customer's /29 bound to one instance, say); attribution takes the
  longest prefix that holds at the moment asked;
- ``reassign=True`` closes the current (open, earlier-starting) holders of the prefix or of
  prefixes inside it at the new ``valid_from``; it never splits a larger assignment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, or_, select
from sqlalchemy.orm import Session

from hostwarden.core.runtime import Operation
from hostwarden.core.timeutil import as_utc, isoformat, utcnow
from hostwarden.errors import Conflict, NotFound, ValidationFailed
from hostwarden.registry import netaddr
from hostwarden.registry.models import (
    INSTANCE_KINDS,
    Customer,
    Domain,
    Instance,
    IpAssignment,
    IpRange,
    MachineRoom,
    NatMapping,
    RegistryGeneration,
)

ASSIGNMENT_SOURCES = ("api", "webhook", "import", "console", "cli")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


# --- time -------------------------------------------------------------------------------


def aware_time(value: datetime | str, what: str = "time") -> datetime:
    """A moment with its zone, as UTC. Naive input is refused: "10:00" in Beijing and in
    UTC are eight hours apart, and attribution must not guess which one was meant."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationFailed(
                f"{what} '{value}' is not an ISO 8601 date-time.",
                hint="Write it like 2026-05-01T10:00:00+08:00 (or …Z for UTC).",
            ) from None
        value = parsed
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed(
            f"{what} '{value.isoformat()}' has no time zone, so the moment it names is ambiguous.",
            hint="Add the zone, e.g. 2026-05-01T10:00:00+08:00 or 2026-05-01T02:00:00Z.",
        )
    return as_utc(value)


def _interval(
    valid_from: datetime | str | None, valid_to: datetime | str | None
) -> tuple[datetime, datetime | None]:
    start = utcnow() if valid_from is None else aware_time(valid_from, "valid_from")
    end = None if valid_to is None else aware_time(valid_to, "valid_to")
    if end is not None and end <= start:
        raise ValidationFailed(
            f"valid_to {isoformat(end)} is not after valid_from {isoformat(start)}.",
            hint="An interval must end after it begins; leave valid_to out while it holds.",
        )
    return start, end


def _overlaps_in_time(
    from_col: Any, to_col: Any, start: datetime, end: datetime | None
) -> ColumnElement[bool]:
    """Half-open intervals [from, to) and [start, end) share a moment."""
    cond = or_(to_col.is_(None), to_col > start)
    if end is not None:
        cond = and_(cond, from_col < end)
    return cond


def _span(start: datetime | None, end: datetime | None) -> str:
    first = isoformat(start) if start is not None else "?"
    return f"{first} – {isoformat(end) if end is not None else 'now'}"


# --- generation -------------------------------------------------------------------------


def _begin_write(op: Operation) -> int:
    """Bump the registry generation as the first statement of an inventory write.

    On PostgreSQL the row lock this takes serialises inventory writers until commit, so
    each one's overlap checks see the rows the previous one committed; SQLite's
    ``BEGIN IMMEDIATE`` already serialises. After commit, this process's attribution
    index is told to look again at once."""
    table = RegistryGeneration.__table__
    assert isinstance(table, Table)
    if op.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    stmt = (
        stmt.values(id=1, value=1)
        .on_conflict_do_update(index_elements=["id"], set_={"value": table.c.value + 1})
        .returning(table.c.value)
    )
    value = int(op.session.execute(stmt).scalar_one())
    from hostwarden.registry import attribution

    attribution.refresh_after_commit(op, value)
    return value


def current_generation(session: Session) -> int:
    value = session.scalar(select(RegistryGeneration.value).where(RegistryGeneration.id == 1))
    return int(value or 0)


# --- machine rooms ----------------------------------------------------------------------


def room_summary(room: MachineRoom) -> dict[str, Any]:
    return {
        "name": room.name,
        "address": room.address,
        "licences": [x for x in room.licences.split(",") if x],
    }


def create_room(
    op: Operation,
    name: str,
    *,
    address: str = "",
    licences: Sequence[str] = (),
    reason: str = "",
) -> MachineRoom:
    clean = name.strip()
    if not clean:
        raise ValidationFailed("a machine room needs a name.", hint="For example BJ-YZ-01.")
    cleaned_licences = [x.strip() for x in licences if x.strip()]
    if any("," in x for x in cleaned_licences):
        raise ValidationFailed(
            "a licence number cannot contain a comma.", hint="Give each licence separately."
        )
    _begin_write(op)
    if op.session.scalar(select(MachineRoom.id).where(MachineRoom.name == clean)) is not None:
        raise Conflict(f"a machine room named '{clean}' exists.", hint="Pick another name.")
    room = MachineRoom(name=clean, address=address.strip(), licences=",".join(cleaned_licences))
    op.session.add(room)
    op.session.flush()
    op.audit("room.create", "machine_room", room.id, after=room_summary(room), reason=reason)
    return room


def list_rooms(session: Session) -> list[MachineRoom]:
    return list(session.scalars(select(MachineRoom).order_by(MachineRoom.name)))


def get_room(session: Session, room: int | str) -> MachineRoom:
    """A room by id or by name."""
    if isinstance(room, int) or str(room).isdigit():
        found = session.get(MachineRoom, int(room))
    else:
        found = session.scalar(select(MachineRoom).where(MachineRoom.name == str(room).strip()))
    if found is None:
        raise NotFound(f"no machine room '{room}'.", hint="List rooms to find its id or name.")
    return found


# --- IP ranges --------------------------------------------------------------------------


def range_summary(row: IpRange) -> dict[str, Any]:
    return {"cidr": row.cidr, "room_id": row.room_id, "purpose": row.purpose}


def create_range(
    op: Operation,
    cidr: str,
    *,
    room_id: int | None = None,
    purpose: str = "",
    reason: str = "",
) -> IpRange:
    network = netaddr.parse_prefix(cidr)
    start, end = netaddr.prefix_keys(network)
    _begin_write(op)
    if room_id is not None:
        get_room(op.session, room_id)
    clash = op.session.scalar(
        select(IpRange).where(IpRange.start_key <= end, IpRange.end_key >= start).limit(1)
    )
    if clash is not None:
        raise Conflict(
            f"{network} overlaps the registered range {clash.cidr} (#{clash.id}).",
            hint="Ranges may not overlap; register the part that is not covered yet.",
        )
    row = IpRange(
        cidr=str(network), start_key=start, end_key=end, room_id=room_id, purpose=purpose.strip()
    )
    op.session.add(row)
    op.session.flush()
    op.audit("ip_range.create", "ip_range", row.id, after=range_summary(row), reason=reason)
    return row


def list_ranges(session: Session) -> list[IpRange]:
    return list(session.scalars(select(IpRange).order_by(IpRange.start_key)))


def _require_inside_range(session: Session, network: netaddr.IpNetwork) -> IpRange:
    start, end = netaddr.prefix_keys(network)
    row = session.scalar(
        select(IpRange)
        .where(IpRange.start_key <= start, IpRange.end_key >= end)
        .order_by(IpRange.start_key.desc())
        .limit(1)
    )
    if row is not None:
        return row
    partial = session.scalar(
        select(IpRange).where(IpRange.start_key <= end, IpRange.end_key >= start).limit(1)
    )
    if partial is not None:
        raise ValidationFailed(
            f"{network} lies outside every known range: {partial.cidr} (#{partial.id}) "
            "covers only part of it.",
            hint="Assign the parts inside the range, or register the rest of it first.",
        )
    before = session.scalar(
        select(IpRange).where(IpRange.start_key <= start).order_by(IpRange.start_key.desc())
    )
    after = session.scalar(
        select(IpRange).where(IpRange.start_key > start).order_by(IpRange.start_key)
    )
    target = int(start, 16)

    def distance(r: IpRange) -> int:
        return min(abs(target - int(r.start_key, 16)), abs(target - int(r.end_key, 16)))

    near = min((r for r in (before, after) if r is not None), key=distance, default=None)
    if near is None:
        raise ValidationFailed(
            f"{network} lies outside every known range: no IP range is registered yet.",
            hint="Register the range first with `hostwarden inventory range add CIDR`.",
        )
    raise ValidationFailed(
        f"{network} lies outside every known range; the nearest is {near.cidr} (#{near.id}).",
        hint="Check the address, or register its range with `hostwarden inventory range add`.",
    )


# --- customers and instances ------------------------------------------------------------


def _require_customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"no customer with id {customer_id}.", hint="List customers to find it.")
    return customer


def instance_summary(row: Instance) -> dict[str, Any]:
    return {
        "hostname": row.hostname,
        "external_id": row.external_id,
        "kind": row.kind,
        "room_id": row.room_id,
        "customer_id": row.customer_id,
        "status": row.status,
        "created_at": isoformat(row.created_at),
        "terminated_at": isoformat(row.terminated_at) if row.terminated_at else None,
    }


def create_instance(
    op: Operation,
    hostname: str,
    kind: str,
    customer_id: int,
    *,
    room_id: int | None = None,
    external_id: str | None = None,
    created_at: datetime | str | None = None,
    reason: str = "",
) -> Instance:
    name = hostname.strip().lower().rstrip(".")
    if not name or len(name) > 255:
        raise ValidationFailed("an instance needs a hostname.", hint="For example vps-1024.")
    if kind not in INSTANCE_KINDS:
        raise ValidationFailed(
            f"'{kind}' is not an instance kind.", hint=f"Use one of: {', '.join(INSTANCE_KINDS)}."
        )
    created = utcnow() if created_at is None else aware_time(created_at, "created_at")
    _begin_write(op)
    _require_customer(op.session, customer_id)
    if room_id is not None:
        get_room(op.session, room_id)
    ext = external_id.strip() if external_id else None
    if ext and op.session.scalar(select(Instance.id).where(Instance.external_id == ext)):
        raise Conflict(f"an instance with external id '{ext}' exists.", hint="Ids are unique.")
    row = Instance(
        hostname=name,
        kind=kind,
        customer_id=customer_id,
        room_id=room_id,
        external_id=ext or None,
        status="active",
        created_at=created,
    )
    op.session.add(row)
    op.session.flush()
    op.audit("instance.create", "instance", row.id, after=instance_summary(row), reason=reason)
    return row


def get_instance(session: Session, instance_id: int) -> Instance:
    row = session.get(Instance, instance_id)
    if row is None:
        raise NotFound(f"no instance with id {instance_id}.", hint="List instances to find it.")
    return row


def list_instances(session: Session, *, customer_id: int | None = None) -> list[Instance]:
    query = select(Instance).order_by(Instance.id)
    if customer_id is not None:
        query = query.where(Instance.customer_id == customer_id)
    return list(session.scalars(query))


def terminate_instance(
    op: Operation, instance_id: int, *, at: datetime | str | None = None, reason: str = ""
) -> Instance:
    """Mark an instance terminated and close its open IP assignments at the same moment."""
    when = utcnow() if at is None else aware_time(at, "at")
    _begin_write(op)
    row = get_instance(op.session, instance_id)
    if row.status == "terminated":
        raise Conflict(
            f"instance {instance_id} was terminated at {isoformat(row.terminated_at or when)}.",
            hint="Nothing to do.",
        )
    before = instance_summary(row)
    open_rows = op.session.scalars(
        select(IpAssignment).where(
            IpAssignment.instance_id == instance_id, IpAssignment.valid_to.is_(None)
        )
    )
    for assignment in open_rows:
        _close_assignment(op, assignment, when, f"instance {instance_id} terminated")
    row.status = "terminated"
    row.terminated_at = when
    op.audit(
        "instance.terminate",
        "instance",
        row.id,
        before=before,
        after=instance_summary(row),
        reason=reason,
    )
    return row


# --- IP assignments ---------------------------------------------------------------------


def assignment_summary(row: IpAssignment) -> dict[str, Any]:
    return {
        "prefix": row.prefix,
        "customer_id": row.customer_id,
        "instance_id": row.instance_id,
        "valid_from": isoformat(row.valid_from),
        "valid_to": isoformat(row.valid_to) if row.valid_to else None,
        "source": row.source,
    }


def _describe(row: IpAssignment) -> str:
    holder = f"customer {row.customer_id}"
    if row.instance_id is not None:
        holder += f", instance {row.instance_id}"
    return f"assignment #{row.id} ({row.prefix} → {holder}, {_span(row.valid_from, row.valid_to)})"


def _close_assignment(op: Operation, row: IpAssignment, when: datetime, why: str) -> None:
    if as_utc(row.valid_from) >= when:
        raise Conflict(
            f"{_describe(row)} begins at or after {isoformat(when)}, so it cannot end then.",
            hint="Give a later time, or release that assignment on its own.",
        )
    before = assignment_summary(row)
    row.valid_to = when
    op.audit(
        "ip_assignment.close",
        "ip_assignment",
        row.id,
        before=before,
        after=assignment_summary(row),
        reason=why,
    )


def assign(
    op: Operation,
    prefix: str,
    customer_id: int,
    *,
    instance_id: int | None = None,
    valid_from: datetime | str | None = None,
    valid_to: datetime | str | None = None,
    reassign: bool = False,
    source: str = "api",
    reason: str = "",
) -> IpAssignment:
    """Record that ``customer_id`` (and ``instance_id``) holds ``prefix`` from
    ``valid_from`` (default now) until ``valid_to`` (None: until released)."""
    network = netaddr.parse_prefix(prefix)
    start_key, end_key = netaddr.prefix_keys(network)
    start, end = _interval(valid_from, valid_to)
    if source not in ASSIGNMENT_SOURCES:
        raise ValidationFailed(
            f"'{source}' is not an assignment source.",
            hint=f"Use one of: {', '.join(ASSIGNMENT_SOURCES)}.",
        )
    _begin_write(op)
    _require_customer(op.session, customer_id)
    if instance_id is not None:
        instance = get_instance(op.session, instance_id)
        if instance.customer_id != customer_id:
            raise Conflict(
                f"instance {instance_id} belongs to customer {instance.customer_id}, "
                f"not {customer_id}.",
                hint="Assign the address to the instance's customer.",
            )
        if instance.terminated_at is not None and as_utc(instance.terminated_at) <= start:
            raise Conflict(
                f"instance {instance_id} was terminated at {isoformat(instance.terminated_at)}.",
                hint="Assign the address to a live instance.",
            )
    _require_inside_range(op.session, network)

    overlapping = list(
        op.session.scalars(
            select(IpAssignment)
            .where(
                IpAssignment.start_key <= end_key,
                IpAssignment.end_key >= start_key,
                _overlaps_in_time(IpAssignment.valid_from, IpAssignment.valid_to, start, end),
            )
            .order_by(IpAssignment.valid_from, IpAssignment.id)
        )
    )
    to_close: list[IpAssignment] = []
    for other in overlapping:
        same_prefix = other.start_key == start_key and other.end_key == end_key
        if not same_prefix and other.customer_id == customer_id:
            continue  # a nested refinement for the same customer: longest prefix wins
        same_holder = other.customer_id == customer_id and other.instance_id == instance_id
        inside_new = other.start_key >= start_key and other.end_key <= end_key
        closable = (
            other.valid_to is None
            and as_utc(other.valid_from) < start
            and inside_new
            and not same_holder
        )
        if reassign and closable:
            to_close.append(other)
            continue
        if same_prefix and same_holder and other.valid_to is None:
            raise Conflict(
                f"{network} is already held by this holder: {_describe(other)}.",
                hint="Nothing to do; release it first to record a new interval.",
            )
        if reassign and other.valid_to is None and not inside_new:
            raise Conflict(
                f"{network} lies inside {_describe(other)}.",
                hint="Reassigning never splits a larger assignment: release it and assign "
                "its parts separately.",
            )
        if closable:
            raise Conflict(
                f"{network} is currently held by someone else: {_describe(other)}.",
                hint="Pass reassign (--reassign) to end that assignment at "
                f"{isoformat(start)}, or release it first.",
            )
        raise Conflict(
            f"{network} from {_span(start, end)} overlaps {_describe(other)}.",
            hint="Intervals on the same addresses may not overlap; correct the times, or "
            "release the other assignment at the right moment.",
        )
    for other in to_close:
        _close_assignment(op, other, start, f"reassigned to customer {customer_id}")
    row = IpAssignment(
        prefix=str(network),
        start_key=start_key,
        end_key=end_key,
        customer_id=customer_id,
        instance_id=instance_id,
        valid_from=start,
        valid_to=end,
        source=source,
    )
    op.session.add(row)
    op.session.flush()
    op.audit(
        "ip_assignment.create",
        "ip_assignment",
        row.id,
        after=assignment_summary(row),
        reason=reason,
    )
    return row


def get_assignment(session: Session, assignment_id: int) -> IpAssignment:
    row = session.get(IpAssignment, assignment_id)
    if row is None:
        raise NotFound(
            f"no IP assignment with id {assignment_id}.", hint="List assignments to find it."
        )
    return row


def current_assignment(session: Session, prefix: str) -> IpAssignment:
    """The open assignment of exactly this prefix."""
    network = netaddr.parse_prefix(prefix)
    row = session.scalar(
        select(IpAssignment).where(
            IpAssignment.prefix == str(network), IpAssignment.valid_to.is_(None)
        )
    )
    if row is None:
        raise NotFound(
            f"nobody currently holds {network}.",
            hint="List assignments with --ip to see its history.",
        )
    return row


def release(
    op: Operation, assignment_id: int, *, at: datetime | str | None = None, reason: str = ""
) -> IpAssignment:
    """End an assignment at ``at`` (default now); its history stays."""
    when = utcnow() if at is None else aware_time(at, "at")
    _begin_write(op)
    row = get_assignment(op.session, assignment_id)
    if row.valid_to is not None:
        raise Conflict(
            f"{_describe(row)} has already ended.", hint="Only a current assignment is released."
        )
    _close_assignment(op, row, when, reason or "released")
    return row


def list_assignments(
    session: Session,
    *,
    customer_id: int | None = None,
    instance_id: int | None = None,
    ip: str | None = None,
    current_only: bool = False,
    limit: int = 1000,
    offset: int = 0,
) -> list[IpAssignment]:
    """Assignments, newest first; ``ip`` selects every prefix that contains the address
    (or overlaps the prefix) given."""
    query = select(IpAssignment)
    if customer_id is not None:
        query = query.where(IpAssignment.customer_id == customer_id)
    if instance_id is not None:
        query = query.where(IpAssignment.instance_id == instance_id)
    if ip:
        first, last = netaddr.prefix_keys(ip)
        query = query.where(IpAssignment.start_key <= last, IpAssignment.end_key >= first)
    if current_only:
        query = query.where(IpAssignment.valid_to.is_(None))
    query = query.order_by(IpAssignment.valid_from.desc(), IpAssignment.id.desc())
    return list(session.scalars(query.limit(limit).offset(offset)))


# --- NAT / CGNAT port blocks ------------------------------------------------------------


def nat_summary(row: NatMapping) -> dict[str, Any]:
    return {
        "public_ip": row.public_ip,
        "ports": f"{row.port_start}-{row.port_end}",
        "private_ip": row.private_ip,
        "valid_from": isoformat(row.valid_from),
        "valid_to": isoformat(row.valid_to) if row.valid_to else None,
    }


def _describe_nat(row: NatMapping) -> str:
    return (
        f"NAT mapping #{row.id} ({row.public_ip}:{row.port_start}-{row.port_end} → "
        f"{row.private_ip}, {_span(row.valid_from, row.valid_to)})"
    )


def parse_ports(text: str) -> tuple[int, int]:
    """``40000-40999`` or a single port."""
    first, _, last = text.strip().partition("-")
    try:
        start, end = int(first), int(last or first)
    except ValueError:
        raise ValidationFailed(
            f"'{text}' is not a port or port range.", hint="Write e.g. 40000-40999 or 443."
        ) from None
    return start, end


def create_nat(
    op: Operation,
    public_ip: str,
    port_start: int,
    port_end: int,
    private_ip: str,
    *,
    valid_from: datetime | str | None = None,
    valid_to: datetime | str | None = None,
    reason: str = "",
) -> NatMapping:
    """A port block of a public address translated to a private one for an interval."""
    public = netaddr.parse_address(public_ip)
    private = netaddr.parse_address(private_ip)
    if not 1 <= port_start <= port_end <= 65535:
        raise ValidationFailed(
            f"ports {port_start}-{port_end} are not a range within 1–65535.",
            hint="Give the first and last port of the block, first ≤ last.",
        )
    if public == private:
        raise ValidationFailed(
            "the public and private address are the same.", hint="Check the mapping."
        )
    start, end = _interval(valid_from, valid_to)
    _begin_write(op)
    _require_inside_range(op.session, netaddr.parse_prefix(public))
    clash = op.session.scalar(
        select(NatMapping)
        .where(
            NatMapping.public_ip == str(public),
            NatMapping.port_start <= port_end,
            NatMapping.port_end >= port_start,
            _overlaps_in_time(NatMapping.valid_from, NatMapping.valid_to, start, end),
        )
        .order_by(NatMapping.valid_from)
        .limit(1)
    )
    if clash is not None:
        raise Conflict(
            f"{public}:{port_start}-{port_end} from {_span(start, end)} overlaps "
            f"{_describe_nat(clash)}.",
            hint="Port blocks on one public address may not overlap in time; release the "
            "other block at the right moment first.",
        )
    row = NatMapping(
        public_ip=str(public),
        port_start=port_start,
        port_end=port_end,
        private_ip=str(private),
        valid_from=start,
        valid_to=end,
    )
    op.session.add(row)
    op.session.flush()
    op.audit("nat_mapping.create", "nat_mapping", row.id, after=nat_summary(row), reason=reason)
    return row


def _end_interval(
    op: Operation,
    row: NatMapping | Domain,
    at: datetime | str | None,
    *,
    label: str,
    summary: Callable[[Any], dict[str, Any]],
    object_type: str,
    reason: str,
) -> None:
    """Close a current interval at ``at`` (default now); the row and its history stay."""
    when = utcnow() if at is None else aware_time(at, "at")
    if row.valid_to is not None:
        raise Conflict(f"{label} has already ended.", hint="Nothing to do.")
    if as_utc(row.valid_from) >= when:
        raise Conflict(
            f"{label} begins at or after {isoformat(when)}.", hint="Give a later end time."
        )
    before = summary(row)
    row.valid_to = when
    op.audit(
        f"{object_type}.close",
        object_type,
        row.id,
        before=before,
        after=summary(row),
        reason=reason,
    )


def release_nat(
    op: Operation, nat_id: int, *, at: datetime | str | None = None, reason: str = ""
) -> NatMapping:
    _begin_write(op)
    row = op.session.get(NatMapping, nat_id)
    if row is None:
        raise NotFound(f"no NAT mapping with id {nat_id}.", hint="List NAT mappings to find it.")
    _end_interval(
        op,
        row,
        at,
        label=_describe_nat(row),
        summary=nat_summary,
        object_type="nat_mapping",
        reason=reason,
    )
    return row


def list_nat(
    session: Session, *, public_ip: str | None = None, limit: int = 1000, offset: int = 0
) -> list[NatMapping]:
    query = select(NatMapping)
    if public_ip:
        query = query.where(NatMapping.public_ip == str(netaddr.parse_address(public_ip)))
    query = query.order_by(NatMapping.public_ip, NatMapping.port_start, NatMapping.valid_from)
    return list(session.scalars(query.limit(limit).offset(offset)))


# --- domains ----------------------------------------------------------------------------


def normalise_domain(name: str) -> str:
    """Lower-case, no trailing dot, IDNA (punycode) for non-ASCII names."""
    text = name.strip().rstrip(".").lower()
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    if not ascii_name or not _HOSTNAME.match(ascii_name) or "." not in ascii_name:
        raise ValidationFailed(
            f"'{name}' is not a domain name.", hint="Give a name like example.com or 例子.中国."
        )
    return ascii_name


def domain_summary(row: Domain) -> dict[str, Any]:
    return {
        "name": row.name,
        "customer_id": row.customer_id,
        "instance_id": row.instance_id,
        "valid_from": isoformat(row.valid_from),
        "valid_to": isoformat(row.valid_to) if row.valid_to else None,
    }


def create_domain(
    op: Operation,
    name: str,
    customer_id: int,
    *,
    instance_id: int | None = None,
    valid_from: datetime | str | None = None,
    valid_to: datetime | str | None = None,
    reason: str = "",
) -> Domain:
    clean = normalise_domain(name)
    start, end = _interval(valid_from, valid_to)
    _begin_write(op)
    _require_customer(op.session, customer_id)
    if instance_id is not None:
        instance = get_instance(op.session, instance_id)
        if instance.customer_id != customer_id:
            raise Conflict(
                f"instance {instance_id} belongs to customer {instance.customer_id}, "
                f"not {customer_id}.",
                hint="Give the instance's customer.",
            )
    clash = op.session.scalar(
        select(Domain)
        .where(
            Domain.name == clean,
            _overlaps_in_time(Domain.valid_from, Domain.valid_to, start, end),
        )
        .limit(1)
    )
    if clash is not None:
        raise Conflict(
            f"{clean} is recorded for customer {clash.customer_id} (domain #{clash.id}, "
            f"{_span(clash.valid_from, clash.valid_to)}), which overlaps {_span(start, end)}.",
            hint="Release that record at the moment the domain moved, then add this one.",
        )
    row = Domain(
        name=clean,
        customer_id=customer_id,
        instance_id=instance_id,
        valid_from=start,
        valid_to=end,
    )
    op.session.add(row)
    op.session.flush()
    op.audit("domain.create", "domain", row.id, after=domain_summary(row), reason=reason)
    return row


def release_domain(
    op: Operation, domain_id: int, *, at: datetime | str | None = None, reason: str = ""
) -> Domain:
    _begin_write(op)
    row = op.session.get(Domain, domain_id)
    if row is None:
        raise NotFound(f"no domain record with id {domain_id}.", hint="List domains to find it.")
    _end_interval(
        op,
        row,
        at,
        label=f"domain record #{domain_id}",
        summary=domain_summary,
        object_type="domain",
        reason=reason,
    )
    return row


def list_domains(
    session: Session, *, customer_id: int | None = None, name: str | None = None
) -> list[Domain]:
    query = select(Domain)
    if customer_id is not None:
        query = query.where(Domain.customer_id == customer_id)
    if name:
        query = query.where(Domain.name == normalise_domain(name))
    return list(session.scalars(query.order_by(Domain.name, Domain.valid_from)))
