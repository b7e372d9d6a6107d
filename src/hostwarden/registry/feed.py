"""What each change-feed event does to the inventory (see docs/webhooks.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hostwarden.core.runtime import Operation
from hostwarden.errors import NotFound, ValidationFailed
from hostwarden.registry import inventory
from hostwarden.registry.models import Customer, Instance, MachineRoom
from hostwarden.registry.webhooks import Handler


def _text(data: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise ValidationFailed(f"data.{key} is missing.", hint="See docs/webhooks.md.")
        return ""
    if not isinstance(value, str):
        raise ValidationFailed(f"data.{key} must be a string.")
    return value.strip()


def _customer(op: Operation, external_id: str) -> Customer:
    row = op.session.scalar(select(Customer).where(Customer.external_id == external_id))
    if row is None:
        raise NotFound(
            f"no customer with external id '{external_id}'.",
            hint="Create or import the customer before sending its instances.",
        )
    return row


def _instance(op: Operation, external_id: str) -> Instance:
    row = op.session.scalar(select(Instance).where(Instance.external_id == external_id))
    if row is None:
        raise NotFound(
            f"no instance with external id '{external_id}'.",
            hint="Send instance.created first.",
        )
    return row


def instance_created(op: Operation, data: dict[str, Any]) -> dict[str, Any]:
    customer = _customer(op, _text(data, "customer_external_id"))
    room_name = _text(data, "room", required=False)
    room_id = None
    if room_name:
        room = op.session.scalar(select(MachineRoom).where(MachineRoom.name == room_name))
        if room is None:
            raise NotFound(f"no machine room named '{room_name}'.")
        room_id = room.id
    row = inventory.create_instance(
        op,
        _text(data, "hostname"),
        _text(data, "kind"),
        customer.id,
        room_id=room_id,
        external_id=_text(data, "external_id"),
        created_at=_text(data, "at"),
        reason="change feed: instance.created",
    )
    return {"instance_id": row.id}


def ip_assigned(op: Operation, data: dict[str, Any]) -> dict[str, Any]:
    instance_ext = _text(data, "instance_external_id", required=False)
    instance = _instance(op, instance_ext) if instance_ext else None
    customer_ext = _text(data, "customer_external_id", required=instance is None)
    customer_id = _customer(op, customer_ext).id if customer_ext else None
    if instance is not None and customer_id is not None and instance.customer_id != customer_id:
        raise ValidationFailed(
            f"instance '{instance_ext}' belongs to another customer than '{customer_ext}'.",
            hint="Send one of the two, or the matching pair.",
        )
    reassign = data.get("reassign", False)
    if not isinstance(reassign, bool):
        raise ValidationFailed("data.reassign must be true or false.")
    row = inventory.assign(
        op,
        _text(data, "ip"),
        customer_id if customer_id is not None else instance.customer_id,  # type: ignore[union-attr]
        instance_id=instance.id if instance is not None else None,
        valid_from=_text(data, "at"),
        reassign=reassign,
        source="webhook",
        reason="change feed: ip.assigned",
    )
    return {"assignment_id": row.id}


def ip_released(op: Operation, data: dict[str, Any]) -> dict[str, Any]:
    row = inventory.current_assignment(op.session, _text(data, "ip"))
    inventory.release(op, row.id, at=_text(data, "at"), reason="change feed: ip.released")
    return {"assignment_id": row.id}


def instance_terminated(op: Operation, data: dict[str, Any]) -> dict[str, Any]:
    row = _instance(op, _text(data, "instance_external_id"))
    inventory.terminate_instance(
        op, row.id, at=_text(data, "at"), reason="change feed: instance.terminated"
    )
    return {"instance_id": row.id}


HANDLERS: dict[str, Handler] = {
    "instance.created": instance_created,
    "ip.assigned": ip_assigned,
    "ip.released": ip_released,
    "instance.terminated": instance_terminated,
}
