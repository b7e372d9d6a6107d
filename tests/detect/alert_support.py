"""Findings and registry holders for the alert store's tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from hostwarden.core.config_detect import Severity
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.detect.findings import Finding
from hostwarden.detect.models import DetectAlert, DetectDelivery, DetectSuppression
from hostwarden.registry.models import Customer, Instance

#: 2026-05-04 12:00:00 UTC, a Monday (as tests/detect/support.py).
T0 = 1_777_896_000_000
MINUTE = 60_000


@dataclass(frozen=True)
class Holders:
    """Two customers, each with one instance."""

    acme: int
    acme_vm: int
    globex: int
    globex_vm: int


def make_holders(runtime: Runtime) -> Holders:
    with runtime.operation(system_actor("test")) as op:
        acme = Customer(kind="organisation", name="Acme Hosting Ltd", status="active")
        globex = Customer(kind="organisation", name="Globex VPS", status="active")
        op.session.add_all([acme, globex])
        op.session.flush()
        acme_vm = Instance(hostname="vps-1.acme.example", kind="vps", customer_id=acme.id)
        globex_vm = Instance(hostname="vps-9.globex.example", kind="vps", customer_id=globex.id)
        op.session.add_all([acme_vm, globex_vm])
        op.session.flush()
        return Holders(acme.id, acme_vm.id, globex.id, globex_vm.id)


def finding(
    *,
    ip: str = "203.0.113.5",
    category: str = "scan",
    kind: str = "horizontal",
    severity: Severity = "medium",
    start_ms: int = T0,
    seconds: int = 300,
    customer_id: int | None = None,
    instance_id: int | None = None,
    counts: dict[str, float] | None = None,
    detector: str = "scan",
    summary: str | None = None,
    direction: str = "outbound",
    **more: Any,
) -> Finding:
    return Finding(
        category=category,
        severity=severity,
        ip=ip,
        direction=direction,
        window_start_ms=start_ms,
        window_seconds=seconds,
        customer_id=customer_id,
        instance_id=instance_id,
        kind=kind,
        summary=summary or f"{ip} probed port 22 on 40 hosts in 5 minutes",
        counts=counts if counts is not None else {"hosts": 40, "flows": 120},
        top_peers=[{"ip": "198.51.100.7", "flows": 3}],
        top_ports=[{"port": 22, "flows": 120}],
        detector=detector,
        **more,
    )


def count(runtime: Runtime, model: type[Any]) -> int:
    with runtime.reading() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def alerts_of(runtime: Runtime) -> list[DetectAlert]:
    with runtime.reading() as session:
        return list(session.scalars(select(DetectAlert).order_by(DetectAlert.id)))


def audit_of(runtime: Runtime, prefix: str) -> list[AuditEntry]:
    with runtime.reading() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.startswith(prefix))
                .order_by(AuditEntry.seq)
            )
        )


def stored(runtime: Runtime) -> tuple[int, int, int]:
    """(alerts, suppressions, deliveries) rows."""
    return (
        count(runtime, DetectAlert),
        count(runtime, DetectSuppression),
        count(runtime, DetectDelivery),
    )
