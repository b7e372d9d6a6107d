"""Alerts: findings deduplicated into alerts, suppressions, feedback (the only place that
writes them); the API, the CLI and the collectors' detection all come through here.

A finding becomes an alert unless an active suppression covers it (its CIDR holds the
address, and its customer and category, when set, match). A finding of the same address,
category and customer as an open alert whose last window ended at most
``[detect] cooldown_minutes`` before the finding's window began updates that alert
instead: the window widens, each count keeps the largest value seen, the severity the
highest, and ``updates`` goes up by one. Every new alert and every update is in the audit
trail as the detector's doing (actor ``detector:<name>``, the summary as the reason), and
every change of one ``take`` commits together, with its deliveries queued
(``delivery.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from hostwarden.core.db import one_of
from hostwarden.core.logs import get_logger
from hostwarden.core.runtime import Actor, Operation, Runtime, new_request_id
from hostwarden.core.timeutil import as_utc, isoformat, utcnow
from hostwarden.detect import delivery
from hostwarden.detect.findings import CATEGORIES, SEVERITIES, Finding, number
from hostwarden.detect.models import ALERT_STATUSES, DetectAlert, DetectSuppression
from hostwarden.errors import Conflict, HostwardenError, NotFound, ValidationFailed
from hostwarden.flows.holds import hold_time
from hostwarden.registry import netaddr
from hostwarden.registry.models import Customer, Instance

log = get_logger("hostwarden.detect")

#: The evidence query starts this long before the alert's first window. Detection puts a
#: record in the window of its *end* time while the flow store is searched by *start*
#: time, so a flow that ended in the window may have begun earlier; 5 minutes covers
#: exporters with an active timeout up to 5 minutes (60 s is the usual advice for
#: detection, e.g. FastNetMon's and pmacct's documentation).
EVIDENCE_LEAD = timedelta(minutes=5)
#: Verdicts an operator may give (``none`` is only the initial state).
VERDICTS = ("true-positive", "false-positive")
_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
#: Namespace of the advisory lock of ``take`` (the audit chain uses 0x68770001, the
#: scheduler's leader lock 0x68770002, the flow segment chain 0x68770003).
_PG_LOCK_NAMESPACE = 0x68770004


@dataclass(frozen=True)
class AlertResult:
    """What became of one finding."""

    action: Literal["created", "updated", "suppressed", "rejected"]
    finding: Finding
    alert_id: int | None = None
    suppression_id: int | None = None
    #: Why a finding was rejected (a detector plugin reported something malformed).
    error: str = ""


# --- findings → alerts ----------------------------------------------------------------------


def _ms_time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _check_finding(finding: Finding) -> str:
    """The finding's address key; ValidationFailed if a detector sent something malformed."""
    if not isinstance(finding.category, str) or not _CATEGORY.match(finding.category):
        raise ValidationFailed(f"category {finding.category!r} is not a category name.")
    if finding.severity not in SEVERITIES:
        raise ValidationFailed(f"severity {finding.severity!r} is not one of the severities.")
    if finding.window_seconds <= 0:
        raise ValidationFailed(f"window of {finding.window_seconds} s is not a window.")
    for name, value in finding.counts.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValidationFailed(f"count {name!r} is {value!r}, not a finite number.")
    return netaddr.address_key(finding.ip)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _higher(a: str, b: str) -> str:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


