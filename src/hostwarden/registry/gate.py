"""The provisioning gate: may this customer get a new server? Every check is evaluated
and every decision is stored and audited, so the provider can show why it said yes.

The checks, each reported with ok and a detail whatever the others say:

- ``identity``: the customer's real-name identity is verified.
- ``commitment``: the customer accepted the current version of the commitment letter.
- ``status``: the account may receive new servers. ``pending`` and ``active`` may;
  ``restricted`` may not (a restricted customer keeps what it has but gets nothing new
  until the restriction is lifted), nor may ``suspended`` or ``terminated``.
- ``ban_evasion``: no open ban-evasion flag says this may be a banned customer returning,
  and no confirmed one says it is. Confirming a flag also restricts the account, but the
  confirmed flag keeps the gate shut even if the restriction is lifted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.runtime import Operation
from hostwarden.core.timeutil import isoformat, utcnow
from hostwarden.errors import NotFound, ValidationFailed
from hostwarden.registry import commitments, customers
from hostwarden.registry.models import BanEvasionFlag, Customer, ProvisioningDecision

#: Customer statuses that may receive new servers.
PROVISIONABLE_STATUSES = ("pending", "active")
CHECKS = ("identity", "commitment", "status", "ban_evasion")


@dataclass(frozen=True)
class Reason:
    check: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    decision_id: int
    customer_id: int
    allowed: bool
    reasons: list[Reason]

    @property
    def failed(self) -> list[Reason]:
        return [r for r in self.reasons if not r.ok]

    def as_dict(self) -> dict[str, object]:
        return {
            "decision_id": self.decision_id,
            "customer_id": self.customer_id,
            "allowed": self.allowed,
            "reasons": [asdict(r) for r in self.reasons],
        }


def find_customer(
    session: Session, customer_id: int | None = None, external_id: str | None = None
) -> Customer:
    """A customer by hostwarden id or by the billing system's external id (exactly one)."""
    if (customer_id is None) == (external_id is None):
        raise ValidationFailed(
            "name the customer by customer_id or by external_id (one of them).",
            hint="customer_id is hostwarden's number; external_id the billing system's.",
        )
    if customer_id is not None:
        return customers.get_customer(session, customer_id)
    assert external_id is not None
    customer = session.scalar(select(Customer).where(Customer.external_id == external_id.strip()))
    if customer is None:
        raise NotFound(
            f"no customer with external id '{external_id}'.",
            hint="Check the billing system's id, or import the customer first.",
        )
    return customer


def customer_from_text(session: Session, text: str, *, external: bool = False) -> Customer:
    """What an operator types: digits are hostwarden's id, anything else (or any text
    with ``external``) the billing system's external id."""
    value = text.strip()
    if not external and value.isdigit():
        return find_customer(session, customer_id=int(value))
    return find_customer(session, external_id=value)


def _identity(customer: Customer) -> Reason:
    if customer.identity_status == "verified":
        return Reason("identity", True, "real-name identity verified")
    return Reason(
        "identity",
        False,
        f"real-name identity is {customer.identity_status}; it must be verified first",
    )


def _commitment(session: Session, customer: Customer) -> Reason:
    current = commitments.current_version(session)
    if current is None:
        return Reason(
            "commitment",
            False,
            "no commitment letter has been published; publish one and have the customer accept it",
        )
    latest = commitments.latest_acceptance(session, customer.id)
    if latest is None:
        return Reason(
            "commitment", False, f"has not accepted the commitment letter (version {current})"
        )
    if latest.version != current:
        return Reason(
            "commitment",
            False,
            f"accepted version {latest.version}, but version {current} is current; "
            "must accept it again",
        )
    return Reason(
        "commitment",
        True,
        f"accepted version {current} on {isoformat(latest.accepted_at)} ({latest.method})",
    )


def _status(customer: Customer) -> Reason:
    if customer.status in PROVISIONABLE_STATUSES:
        return Reason("status", True, f"account is {customer.status}")
    return Reason(
        "status", False, f"account is {customer.status}; no new servers until that is lifted"
    )


def _describe_flags(flags: list[BanEvasionFlag]) -> str:
    return "; ".join(
        f"#{f.id} matches customer {f.matched_customer_id} on "
        f"{', '.join(json.loads(f.attributes)) or 'unknown attributes'}"
        for f in flags
    )


def _ban_evasion(session: Session, customer: Customer) -> Reason:
    flags = list(
        session.scalars(
            select(BanEvasionFlag)
            .where(
                BanEvasionFlag.customer_id == customer.id,
                BanEvasionFlag.status.in_(("open", "confirmed")),
            )
            .order_by(BanEvasionFlag.id)
        )
    )
    if not flags:
        return Reason("ban_evasion", True, "no open or confirmed ban-evasion flag")
    confirmed = [f for f in flags if f.status == "confirmed"]
    if confirmed:
        return Reason(
            "ban_evasion",
            False,
            f"ban evasion confirmed by flag(s) {_describe_flags(confirmed)}; "
            "no new servers for a banned customer returning",
        )
    return Reason(
        "ban_evasion",
        False,
        f"open ban-evasion flag(s) {_describe_flags(flags)}; clear or confirm them first",
    )


def evaluate(session: Session, customer: Customer) -> list[Reason]:
    """Every check, in CHECKS order; none is skipped because another failed."""
    return [
        _identity(customer),
        _commitment(session, customer),
        _status(customer),
        _ban_evasion(session, customer),
    ]


def check(
    op: Operation,
    customer_id: int | None = None,
    *,
    external_id: str | None = None,
    reason: str = "",
) -> Decision:
    """Decide whether the customer may be provisioned now; store and audit the decision."""
    customer = find_customer(op.session, customer_id, external_id)
    reasons = evaluate(op.session, customer)
    allowed = all(r.ok for r in reasons)
    payload = [asdict(r) for r in reasons]
    row = ProvisioningDecision(
        customer_id=customer.id,
        allowed=allowed,
        reasons=json.dumps(payload, ensure_ascii=False),
        decided_at=utcnow(),
        requested_by=op.actor.name[:200],
    )
    op.session.add(row)
    op.session.flush()
    op.audit(
        "provisioning.decision",
        "provisioning_decision",
        row.id,
        after={"customer_id": customer.id, "allowed": allowed, "reasons": payload},
        reason=reason,
    )
    return Decision(row.id, customer.id, allowed, reasons)


def decision_of(row: ProvisioningDecision) -> Decision:
    reasons = [Reason(**item) for item in json.loads(row.reasons)]
    return Decision(row.id, row.customer_id, row.allowed, reasons)


def list_decisions(
    session: Session, customer_id: int, *, limit: int = 100
) -> list[ProvisioningDecision]:
    """A customer's decisions, newest first."""
    customers.get_customer(session, customer_id)
    return list(
        session.scalars(
            select(ProvisioningDecision)
            .where(ProvisioningDecision.customer_id == customer_id)
            .order_by(ProvisioningDecision.id.desc())
            .limit(limit)
        )
    )
