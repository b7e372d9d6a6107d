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