class AlertSink:
    """Takes the findings of closed windows; one transaction per ``take``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def take(
        self, findings: Sequence[Finding], *, now: datetime | None = None
    ) -> list[AlertResult]:
        if not findings:
            return []
        settings = self.runtime.settings.detect
        moment = utcnow() if now is None else as_utc(now)
        cooldown = timedelta(minutes=settings.cooldown_minutes)
        results: list[AlertResult] = []
        checked: list[tuple[Finding, str]] = []
        for finding in findings:
            try:
                checked.append((finding, _check_finding(finding)))
            except HostwardenError as exc:
                log.error("detect.bad_finding", detector=finding.detector, error=exc.message)
                results.append(AlertResult("rejected", finding, error=exc.message))
        # Oldest window first (a stable sort: the detectors' order within a window), so
        # that a later window of an address updates the alert an earlier one created.
        checked.sort(key=lambda item: item[0].window_start_ms)
        request_id = new_request_id()
        with self.runtime.operation(Actor("detector:engine", ("system",), request_id)) as op:
            _serialise(op.session)
            suppressions = _active_suppressions(op.session, moment)
            customers, instances = _known_holders(op.session, [f for f, _ in checked])
            hits: dict[int, int] = {}
            open_alerts = _OpenAlerts(op.session, checked, cooldown)
            for finding, key in checked:
                hit = _covering(suppressions, key, finding)
                if hit is not None:
                    hits[hit.id] = hits.get(hit.id, 0) + 1
                    results.append(AlertResult("suppressed", finding, suppression_id=hit.id))
                    continue
                op.actor = Actor(
                    f"detector:{finding.detector or 'unnamed'}", ("system",), request_id
                )
                customer_id = finding.customer_id if finding.customer_id in customers else None
                instance_id = finding.instance_id if finding.instance_id in instances else None
                alert = open_alerts.find(key, finding, customer_id)
                if alert is None:
                    alert = _create(op, finding, key, customer_id, instance_id, moment)
                    open_alerts.add(alert)
                    results.append(AlertResult("created", finding, alert_id=alert.id))
                    event = "alert.created"
                else:
                    _update(op, alert, finding, instance_id, moment)
                    results.append(AlertResult("updated", finding, alert_id=alert.id))
                    event = "alert.updated"
                    if not settings.deliver_updates:
                        continue
                delivery.enqueue(op.session, settings, alert.id, event, alert_dict(alert), moment)
            for rule_id, count in hits.items():
                # Added in SQL, so that collector workers counting at once lose nothing.
                op.session.execute(
                    update(DetectSuppression)
                    .where(DetectSuppression.id == rule_id)
                    .values(hits=DetectSuppression.hits + count, last_hit_at=moment)
                )
        return results


def _serialise(session: Session) -> None:
    """One ``take`` at a time per database: otherwise two collector workers could both
    find no open alert for an address and both open one. SQLite's write transactions
    (BEGIN IMMEDIATE) are already one at a time; PostgreSQL takes a transaction-scoped
    advisory lock, keyed by the schema like the audit chain's."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(current_schema()))"),
            {"ns": _PG_LOCK_NAMESPACE},
        )


def _known_holders(session: Session, findings: Sequence[Finding]) -> tuple[set[int], set[int]]:
    """Which of the findings' customer and instance ids the registry knows. An unknown one
    (attribution from a registry that has since changed, a test trace) is stored as none
    rather than failing the foreign key and, with it, every alert of the batch."""
    wanted_c = {f.customer_id for f in findings if f.customer_id is not None}
    wanted_i = {f.instance_id for f in findings if f.instance_id is not None}
    customers = (
        set(session.scalars(select(Customer.id).where(Customer.id.in_(wanted_c))))
        if wanted_c
        else set()
    )
    instances = (
        set(session.scalars(select(Instance.id).where(Instance.id.in_(wanted_i))))
        if wanted_i
        else set()
    )
    for missing in sorted(wanted_c - customers):
        log.warning("detect.unknown_customer", customer_id=missing)
    return customers, instances


def _active_suppressions(session: Session, now: datetime) -> list[DetectSuppression]:
    return list(
        session.scalars(
            select(DetectSuppression).where(_active(now)).order_by(DetectSuppression.id)
        )
    )


def _active(now: datetime) -> ColumnElement[bool]:
    return and_(
        DetectSuppression.removed_at.is_(None),
        or_(DetectSuppression.expires_at.is_(None), DetectSuppression.expires_at > now),
    )


def _covering(
    suppressions: Sequence[DetectSuppression], key: str, finding: Finding
) -> DetectSuppression | None:
    for rule in suppressions:
        if not rule.first_key <= key <= rule.last_key:
            continue
        if rule.customer_id is not None and rule.customer_id != finding.customer_id:
            continue
        if rule.category is not None and rule.category != finding.category:
            continue
        return rule
    return None


