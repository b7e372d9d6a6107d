"""A small provider for the abuse-desk tests: two customers who held 203.0.113.10 one
after the other, a domain, a NAT block, and helpers that build reports and events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from hostwarden.cases import service
from hostwarden.cases.parsers.base import ParsedReport, ReportEvent
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.registry import inventory
from hostwarden.registry.models import Customer

#: Alice held it until 2026-06-01 (UTC), Bob after.
SHARED_IP = "203.0.113.10"
HANDOVER = datetime(2026, 6, 1, tzinfo=UTC)
IN_RANGE_UNHELD = "203.0.113.99"
NOT_OURS = "198.51.100.7"


@dataclass(frozen=True)
class Scene:
    alice: int
    bob: int
    alice_instance: int


def build(runtime: Runtime) -> Scene:
    with runtime.operation(system_actor("test")) as op:
        alice = Customer(
            kind="organisation",
            name="Alice Hosting",
            status="active",
            email="alice@example.com",
            email_norm="alice@example.com",
        )
        bob = Customer(
            kind="organisation",
            name="Bob Shop",
            status="active",
            email="bob@example.net",
            email_norm="bob@example.net",
        )
        op.session.add_all([alice, bob])
        op.session.flush()
        inventory.create_range(op, "203.0.113.0/24", purpose="test")
        vm = inventory.create_instance(
            op, "vm1.example.com", "vps", alice.id, created_at="2026-01-01T00:00:00Z"
        )
        inventory.assign(
            op,
            f"{SHARED_IP}/32",
            alice.id,
            instance_id=vm.id,
            valid_from="2026-01-01T00:00:00Z",
            valid_to=HANDOVER,
        )
        inventory.assign(op, f"{SHARED_IP}/32", bob.id, valid_from=HANDOVER)
        inventory.create_domain(op, "shop.example.com", alice.id, valid_from="2026-01-01T00:00:00Z")
        return Scene(alice.id, bob.id, vm.id)


def event(
    when: str = "2026-05-01T10:00:00+08:00",
    *,
    ip: str | None = SHARED_IP,
    category: str = "spam",
    reporter: str = "abuse@reporter.example.org",
    port: int | None = None,
    domain: str | None = None,
    url: str | None = None,
    excerpt: str = "Received: from vm1 [203.0.113.10]",
) -> ReportEvent:
    moment = datetime.fromisoformat(when)
    return ReportEvent(
        category=category,
        ip=ip,
        port=port,
        domain=domain,
        url=url,
        occurred_at=moment,
        zone=moment.strftime("%z"),
        reporter=reporter,
        excerpt=excerpt,
    )


def take(
    runtime: Runtime,
    *events: ReportEvent,
    raw: bytes | None = None,
    reporter: str = "abuse@reporter.example.org",
) -> service.ReceiveResult:
    """One report carrying ``events`` (already parsed), as the API would send it."""
    body = raw if raw is not None else repr(events).encode()
    item = service.Incoming(
        body, "api", reporter=reporter, parsed=ParsedReport("test", list(events))
    )
    return service.receive_many(runtime, [item])[0]


def mail(
    text: str,
    *,
    subject: str = "Abuse from your network",
    sender: str = "abuse@reporter.example.org",
    charset: str = "utf-8",
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "abuse@localhost"
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 5, 1, 3, 0, tzinfo=UTC))
    message["Message-ID"] = "<r1@reporter.example.org>"
    message.set_content(text, charset=charset)
    # CRLF line ends, as mail travels over SMTP.
    return message.as_bytes(policy=policy.SMTP)
