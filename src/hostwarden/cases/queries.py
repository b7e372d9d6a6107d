"""Reading the abuse desk's tables for the API, the CLI and the console (no writes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hostwarden.cases.models import (
    CASE_STATES,
    OPEN_STATES,
    AbuseCase,
    AbuseEvent,
    AbuseReport,
    AllowlistEntry,
    CaseEntry,
    OutgoingMail,
)
from hostwarden.cases.parsers.base import CATEGORIES
from hostwarden.core.timeutil import as_utc, isoformat_or_none, utcnow
from hostwarden.errors import ValidationFailed
from hostwarden.registry.models import Customer


def case_dict(case: AbuseCase) -> dict[str, Any]:
    return {
        "id": case.id,
        "reference": case.reference,
        "customer_id": case.customer_id,
        "instance_id": case.instance_id,
        "category": case.category,
        "subject": case.subject,
        "state": case.state,
        "events": case.events,
        "duplicates": case.duplicates,
        "first_event_at": isoformat_or_none(case.first_event_at),
        "last_event_at": isoformat_or_none(case.last_event_at),
        "opened_at": isoformat_or_none(case.opened_at),
        "state_changed_at": isoformat_or_none(case.state_changed_at),
        "deadline_at": isoformat_or_none(case.deadline_at),
        "first_action_at": isoformat_or_none(case.first_action_at),
        "mitigated_at": isoformat_or_none(case.mitigated_at),
        "closed_at": isoformat_or_none(case.closed_at),
        "close_reason": case.close_reason,
        "authority": {
            "required": case.authority_required,
            "decided_by": case.authority_decided_by,
            "decided_at": isoformat_or_none(case.authority_decided_at),
            "reported": case.authority_reported,
            "to": case.authority_to,
            "reference": case.authority_reference,
        },
        "customer_locale": case.customer_locale,
    }


def _check(values: Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    for value in values:
        if value not in allowed:
            raise ValidationFailed(
                f"{value!r} is not a {what}.", hint=f"Use one of: {', '.join(allowed)}."
            )
    return list(values)


def list_cases(
    session: Session,
    *,
    states: Sequence[str] = (),
    categories: Sequence[str] = (),
    customer_id: int | None = None,
    older_than_hours: int | None = None,
    subject: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AbuseCase], int]:
    if not 1 <= limit <= 1000:
        raise ValidationFailed(f"limit {limit} is out of range.", hint="Use 1–1000.")
    stmt = select(AbuseCase)
    if states:
        stmt = stmt.where(AbuseCase.state.in_(_check(states, CASE_STATES, "case state")))
    if categories:
        stmt = stmt.where(AbuseCase.category.in_(_check(categories, CATEGORIES, "category")))
    if customer_id is not None:
        stmt = stmt.where(AbuseCase.customer_id == customer_id)
    if older_than_hours is not None:
        stmt = stmt.where(AbuseCase.opened_at <= utcnow() - timedelta(hours=older_than_hours))
    if subject:
        stmt = stmt.where(AbuseCase.subject.contains(subject.strip().lower()))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(AbuseCase.activity_at.desc(), AbuseCase.id.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), total


def event_dict(event: AbuseEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "report_id": event.report_id,
        "case_id": event.case_id,
        "source": event.source,
        "category": event.category,
        "ip": event.ip,
        "port": event.port,
        "domain": event.domain,
        "url": event.url,
        "occurred_at": isoformat_or_none(event.occurred_at),
        "zone": event.zone,
        "excerpt": event.excerpt,
        "customer_id": event.customer_id,
        "instance_id": event.instance_id,
        "status": event.status,
        "reason": event.reason,
    }


def case_detail(session: Session, case: AbuseCase) -> dict[str, Any]:
    """The case, its customer, events, and one timeline of events and entries, oldest
    first. Entries say who may read them: ``internal`` notes never left the desk."""
    events = session.scalars(
        select(AbuseEvent).where(AbuseEvent.case_id == case.id).order_by(AbuseEvent.occurred_at)
    ).all()
    entries = session.scalars(
        select(CaseEntry).where(CaseEntry.case_id == case.id).order_by(CaseEntry.id)
    ).all()
    customer = session.get(Customer, case.customer_id)
    timeline: list[dict[str, Any]] = [
        {
            "at": isoformat_or_none(e.created_at),
            "kind": "event",
            "author": e.source,
            "text": f"{e.category} {e.ip or e.domain}{':' + str(e.port) if e.port else ''} "
            f"at {isoformat_or_none(e.occurred_at)}{' ' + e.url if e.url else ''}",
            "audience": "internal",
            "data": {"event_id": e.id, "report_id": e.report_id, "excerpt": e.excerpt},
        }
        for e in events
    ]
    for entry in entries:
        timeline.append(
            {
                "at": isoformat_or_none(entry.created_at),
                "kind": entry.kind,
                "author": entry.author,
                "text": entry.body,
                "audience": {
                    "to-customer": "customer",
                    "to-reporter": "reporter",
                    "customer-reply": "customer",
                }.get(entry.kind, "internal"),
                "data": json.loads(entry.data or "{}"),
            }
        )
    timeline.sort(key=lambda item: item["at"] or "")
    reports = sorted({e.report_id for e in events if e.report_id is not None})
    return {
        "case": case_dict(case),
        "customer": {"id": customer.id, "name": customer.name} if customer else None,
        "events": [event_dict(e) for e in events],
        "reports": reports,
        "timeline": timeline,
    }


def report_dict(report: AbuseReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "sha256": report.sha256,
        "size": report.size,
        "channel": report.channel,
        "reporter": report.reporter,
        "subject": report.subject,
        "parser": report.parser,
        "status": report.status,
        "events": report.events,
        "duplicates": report.duplicates,
        "notes": json.loads(report.notes or "[]"),
        "received_at": isoformat_or_none(report.received_at),
    }


def work_queue(session: Session, limit: int = 200) -> dict[str, Any]:
    unparsed = session.scalars(
        select(AbuseReport)
        .where(AbuseReport.status == "unparsed")
        .order_by(AbuseReport.id.desc())
        .limit(limit)
    ).all()
    unresolved = session.scalars(
        select(AbuseEvent)
        .where(AbuseEvent.status == "unresolved")
        .order_by(AbuseEvent.id.desc())
        .limit(limit)
    ).all()
    return {
        "unparsed": [report_dict(r) for r in unparsed],
        "unresolved": [event_dict(e) for e in unresolved],
    }


def allowlist(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AllowlistEntry)
        .where(AllowlistEntry.removed_at.is_(None))
        .order_by(AllowlistEntry.id)
    ).all()
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "value": r.value,
            "mode": r.mode,
            "reason": r.reason,
            "hits": r.hits,
            "expires_at": isoformat_or_none(r.expires_at),
            "created_by": r.created_by,
            "created_at": isoformat_or_none(r.created_at),
        }
        for r in rows
    ]


def outbox(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.scalars(select(OutgoingMail).order_by(OutgoingMail.id.desc()).limit(limit))
    return [
        {
            "id": m.id,
            "case_id": m.case_id,
            "recipient": m.recipient,
            "subject": m.subject,
            "status": m.status,
            "attempts": m.attempts,
            "last_error": m.last_error,
            "created_at": isoformat_or_none(m.created_at),
            "sent_at": isoformat_or_none(m.sent_at),
        }
        for m in rows
    ]


def age_buckets(session: Session) -> list[dict[str, Any]]:
    """Open cases by age (the console's case-ageing chart)."""
    edges = [
        (0, 4, "< 4 h"),
        (4, 24, "4–24 h"),
        (24, 72, "1–3 d"),
        (72, 168, "3–7 d"),
        (168, None, "> 7 d"),
    ]
    now = utcnow()
    opened = [
        as_utc(o)
        for o in session.scalars(
            select(AbuseCase.opened_at).where(AbuseCase.state.in_(OPEN_STATES))
        )
    ]
    out = []
    for low, high, label in edges:
        n = sum(
            1
            for o in opened
            if (now - o) >= timedelta(hours=low)
            and (high is None or (now - o) < timedelta(hours=high))
        )
        out.append({"label": label, "count": n})
    return out
