"""Helpers shared by the customer-admission tests: actors by role, counts, a quick customer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from hostwarden.core.db import Base
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Actor, Runtime, new_request_id
from hostwarden.registry import customers

RESIDENT_ID = "11010519491231002X"
OTHER_RESIDENT_ID = "440304200002291236"
USCC = "91350100M000100Y43"
PHONE = "+86 138-1234-5678"
PHONE_DIGITS = "13812345678"


def actor(role: str) -> Actor:
    return Actor(f"{role}-person", (role,), new_request_id())


def second_reviewer() -> Actor:
    """A kyc:review holder who neither admitted the customer nor asked for the
    verification: the second pair of eyes an approval needs."""
    return Actor("second-reviewer", ("sales",), new_request_id())


def count(runtime: Runtime, model: type[Base]) -> int:
    with runtime.reading() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def assert_loaded_and_attributed(runtime: Runtime, assignments: int) -> None:
    """The sample registry files (two customers, ranges and instances) are in, and
    203.0.113.7 changed hands between January and February."""
    from hostwarden.registry import attribution
    from hostwarden.registry.models import Customer, Instance, IpAssignment, IpRange

    loaded = tuple(count(runtime, m) for m in (Customer, IpRange, Instance, IpAssignment))
    assert loaded == (2, 2, 2, assignments)
    january = attribution.attribute(runtime, "203.0.113.7", "2026-01-15T00:00:00+08:00")
    february = attribution.attribute(runtime, "203.0.113.7", "2026-02-15T00:00:00+08:00")
    assert january is not None and february is not None
    assert january.customer_id != february.customer_id


def audit_actions(runtime: Runtime) -> list[str]:
    with runtime.reading() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def audit_text(runtime: Runtime) -> str:
    """Everything the audit trail holds, as one string, to look for leaked values."""
    with runtime.reading() as session:
        rows = session.scalars(select(AuditEntry)).all()
        return "\n".join(f"{e.before} {e.after} {e.reason}" for e in rows)


def new_customer(runtime: Runtime, name: str = "Zhang Wei", **fields: Any) -> int:
    fields.setdefault("kind", "individual")
    with runtime.operation(actor("sales")) as op:
        return customers.create_customer(op, name=name, **fields).id


def add_document(runtime: Runtime, customer_id: int, doc_type: str, number: str) -> int:
    with runtime.operation(actor("sales")) as op:
        return customers.add_document(op, customer_id, doc_type, number).id
