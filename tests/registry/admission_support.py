"""Set-up shared by the admission tests: customers made straight through the ORM (the
customers service is another issue's), and counts of what admission stored."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.registry import commitments
from hostwarden.registry.models import (
    BanEvasionFlag,
    CommitmentAcceptance,
    CommitmentTemplate,
    Customer,
    DocumentScan,
    ProvisioningDecision,
)

TEST_ACTOR = system_actor("test")
#: The smallest file that passes as a scanned PDF.
SIGNED_PDF = b"%PDF-1.4\n% a scanned, signed commitment letter\n%%EOF\n"


def make_customer(
    runtime: Runtime,
    name: str = "杭州示例网络科技有限公司",
    *,
    external_id: str | None = None,
    identity_status: str = "unverified",
    status: str = "pending",
) -> int:
    with runtime.operation(TEST_ACTOR) as op:
        customer = Customer(
            kind="organisation",
            name=name,
            external_id=external_id,
            identity_status=identity_status,
            status=status,
        )
        op.session.add(customer)
        op.session.flush()
        return customer.id


def update_customer(runtime: Runtime, customer_id: int, **values: object) -> None:
    with runtime.operation(TEST_ACTOR) as op:
        customer = op.session.get(Customer, customer_id)
        assert customer is not None
        for key, value in values.items():
            setattr(customer, key, value)


def flag_ban_evasion(runtime: Runtime, customer_id: int, matched_id: int) -> int:
    with runtime.operation(TEST_ACTOR) as op:
        flag = BanEvasionFlag(
            customer_id=customer_id,
            matched_customer_id=matched_id,
            attributes=json.dumps(["phone", "device_fingerprint"]),
        )
        op.session.add(flag)
        op.session.flush()
        return flag.id


def publish_default(runtime: Runtime) -> int:
    with runtime.operation(TEST_ACTOR) as op:
        return commitments.publish(op, commitments.default_letters()).version


def publish_revision(runtime: Runtime, note: str) -> int:
    """A new version: the default letter with one more sentence in each language."""
    texts = {
        locale: commitments.LetterText(text.title, f"{text.body}\n\n{note}")
        for locale, text in commitments.default_letters().items()
    }
    with runtime.operation(TEST_ACTOR) as op:
        return commitments.publish(op, texts).version


def accept_online(runtime: Runtime, customer_id: int, locale: str = "zh-CN") -> int:
    with runtime.operation(TEST_ACTOR) as op:
        row = commitments.accept(
            op, customer_id, locale, ip="203.0.113.7", user_agent="Mozilla/5.0 (test)"
        )
        return row.id


def counts(runtime: Runtime) -> dict[str, int]:
    """How many rows each admission table and the audit trail hold."""
    tables = {
        "templates": CommitmentTemplate,
        "acceptances": CommitmentAcceptance,
        "scans": DocumentScan,
        "decisions": ProvisioningDecision,
        "audit": AuditEntry,
    }
    with runtime.reading() as session:
        return {
            name: session.scalar(select(func.count()).select_from(table)) or 0
            for name, table in tables.items()
        }