class _OpenAlerts:
    """The open alerts a ``take``'s findings may update, read in one query (one per
    finding was most of the time of a window with hundreds of findings), and kept up to
    date as the take creates and updates alerts."""

    #: Addresses per query (SQLite allows 32,766 parameters; PostgreSQL more).
    CHUNK = 500

    def __init__(
        self, session: Session, checked: Sequence[tuple[Finding, str]], cooldown: timedelta
    ) -> None:
        self.cooldown = cooldown
        self.by_key: dict[tuple[str, str, int | None], list[DetectAlert]] = {}
        if not checked:
            return
        keys = sorted({key for _, key in checked})
        categories = sorted({f.category for f, _ in checked})
        earliest = _ms_time(min(f.window_start_ms for f, _ in checked)) - cooldown
        for i in range(0, len(keys), self.CHUNK):
            query = select(DetectAlert).where(
                one_of(session, DetectAlert.ip_key, keys[i : i + self.CHUNK]),
                DetectAlert.category.in_(categories),
                DetectAlert.status == "open",
                DetectAlert.last_seen >= earliest,
            )
            for alert in session.scalars(query):
                self.add(alert)

    def add(self, alert: DetectAlert) -> None:
        self.by_key.setdefault((alert.ip_key, alert.category, alert.customer_id), []).append(alert)

    def find(self, key: str, finding: Finding, customer_id: int | None) -> DetectAlert | None:
        """The open alert of the same address, category and holder whose last window
        ended within the cooldown of the finding's (an address that changed hands is
        another customer's alert), the latest if several."""
        start = _ms_time(finding.window_start_ms)
        end = _ms_time(finding.window_end_ms)
        candidates = [
            alert
            for alert in self.by_key.get((key, finding.category, customer_id), [])
            if alert.status == "open"
            and as_utc(alert.last_seen) >= start - self.cooldown
            # A replayed finding much older than the alert is not part of it either.
            and as_utc(alert.first_seen) <= end + self.cooldown
        ]
        if not candidates:
            return None
        return max(candidates, key=lambda a: (as_utc(a.last_seen), a.id))


def _create(
    op: Operation,
    finding: Finding,
    key: str,
    customer_id: int | None,
    instance_id: int | None,
    now: datetime,
) -> DetectAlert:
    alert = DetectAlert(
        category=finding.category,
        kind=finding.kind[:64],
        severity=finding.severity,
        ip=str(netaddr.parse_address(finding.ip)),
        ip_key=key,
        direction=finding.direction[:16],
        customer_id=customer_id,
        instance_id=instance_id,
        first_seen=_ms_time(finding.window_start_ms),
        last_seen=_ms_time(finding.window_end_ms),
        window_seconds=finding.window_seconds,
        counts=_json({k: number(v) for k, v in finding.counts.items()}),
        top_peers=_json(finding.top_peers),
        top_ports=_json(finding.top_ports),
        summary=finding.summary,
        suggested_action=finding.suggested_action or "",
        detector=finding.detector[:100],
        status="open",
        updates=0,
        feedback="none",
        feedback_by="",
        feedback_reason="",
        closed_by="",
        close_reason="",
        created_at=now,
        updated_at=now,
    )
    op.session.add(alert)
    op.session.flush()
    op.audit(
        "alert.create", "detect_alert", alert.id, after=_audit_view(alert), reason=finding.summary
    )
    return alert


def _update(
    op: Operation, alert: DetectAlert, finding: Finding, instance_id: int | None, now: datetime
) -> None:
    before = _audit_view(alert)
    counts: dict[str, Any] = json.loads(alert.counts)
    for name, value in finding.counts.items():
        new = number(value)
        counts[name] = max(counts[name], new) if name in counts else new
    alert.counts = _json(counts)
    end = _ms_time(finding.window_end_ms)
    newest = end >= as_utc(alert.last_seen)
    alert.first_seen = min(as_utc(alert.first_seen), _ms_time(finding.window_start_ms))
    alert.last_seen = max(as_utc(alert.last_seen), end)
    alert.severity = _higher(alert.severity, finding.severity)
    if newest:
        # What the newest window saw describes the alert as it stands now. A window's
        # close can come after early findings of later windows (it waits for late
        # records); it adds its counts but does not turn the description back.
        alert.kind = finding.kind[:64]
        alert.summary = finding.summary
        alert.top_peers = _json(finding.top_peers)
        alert.top_ports = _json(finding.top_ports)
        alert.window_seconds = finding.window_seconds
    alert.suggested_action = finding.suggested_action or alert.suggested_action
    alert.detector = finding.detector[:100] or alert.detector
    alert.instance_id = alert.instance_id if instance_id is None else instance_id
    alert.updates += 1
    alert.updated_at = now
    op.session.flush()
    op.audit(
        "alert.update",
        "detect_alert",
        alert.id,
        before=before,
        after=_audit_view(alert),
        reason=finding.summary,
    )


