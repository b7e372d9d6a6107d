"""Helpers shared by the inventory and attribution tests: customers made directly through
the ORM (their service belongs to another module) and zone-aware times."""

from __future__ import annotations

from datetime import datetime

from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.registry import inventory
from hostwarden.registry.models import Customer


def at(text: str) -> datetime:
    """A zone-aware moment from ISO text (the zone must be in the text)."""
    return inventory.aware_time(text)


def make_customers(runtime: Runtime, *names: str) -> list[int]:
    with runtime.operation(system_actor("test")) as op:
        rows = [Customer(kind="organisation", name=name, status="active") for name in names]
        op.session.add_all(rows)
        op.session.flush()
        return [row.id for row in rows]


def make_ranges(runtime: Runtime, *cidrs: str) -> None:
    with runtime.operation(system_actor("test")) as op:
        for cidr in cidrs:
            inventory.create_range(op, cidr, purpose="test")
