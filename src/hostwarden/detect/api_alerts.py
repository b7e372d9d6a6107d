"""API routes of detection: alerts (list, show, close, feedback) and suppressions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from hostwarden.api.deps import Principal, require, runtime_of
from hostwarden.core.rbac import Perm
from hostwarden.detect import alerts

alerts_router = APIRouter(prefix="/api/v1/alerts", tags=["detection"])
suppressions_router = APIRouter(prefix="/api/v1/suppressions", tags=["detection"])


class Evidence(BaseModel):
    """The stored flow records the alert was raised on: GET ``url`` (needs flows:read)."""

    from_: str = Field(alias="from")
    to: str
    ip: str
    url: str

    model_config = ConfigDict(populate_by_name=True)


class AlertOut(BaseModel):
    id: int
    category: str
    kind: str
    severity: str
    ip: str
    direction: str
    customer_id: int | None
    instance_id: int | None
    #: Start of the first window and end of the last window that found it (UTC).
    first_seen: str
    last_seen: str
    window_seconds: int
    counts: dict[str, float]
    top_peers: list[dict[str, Any]]
    top_ports: list[dict[str, Any]]
    summary: str
    suggested_action: str | None
    detector: str
    status: str
    updates: int
    feedback: str
    feedback_by: str | None
    feedback_reason: str | None
    closed_at: str | None
    closed_by: str | None
    close_reason: str | None
    created_at: str
    updated_at: str
    evidence: Evidence


class AlertPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AlertOut]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: true-positive or false-positive.
    verdict: str
    #: Required for a false positive: what the traffic really was.
    reason: str = ""


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class SuppressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: An address or CIDR prefix (host bits zero).
    cidr: str
    customer_id: int | None = None
    #: None: every category.
    category: str | None = None
    #: A duration (12h, 7d), a date, an ISO 8601 moment with zone, or "never"/null.
    expires: str | None = None
    reason: str = ""


class SuppressionOut(BaseModel):
    id: int
    cidr: str
    customer_id: int | None
    category: str | None
    expires_at: str | None
    reason: str
    active: bool
    hits: int
    last_hit_at: str | None
    created_by: str
    created_at: str
    removed_at: str | None
    removed_by: str | None
    remove_reason: str | None


def _alert(alert: Any) -> AlertOut:
    return AlertOut.model_validate(alerts.alert_dict(alert))


def _suppression(rule: Any) -> SuppressionOut:
    return SuppressionOut.model_validate(alerts.suppression_dict(rule))


@alerts_router.get("")
def list_alerts(
    request: Request,
    category: list[str] = Query([], description="Category (repeat for several)."),
    severity: list[str] = Query([], description="info, low, medium, high, critical (repeat)."),
    status: str | None = Query(None, description="open or closed."),
    customer: int | None = Query(None, description="Customer id."),
    ip: str | None = Query(None, description="Address or CIDR prefix."),
    since: str | None = Query(None, description="Alerts seen after this (ISO 8601 or date)."),
    until: str | None = Query(None, description="Alerts seen before this (ISO 8601 or date)."),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    who: Principal = require(Perm.ALERTS_READ),
) -> AlertPage:
    """Alerts matching every filter given, newest first."""
    with runtime_of(request).reading() as session:
        rows, total = alerts.list_alerts(
            session,
            category=category,
            severity=severity,
            status=status,
            customer_id=customer,
            ip=ip,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        items = [_alert(a) for a in rows]
    return AlertPage(total=total, limit=limit, offset=offset, items=items)


@alerts_router.get("/{alert_id}")
def get_alert(
    alert_id: int, request: Request, who: Principal = require(Perm.ALERTS_READ)
) -> AlertOut:
    """One alert, with ``evidence.url``: the flow records query it was raised on."""
    with runtime_of(request).reading() as session:
        return _alert(alerts.get_alert(session, alert_id))


@alerts_router.post("/{alert_id}/feedback")
def feedback(
    alert_id: int, body: FeedbackIn, request: Request, who: Principal = require(Perm.ALERTS_WRITE)
) -> AlertOut:
    """Mark the alert a true or a false positive (audited; a false positive needs the
    reason)."""
    with runtime_of(request).operation(who.actor()) as op:
        return _alert(alerts.record_feedback(op, alert_id, body.verdict, reason=body.reason))


@alerts_router.post("/{alert_id}/close")
def close(
    alert_id: int, body: CloseIn, request: Request, who: Principal = require(Perm.ALERTS_WRITE)
) -> AlertOut:
    """Close the alert (audited, with the reason); a later finding opens a new one."""
    with runtime_of(request).operation(who.actor()) as op:
        return _alert(alerts.close_alert(op, alert_id, reason=body.reason))


@suppressions_router.get("")
def list_suppressions(
    request: Request,
    include_all: bool = Query(False, alias="all", description="Also removed and expired ones."),
    who: Principal = require(Perm.ALERTS_READ),
) -> list[SuppressionOut]:
    with runtime_of(request).reading() as session:
        return [
            _suppression(r) for r in alerts.list_suppressions(session, include_inactive=include_all)
        ]


@suppressions_router.post("", status_code=201)
def add_suppression(
    body: SuppressionIn, request: Request, who: Principal = require(Perm.SUPPRESSIONS_WRITE)
) -> SuppressionOut:
    """Keep findings of a prefix (of one customer, of one category) from becoming alerts
    until it expires or is removed; they are counted in ``hits``."""
    with runtime_of(request).operation(who.actor()) as op:
        rule = alerts.add_suppression(
            op,
            body.cidr,
            reason=body.reason,
            customer_id=body.customer_id,
            category=body.category,
            expires=body.expires,
        )
        return _suppression(rule)


@suppressions_router.delete("/{suppression_id}")
def remove_suppression(
    suppression_id: int,
    request: Request,
    reason: str = Query("", description="Required: why; recorded in the audit trail."),
    who: Principal = require(Perm.SUPPRESSIONS_WRITE),
) -> SuppressionOut:
    """End a suppression (kept, with who removed it and why)."""
    with runtime_of(request).operation(who.actor()) as op:
        return _suppression(alerts.remove_suppression(op, suppression_id, reason=reason))