#: What the trail keeps of an alert: who, what, when, how much (not the peer lists).
_AUDITED = (
    "category",
    "kind",
    "severity",
    "ip",
    "direction",
    "customer_id",
    "instance_id",
    "first_seen",
    "last_seen",
    "counts",
    "status",
    "updates",
    "feedback",
)


def _audit_view(alert: DetectAlert) -> dict[str, Any]:
    shown = alert_dict(alert)
    return {key: shown[key] for key in _AUDITED}


# --- reading --------------------------------------------------------------------------------


def evidence(alert: DetectAlert) -> dict[str, str]:
    """The flow query that returns the records the alert was raised on."""
    start = as_utc(alert.first_seen) - EVIDENCE_LEAD
    end = as_utc(alert.last_seen)
    query = {"from": isoformat(start), "to": isoformat(end), "ip": alert.ip}
    return {**query, "url": f"/api/v1/flows/records?{urlencode(query)}"}


def alert_dict(alert: DetectAlert) -> dict[str, Any]:
    """An alert as the API, the CLI and the deliveries show it."""
    return {
        "id": alert.id,
        "category": alert.category,
        "kind": alert.kind,
        "severity": alert.severity,
        "ip": alert.ip,
        "direction": alert.direction,
        "customer_id": alert.customer_id,
        "instance_id": alert.instance_id,
        "first_seen": isoformat(alert.first_seen),
        "last_seen": isoformat(alert.last_seen),
        "window_seconds": alert.window_seconds,
        "counts": json.loads(alert.counts),
        "top_peers": json.loads(alert.top_peers),
        "top_ports": json.loads(alert.top_ports),
        "summary": alert.summary,
        "suggested_action": alert.suggested_action or None,
        "detector": alert.detector,
        "status": alert.status,
        "updates": alert.updates,
        "feedback": alert.feedback,
        "feedback_by": alert.feedback_by or None,
        "feedback_reason": alert.feedback_reason or None,
        "closed_at": None if alert.closed_at is None else isoformat(alert.closed_at),
        "closed_by": alert.closed_by or None,
        "close_reason": alert.close_reason or None,
        "created_at": isoformat(alert.created_at),
        "updated_at": isoformat(alert.updated_at),
        "evidence": evidence(alert),
    }


def known_categories(session: Session) -> list[str]:
    """The built-in categories and any a plugin detector has stored alerts under."""
    stored = session.scalars(select(DetectAlert.category).distinct())
    return sorted(set(CATEGORIES) | set(stored))


def check_category(session: Session, value: str) -> str:
    cleaned = value.strip().lower()
    known = known_categories(session)
    if cleaned not in known:
        raise ValidationFailed(
            f"'{value}' is not a detection category.", hint=f"Use one of: {', '.join(known)}."
        )
    return cleaned


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    cleaned = value.strip().lower()
    if cleaned not in allowed:
        raise ValidationFailed(
            f"'{value}' is not a {what}.", hint=f"Use one of: {', '.join(allowed)}."
        )
    return cleaned


def get_alert(session: Session, alert_id: int) -> DetectAlert:
    alert = session.get(DetectAlert, alert_id)
    if alert is None:
        raise NotFound(
            f"no alert with id {alert_id}.",
            hint="List alerts with `hostwarden detect alerts list` or GET /api/v1/alerts.",
        )
    return alert


def list_alerts(
    session: Session,
    *,
    category: Sequence[str] = (),
    severity: Sequence[str] = (),
    status: str | None = None,
    customer_id: int | None = None,
    ip: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[DetectAlert], int]:
    """Alerts matching every filter given (any of a filter's values), newest first, and
    how many match in all. ``ip`` is an address or a CIDR prefix; ``since``/``until``
    keep alerts whose window overlaps them."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValidationFailed(
            f"limit {limit} / offset {offset} is out of range.",
            hint="Ask for 1–1000 alerts at a time from an offset of 0 or more.",
        )
    query = select(DetectAlert).where(
        *_matching(session, category, severity, status, customer_id, ip, since, until)
    )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(DetectAlert.last_seen.desc(), DetectAlert.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def count_by_category(
    session: Session,
    *,
    severity: Sequence[str] = (),
    status: str | None = None,
    customer_id: int | None = None,
    ip: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> dict[str, int]:
    """How many alerts of each category match the other filters (as ``list_alerts``),
    most first: the console's summary above the list."""
    query = (
        select(DetectAlert.category, func.count())
        .where(*_matching(session, (), severity, status, customer_id, ip, since, until))
        .group_by(DetectAlert.category)
    )
    found = [(str(name), int(n)) for name, n in session.execute(query)]
    return dict(sorted(found, key=lambda item: (-item[1], item[0])))


