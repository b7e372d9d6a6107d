"""What each registry record looks like in a bulk file, and how a row is upserted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.runtime import Actor, Operation, Runtime
from hostwarden.core.timeutil import isoformat
from hostwarden.errors import HostwardenError, ValidationFailed
from hostwarden.registry import bulk, customers, inventory, netaddr
from hostwarden.registry.bulk import Importer, Outcome, RowProblem
from hostwarden.registry.models import (
    CUSTOMER_KINDS,
    INSTANCE_KINDS,
    Customer,
    Instance,
    IpAssignment,
    IpRange,
    MachineRoom,
)

REASON = "bulk import"


def _need(row: dict[str, str], column: str) -> str:
    value = row.get(column, "").strip()
    if not value:
        raise RowProblem(column, "is empty")
    return value


def _one_of(row: dict[str, str], column: str, allowed: tuple[str, ...]) -> str:
    value = _need(row, column).lower()
    if value not in allowed:
        raise RowProblem(column, f"'{value}' is not one of {', '.join(allowed)}")
    return value


def _time(row: dict[str, str], column: str, *, required: bool) -> datetime | None:
    text = row.get(column, "").strip()
    if not text:
        if required:
            raise RowProblem(column, "is empty")
        return None
    try:
        return inventory.aware_time(text, column)
    except HostwardenError as exc:
        raise RowProblem(column, str(exc)) from exc


def _optional(row: dict[str, str], column: str) -> str | None:
    """An absent or empty cell leaves the stored value alone."""
    value = row.get(column, "").strip()
    return value or None


def _customer_by_external(op: Operation, external_id: str, column: str) -> Customer:
    row = op.session.scalar(select(Customer).where(Customer.external_id == external_id))
    if row is None:
        raise RowProblem(column, f"no customer with external id '{external_id}'")
    return row


def _instance_by_external(op: Operation, external_id: str, column: str) -> Instance:
    row = op.session.scalar(select(Instance).where(Instance.external_id == external_id))
    if row is None:
        raise RowProblem(column, f"no instance with external id '{external_id}'")
    return row


def _room_id(op: Operation, name: str | None) -> int | None:
    if not name:
        return None
    room = op.session.scalar(select(MachineRoom).where(MachineRoom.name == name))
    if room is None:
        raise RowProblem("room", f"no machine room named '{name}'")
    return room.id


# --- customers ---------------------------------------------------------------------------


class CustomerImporter:
    """Upsert by external id. Phone numbers are encrypted on the way in; exports leave
    them out, so re-importing an export never overwrites one with a masked copy."""

    kind = "customers"
    columns = ("external_id", "kind", "name", "email", "phone", "address", "risk_tier")
    required = ("external_id", "kind", "name")

    def parse(self, row: dict[str, str]) -> dict[str, Any]:
        parsed: dict[str, Any] = {
            "external_id": _need(row, "external_id"),
            "kind": _one_of(row, "kind", CUSTOMER_KINDS),
            "name": _need(row, "name"),
        }
        for column in ("email", "phone", "address", "risk_tier"):
            parsed[column] = _optional(row, column)
        return parsed

    def apply(self, op: Operation, parsed: dict[str, Any]) -> Outcome:
        existing = op.session.scalar(
            select(Customer).where(Customer.external_id == parsed["external_id"])
        )
        if existing is None:
            customers.create_customer(
                op,
                kind=parsed["kind"],
                name=parsed["name"],
                email=parsed["email"] or "",
                phone=parsed["phone"] or "",
                address=parsed["address"] or "",
                risk_tier=parsed["risk_tier"] or "low",
                external_id=parsed["external_id"],
                reason=REASON,
            )
            return "created"
        if existing.kind != parsed["kind"]:
            raise RowProblem("kind", f"is {existing.kind} in the registry; kind never changes")
        before = (customers.customer_summary(existing), existing.phone_bidx, existing.address)
        customers.update_customer(
            op,
            existing.id,
            name=parsed["name"],
            email=parsed["email"],
            phone=parsed["phone"],
            address=parsed["address"],
            risk_tier=parsed["risk_tier"],
            reason=REASON,
        )
        after = (customers.customer_summary(existing), existing.phone_bidx, existing.address)
        return "unchanged" if after == before else "updated"


def export_customers(session: Session) -> Iterator[dict[str, Any]]:
    for row in session.scalars(select(Customer).order_by(Customer.id)):
        yield {
            "external_id": row.external_id,
            "kind": row.kind,
            "name": row.name,
            "email": row.email,
            "address": row.address,
            "risk_tier": row.risk_tier,
        }


# --- IP ranges ---------------------------------------------------------------------------


class RangeImporter:
    """Create by CIDR; a range already present with the same room and purpose is
    unchanged, and one that differs is reported rather than silently rewritten."""

    kind = "ranges"
    columns = ("cidr", "room", "purpose")
    required = ("cidr",)

    def parse(self, row: dict[str, str]) -> dict[str, Any]:
        cidr = _need(row, "cidr")
        try:
            network = netaddr.parse_prefix(cidr)
        except ValidationFailed as exc:
            raise RowProblem("cidr", exc.message) from exc
        return {
            "cidr": str(network),
            "room": _optional(row, "room"),
            "purpose": row.get("purpose", "").strip(),
        }

    def apply(self, op: Operation, parsed: dict[str, Any]) -> Outcome:
        room_id = _room_id(op, parsed["room"])
        existing = op.session.scalar(select(IpRange).where(IpRange.cidr == parsed["cidr"]))
        if existing is None:
            inventory.create_range(
                op, parsed["cidr"], room_id=room_id, purpose=parsed["purpose"], reason=REASON
            )
            return "created"
        if (existing.room_id, existing.purpose) != (room_id, parsed["purpose"]):
            raise RowProblem("purpose", "differs from the stored range; change it in the API")
        return "unchanged"


def export_ranges(session: Session) -> Iterator[dict[str, Any]]:
    rooms = {r.id: r.name for r in session.scalars(select(MachineRoom))}
    for row in session.scalars(select(IpRange).order_by(IpRange.start_key)):
        yield {"cidr": row.cidr, "room": rooms.get(row.room_id or 0, ""), "purpose": row.purpose}


# --- instances ---------------------------------------------------------------------------


class InstanceImporter:
    """Upsert by external id; a ``terminated_at`` terminates an active instance."""

    kind = "instances"
    columns = (
        "external_id",
        "hostname",
        "kind",
        "customer_external_id",
        "room",
        "created_at",
        "terminated_at",
    )
    required = ("external_id", "hostname", "kind", "customer_external_id")

    def parse(self, row: dict[str, str]) -> dict[str, Any]:
        return {
            "external_id": _need(row, "external_id"),
            "hostname": _need(row, "hostname").lower(),
            "kind": _one_of(row, "kind", INSTANCE_KINDS),
            "customer_external_id": _need(row, "customer_external_id"),
            "room": _optional(row, "room"),
            "created_at": _time(row, "created_at", required=False),
            "terminated_at": _time(row, "terminated_at", required=False),
        }

    def apply(self, op: Operation, parsed: dict[str, Any]) -> Outcome:
        customer = _customer_by_external(op, parsed["customer_external_id"], "customer_external_id")
        existing = op.session.scalar(
            select(Instance).where(Instance.external_id == parsed["external_id"])
        )
        outcome: Outcome = "unchanged"
        if existing is None:
            existing = inventory.create_instance(
                op,
                parsed["hostname"],
                parsed["kind"],
                customer.id,
                room_id=_room_id(op, parsed["room"]),
                external_id=parsed["external_id"],
                created_at=parsed["created_at"],
                reason=REASON,
            )
            outcome = "created"
        else:
            if existing.customer_id != customer.id:
                raise RowProblem(
                    "customer_external_id",
                    "the instance belongs to another customer in the registry",
                )
            if (existing.hostname, existing.kind) != (parsed["hostname"], parsed["kind"]):
                raise RowProblem("hostname", "hostname or kind differs from the registry")
        if parsed["terminated_at"] is not None and existing.status != "terminated":
            inventory.terminate_instance(op, existing.id, at=parsed["terminated_at"], reason=REASON)
            outcome = "updated" if outcome == "unchanged" else outcome
        return outcome


def export_instances(session: Session) -> Iterator[dict[str, Any]]:
    externals = dict(session.execute(select(Customer.id, Customer.external_id)).all())
    rooms = {r.id: r.name for r in session.scalars(select(MachineRoom))}
    for row in session.scalars(select(Instance).order_by(Instance.id)):
        yield {
            "external_id": row.external_id,
            "hostname": row.hostname,
            "kind": row.kind,
            "customer_external_id": externals.get(row.customer_id),
            "room": rooms.get(row.room_id or 0, ""),
            "created_at": isoformat(row.created_at),
            "terminated_at": isoformat(row.terminated_at) if row.terminated_at else "",
        }


# --- IP assignments -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Assignment:
    prefix: str
    customer_external_id: str | None
    instance_external_id: str | None
    valid_from: datetime
    valid_to: datetime | None


class AssignmentImporter:
    """Keyed by (prefix, valid_from): an existing interval is unchanged, or closed when the
    file gives the end it lacked; a new one goes through the overlap checks."""

    kind = "assignments"
    columns = ("ip", "customer_external_id", "instance_external_id", "valid_from", "valid_to")
    required = ("ip", "valid_from")

    def parse(self, row: dict[str, str]) -> _Assignment:
        try:
            prefix = str(netaddr.parse_prefix(_need(row, "ip")))
        except ValidationFailed as exc:
            raise RowProblem("ip", exc.message) from exc
        customer = _optional(row, "customer_external_id")
        instance = _optional(row, "instance_external_id")
        if customer is None and instance is None:
            raise RowProblem("customer_external_id", "give it or instance_external_id")
        start = _time(row, "valid_from", required=True)
        end = _time(row, "valid_to", required=False)
        assert start is not None
        if end is not None and end <= start:
            raise RowProblem("valid_to", "is not after valid_from")
        return _Assignment(prefix, customer, instance, start, end)

    def apply(self, op: Operation, parsed: _Assignment) -> Outcome:
        instance = (
            _instance_by_external(op, parsed.instance_external_id, "instance_external_id")
            if parsed.instance_external_id
            else None
        )
        customer_id = (
            _customer_by_external(op, parsed.customer_external_id, "customer_external_id").id
            if parsed.customer_external_id
            else None
        )
        if instance is not None and customer_id not in (None, instance.customer_id):
            raise RowProblem("instance_external_id", "belongs to another customer")
        holder = customer_id if customer_id is not None else instance.customer_id  # type: ignore[union-attr]
        existing = op.session.scalar(
            select(IpAssignment).where(
                IpAssignment.prefix == parsed.prefix, IpAssignment.valid_from == parsed.valid_from
            )
        )
        if existing is None:
            inventory.assign(
                op,
                parsed.prefix,
                holder,
                instance_id=instance.id if instance else None,
                valid_from=parsed.valid_from,
                valid_to=parsed.valid_to,
                source="import",
                reason=REASON,
            )
            return "created"
        if existing.customer_id != holder:
            raise RowProblem(
                "customer_external_id",
                f"assignment #{existing.id} from that time has another holder",
            )
        if existing.valid_to is None and parsed.valid_to is not None:
            inventory.release(op, existing.id, at=parsed.valid_to, reason=REASON)
            return "updated"
        if existing.valid_to != parsed.valid_to:
            raise RowProblem("valid_to", f"assignment #{existing.id} ends at another time")
        return "unchanged"


def export_assignments(session: Session) -> Iterator[dict[str, Any]]:
    customers_ext = dict(session.execute(select(Customer.id, Customer.external_id)).all())
    instances_ext = dict(session.execute(select(Instance.id, Instance.external_id)).all())
    query = select(IpAssignment).order_by(IpAssignment.start_key, IpAssignment.valid_from)
    for row in session.scalars(query):
        yield {
            "ip": row.prefix,
            "customer_external_id": customers_ext.get(row.customer_id),
            "instance_external_id": instances_ext.get(row.instance_id or 0) or "",
            "valid_from": isoformat(row.valid_from),
            "valid_to": isoformat(row.valid_to) if row.valid_to else "",
        }


IMPORTERS: dict[str, Importer] = {
    "customers": CustomerImporter(),
    "ranges": RangeImporter(),
    "instances": InstanceImporter(),
    "assignments": AssignmentImporter(),
}
#: Columns written by export: everything the importer reads except personal identifiers.
EXPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    kind: tuple(c for c in importer.columns if c != "phone") for kind, importer in IMPORTERS.items()
}
EXPORTERS: dict[str, Callable[[Session], Iterator[dict[str, Any]]]] = {
    "customers": export_customers,
    "ranges": export_ranges,
    "instances": export_instances,
    "assignments": export_assignments,
}
KINDS = tuple(IMPORTERS)


def unknown_kind(kind: str) -> ValidationFailed:
    return ValidationFailed(
        f"'{kind}' is not something to import or export.",
        hint=f"Use one of: {', '.join(KINDS)}.",
    )


def check_kind(kind: str) -> str:
    """``kind`` when it is something to import or export; the CLI and the API refuse
    others alike."""
    if kind not in IMPORTERS:
        raise unknown_kind(kind)
    return kind


def export_chunks(runtime: Runtime, kind: str, fmt: str, actor: Actor) -> Iterator[str]:
    """The export of ``kind`` as text chunks. Kind and format are checked at the call, so
    a caller can refuse before it starts answering; the rows are read lazily, in one
    read-only session that stays open while the chunks are consumed. The export itself is
    audited (who took which records out), before the first row leaves."""
    exporter, columns = EXPORTERS[check_kind(kind)], EXPORT_COLUMNS[kind]
    bulk.check_format(fmt, "export")
    with runtime.operation(actor) as op:
        op.audit(
            "registry.export",
            "registry_export",
            kind,
            after={"kind": kind, "format": fmt},
            reason=f"bulk export of {kind}",
        )

    def chunks() -> Iterator[str]:
        with runtime.reading() as session:
            yield from bulk.write_rows(exporter(session), columns, fmt)

    return chunks()
