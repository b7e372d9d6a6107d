"""Detection alerts into the abuse desk: each outbound alert becomes a case event through
the same intake as a report (attribution, allowlists, grouping, playbooks)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select

from hostwarden.cases import service
from hostwarden.cases.models import AbuseEvent
from hostwarden.cases.parsers.base import ParsedReport, ReportEvent
from hostwarden.core.runtime import Runtime
from hostwarden.core.timeutil import as_utc
from hostwarden.detect.models import DetectAlert

#: Detection categories → case categories. Inbound attacks (the customer is the victim)
#: and anomalies (no abuse claimed) open no case.
CATEGORY_OF_ALERT = {
    "ddos-out": "ddos",
    "scan": "scanning",
    "bruteforce": "bruteforce",
    "spam": "spam",
    "mining": "malware",
    "threat-intel": "malware",
    "tunnel": "other",
}
#: Alerts taken per run (the rest the next minute).
BATCH = 500


def _cursor(runtime: Runtime) -> int:
    """The newest alert already taken, read from the last detection event."""
    with runtime.reading() as session:
        row = session.scalars(
            select(AbuseEvent.extra)
            .where(AbuseEvent.source.like("detector:%"))
            .order_by(AbuseEvent.id.desc())
            .limit(1)
        ).first()
    return int(json.loads(row).get("alert_id", 0)) if row else 0


def _event(alert: DetectAlert) -> ReportEvent:
    moment: datetime = as_utc(alert.first_seen)
    return ReportEvent(
        category=CATEGORY_OF_ALERT[alert.category],
        ip=alert.ip,
        port=None,
        domain=None,
        url=None,
        occurred_at=moment,
        zone="UTC",
        reporter=f"detector:{alert.detector or 'engine'}",
        excerpt=alert.summary,
        extra={"alert_id": alert.id, "kind": alert.kind, "severity": alert.severity},
    )


def take_alerts(runtime: Runtime) -> dict[str, int]:
    """Turn outbound alerts newer than the last one taken into case events."""
    after = _cursor(runtime)
    with runtime.reading() as session:
        alerts = session.scalars(
            select(DetectAlert)
            .where(
                DetectAlert.id > after,
                DetectAlert.direction == "outbound",
                DetectAlert.category.in_(list(CATEGORY_OF_ALERT)),
            )
            .order_by(DetectAlert.id)
            .limit(BATCH)
        ).all()
        events = [_event(a) for a in alerts]
    if not events:
        return {"alerts": 0, "events": 0, "duplicates": 0}
    # One "report" per run records the batch; its raw bytes are the alerts as JSON.
    raw = json.dumps(
        [{**e.extra, "ip": e.ip, "at": e.occurred_at.isoformat()} for e in events]
    ).encode()
    item = service.Incoming(
        raw, "detection", reporter="detector:engine", parsed=ParsedReport("detection", events)
    )
    result = service.receive_many(runtime, [item])[0]
    return {"alerts": len(alerts), "events": result.events, "duplicates": result.duplicates}