def _matching(
    session: Session,
    category: Sequence[str],
    severity: Sequence[str],
    status: str | None,
    customer_id: int | None,
    ip: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
) -> list[ColumnElement[bool]]:
    """The conditions of the filters of ``list_alerts``; ValidationFailed names a bad one."""
    found: list[ColumnElement[bool]] = []
    if category:
        found.append(DetectAlert.category.in_([check_category(session, c) for c in category]))
    if severity:
        found.append(
            DetectAlert.severity.in_([_choice(s, SEVERITIES, "severity") for s in severity])
        )
    if status:
        found.append(DetectAlert.status == _choice(status, ALERT_STATUSES, "status"))
    if customer_id is not None:
        found.append(DetectAlert.customer_id == customer_id)
    if ip:
        first, last = netaddr.prefix_keys(ip)
        found += [DetectAlert.ip_key >= first, DetectAlert.ip_key <= last]
    if since:
        found.append(DetectAlert.last_seen > hold_time(since, "since"))
    if until:
        found.append(DetectAlert.first_seen < hold_time(until, "until", end=True))
    return found


# --- operator actions -------------------------------------------------------------------------


def _reason(reason: str, doing: str, example: str) -> str:
    cleaned = reason.strip()
    if not cleaned:
        raise ValidationFailed(
            f"{doing} needs a reason.", hint=f"Say why, e.g. '{example}'; it is audited."
        )
    return cleaned


def close_alert(op: Operation, alert_id: int, *, reason: str) -> DetectAlert:
    """Close an alert; a later finding of the same address and category opens a new one."""
    why = _reason(reason, "closing an alert", "customer cleaned the compromised VPS")
    alert = get_alert(op.session, alert_id)
    if alert.status == "closed":
        raise Conflict(
            f"alert {alert_id} was already closed by {alert.closed_by or 'someone'}.",
            hint="A new finding opens a new alert; nothing to do here.",
        )
    before = _audit_view(alert)
    alert.status = "closed"
    alert.closed_at = utcnow()
    alert.closed_by = op.actor.name
    alert.close_reason = why
    op.session.flush()
    op.audit(
        "alert.close", "detect_alert", alert.id, before=before, after=_audit_view(alert), reason=why
    )
    return alert


def record_feedback(op: Operation, alert_id: int, verdict: str, *, reason: str) -> DetectAlert:
    """Say whether the alert was right (``true-positive``) or not (``false-positive``);
    a false positive needs the reason, which is what tuning the detector starts from."""
    cleaned = _choice(verdict, VERDICTS, "verdict")
    why = reason.strip()
    if cleaned == "false-positive":
        why = _reason(reason, "marking an alert a false positive", "nightly backup to our DR site")
    alert = get_alert(op.session, alert_id)
    before = _audit_view(alert)
    alert.feedback = cleaned
    alert.feedback_by = op.actor.name
    alert.feedback_reason = why
    op.session.flush()
    op.audit(
        "alert.feedback",
        "detect_alert",
        alert.id,
        before=before,
        after=_audit_view(alert),
        reason=why,
    )
    return alert


# --- suppressions ---------------------------------------------------------------------------------


def expiry_time(value: datetime | str | None, *, now: datetime | None = None) -> datetime | None:
    """When a suppression ends: None or ``never`` (until removed), a duration from now
    (``30m``, ``12h``, ``7d``, ``2w``), a date (the end of that UTC day) or a moment
    with its zone. It must be in the future."""
    moment = utcnow() if now is None else as_utc(now)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "never"):
            return None
        match = _DURATION.match(text)
        if match:
            at = moment + timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
        else:
            try:
                at = hold_time(value, "expiry", end=True)
            except ValidationFailed:
                raise ValidationFailed(
                    f"expiry '{value}' is neither a duration nor a date-time.",
                    hint="Use e.g. 12h, 7d, 2026-06-01 or 2026-06-01T00:00:00+08:00, or never.",
                ) from None
    else:
        at = hold_time(value, "expiry")
    if at <= moment:
        raise ValidationFailed(
            f"expiry {isoformat(at)} is not in the future.",
            hint="Give a later time, or 'never' for a suppression that lasts until removed.",
        )
    return at


def suppression_dict(rule: DetectSuppression, now: datetime | None = None) -> dict[str, Any]:
    moment = utcnow() if now is None else now
    active = rule.removed_at is None and (
        rule.expires_at is None or as_utc(rule.expires_at) > moment
    )
    return {
        "id": rule.id,
        "cidr": rule.cidr,
        "customer_id": rule.customer_id,
        "category": rule.category,
        "expires_at": None if rule.expires_at is None else isoformat(rule.expires_at),
        "reason": rule.reason,
        "active": active,
        "hits": rule.hits,
        "last_hit_at": None if rule.last_hit_at is None else isoformat(rule.last_hit_at),
        "created_by": rule.created_by,
        "created_at": isoformat(rule.created_at),
        "removed_at": None if rule.removed_at is None else isoformat(rule.removed_at),
        "removed_by": rule.removed_by or None,
        "remove_reason": rule.remove_reason or None,
    }


def add_suppression(
    op: Operation,
    cidr: str,
    *,
    reason: str,
    customer_id: int | None = None,
    category: str | None = None,
    expires: datetime | str | None = None,
) -> DetectSuppression:
    """Keep findings of ``cidr`` (of that customer, of that category, when given) from
    becoming alerts until ``expires`` (None: until removed)."""
    why = _reason(reason, "a suppression", "customer's authorised pentest, ticket 4711")
    network = netaddr.parse_prefix(cidr)
    first, last = netaddr.prefix_keys(network)
    wanted = None if category is None or not category.strip() else category
    kind = None if wanted is None else check_category(op.session, wanted)
    if customer_id is not None and op.session.get(Customer, customer_id) is None:
        raise NotFound(
            f"no customer with id {customer_id}.",
            hint="Check the id with `hostwarden customer list`, or leave the customer out.",
        )
    now = utcnow()
    rule = DetectSuppression(
        cidr=str(network),
        first_key=first,
        last_key=last,
        customer_id=customer_id,
        category=kind,
        expires_at=expiry_time(expires, now=now),
        reason=why,
        hits=0,
        created_by=op.actor.name,
        created_at=now,
        removed_by="",
        remove_reason="",
    )
    op.session.add(rule)
    op.session.flush()
    op.audit(
        "suppression.add", "detect_suppression", rule.id, after=suppression_dict(rule), reason=why
    )
    return rule


def get_suppression(session: Session, suppression_id: int) -> DetectSuppression:
    rule = session.get(DetectSuppression, suppression_id)
    if rule is None:
        raise NotFound(
            f"no suppression with id {suppression_id}.",
            hint="List them with `hostwarden detect suppress list --all`.",
        )
    return rule


def list_suppressions(
    session: Session, *, include_inactive: bool = False, now: datetime | None = None
) -> list[DetectSuppression]:
    """Active suppressions (or every one, removed and expired too), newest first."""
    query = select(DetectSuppression).order_by(DetectSuppression.id.desc())
    if not include_inactive:
        query = query.where(_active(utcnow() if now is None else as_utc(now)))
    return list(session.scalars(query))


def remove_suppression(op: Operation, suppression_id: int, *, reason: str) -> DetectSuppression:
    why = _reason(reason, "removing a suppression", "pentest finished")
    rule = get_suppression(op.session, suppression_id)
    if rule.removed_at is not None:
        raise Conflict(
            f"suppression {suppression_id} was already removed by {rule.removed_by}.",
            hint="Nothing to do; add a new one if findings must be kept out again.",
        )
    before = suppression_dict(rule)
    rule.removed_at = utcnow()
    rule.removed_by = op.actor.name
    rule.remove_reason = why
    op.session.flush()
    op.audit(
        "suppression.remove",
        "detect_suppression",
        rule.id,
        before=before,
        after=suppression_dict(rule),
        reason=why,
    )
    return rule
