"""Console pages of detection: the alert list, an alert with its traffic and evidence
records, and suppressions. Every change goes through ``detect.alerts``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.api.deps import Principal, page, runtime_of
from hostwarden.core import audit
from hostwarden.core.models import AuditEntry
from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Actor, Runtime
from hostwarden.core.timeutil import as_utc, utcnow
from hostwarden.detect import alerts
from hostwarden.detect.findings import SEVERITIES
from hostwarden.detect.models import ALERT_STATUSES, DetectAlert
from hostwarden.errors import HostwardenError, NotFound, ValidationFailed
from hostwarden.flows import web as flows_web
from hostwarden.flows.holds import hold_time
from hostwarden.flows.store import open_store
from hostwarden.flows.store.retention import epoch_ms
from hostwarden.registry.models import Customer, Instance
from hostwarden.web import i18n
from hostwarden.web.i18n import N_
from hostwarden.web.render import render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
#: The alert page charts its address from this long before the first window to this long
#: after the last: enough ordinary traffic on either side to see where the attack begins
#: and ends, while a 5-minute window still gets bars of 15 s (choose_step).
CHART_MARGIN = timedelta(minutes=30)
#: Entries of the alert's own audit history shown on its page (newest first).
HISTORY_ENTRIES = 50

#: How the console names the built-in categories; a plugin's own shows as stored.
CATEGORY_LABELS = {
    "ddos-out": N_("Outbound DDoS"),
    "ddos-in": N_("Inbound DDoS"),
    "scan": N_("Scanning"),
    "bruteforce": N_("Brute force"),
    "spam": N_("Outbound spam"),
    "mining": N_("Cryptomining"),
    "tunnel": N_("Tunnels and proxies"),
    "threat-intel": N_("Threat intelligence"),
    "anomaly": N_("Anomaly"),
}
SEVERITY_LABELS = {
    "info": N_("info"),
    "low": N_("low"),
    "medium": N_("medium"),
    "high": N_("high"),
    "critical": N_("critical"),
}
STATUS_LABELS = {"open": N_("open"), "closed": N_("closed")}
DIRECTION_LABELS = {"outbound": N_("outbound"), "inbound": N_("inbound")}
FEEDBACK_LABELS = {
    "none": N_("no feedback yet"),
    "true-positive": N_("true positive"),
    "false-positive": N_("false positive"),
}
SUPPRESSION_STATES = {
    "active": N_("in effect"),
    "expired": N_("expired"),
    "removed": N_("removed"),
}
#: Audit actions of an alert as its history names them.
HISTORY_LABELS = {
    "alert.create": N_("raised"),
    "alert.update": N_("updated by a later finding"),
    "alert.close": N_("closed"),
    "alert.feedback": N_("feedback"),
}


def _label(labels: dict[str, str], value: str) -> str:
    return i18n.gettext(labels[value]) if value in labels else value


def _names() -> dict[str, Any]:
    """Translating name functions for the templates (called while rendering, in the
    person's language)."""
    return {
        "category_name": lambda v: _label(CATEGORY_LABELS, v),
        "severity_name": lambda v: _label(SEVERITY_LABELS, v),
        "status_name": lambda v: _label(STATUS_LABELS, v),
        "direction_name": lambda v: _label(DIRECTION_LABELS, v),
        "feedback_name": lambda v: _label(FEEDBACK_LABELS, v),
        "state_name": lambda v: _label(SUPPRESSION_STATES, v),
        "history_name": lambda v: _label(HISTORY_LABELS, v),
    }


# ---------------------------------------------------------------------------------------
# Input


def _customer_id(text: str) -> int | None:
    cleaned = text.strip().lstrip("#")
    if not cleaned:
        return None
    if not cleaned.isdigit():
        raise ValidationFailed(
            f"customer id '{text.strip()}' is not a whole number.",
            hint="Give the customer's number, e.g. 42, or leave it empty.",
        )
    return int(cleaned)


def _alert_id(text: str) -> int:
    # Taken as text so that /alerts/abc is the console's 404 page, not a JSON error.
    if not text.isdigit():
        raise NotFound(
            f"no alert with id '{text}'.", hint="Alert ids are numbers; find it in the list."
        )
    return int(text)


def _check_range(since: str, until: str) -> None:
    """The list's time filters, read as legal holds and flow search read them (a zone is
    required, a bare date is that UTC day); ValidationFailed names the one at fault."""
    start = hold_time(since, "since") if since else None
    end = hold_time(until, "until", end=True) if until else None
    if start is not None and end is not None and end <= start:
        raise ValidationFailed(
            f"'until' ({until}) is not after 'since' ({since}).",
            hint="Give an end later than the start.",
        )


# ---------------------------------------------------------------------------------------
# Alert list


@router.get("/detect")
def detect_home(who: Principal = page(Perm.ALERTS_READ)) -> RedirectResponse:
    """The area's entry in the menu: its first page is the alert list."""
    return RedirectResponse("/alerts", status_code=303)


@dataclass(frozen=True)
class CategoryCount:
    category: str
    count: int
    #: Bar length in percent of the largest category.
    share: float
    link: str


@router.get("/alerts")
def alert_list(
    request: Request,
    category: str = "",
    severity: str = "",
    status: str = "",
    customer: str = "",
    ip: str = "",
    since: str = "",
    until: str = "",
    offset: int = Query(0, ge=0),
    who: Principal = page(Perm.ALERTS_READ),
) -> HTMLResponse:
    form = {
        "category": category.strip(),
        "severity": severity.strip(),
        "status": status.strip(),
        "customer": customer.strip(),
        "ip": ip.strip(),
        "since": since.strip(),
        "until": until.strip(),
    }
    rows: list[dict[str, Any]] = []
    total, counts, error, code = 0, [], None, 200
    with runtime_of(request).reading() as session:
        categories = alerts.known_categories(session)
        try:
            _check_range(form["since"], form["until"])
            filters: dict[str, Any] = {
                "severity": [form["severity"]] if form["severity"] else [],
                "status": form["status"] or None,
                "customer_id": _customer_id(form["customer"]),
                "ip": form["ip"] or None,
                "since": form["since"] or None,
                "until": form["until"] or None,
            }
            found, total = alerts.list_alerts(
                session,
                category=[form["category"]] if form["category"] else [],
                limit=PAGE_SIZE,
                offset=offset,
                **filters,
            )
            rows = [_row(a) for a in found]
            counts = _category_counts(alerts.count_by_category(session, **filters), form)
        except HostwardenError as exc:
            error, code = str(exc), exc.status
    query = urlencode({k: v for k, v in form.items() if v})
    every_category = urlencode({k: v for k, v in form.items() if v and k != "category"})
    return render(
        request,
        "detect/alerts.html",
        {
            "form": form,
            "alerts": rows,
            "total": total,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "query": query,
            "every_category": every_category,
            "counts": counts,
            "categories": categories,
            "severities": SEVERITIES,
            "statuses": ALERT_STATUSES,
            "error": error,
            **_names(),
        },
        principal=who,
        status=code,
    )


def _row(alert: DetectAlert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "category": alert.category,
        "kind": alert.kind,
        "severity": alert.severity,
        "ip": alert.ip,
        "direction": alert.direction,
        "customer_id": alert.customer_id,
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "summary": alert.summary,
        "status": alert.status,
        "updates": alert.updates,
        "feedback": alert.feedback,
    }


def _category_counts(found: dict[str, int], form: dict[str, str]) -> list[CategoryCount]:
    """The summary above the list: each category's count under the other filters, with
    a link that narrows the list to it."""
    most = max(found.values(), default=0)
    others = {k: v for k, v in form.items() if v and k != "category"}
    return [
        CategoryCount(
            name,
            n,
            n * 100 / most if most else 0.0,
            "/alerts?" + urlencode({**others, "category": name}),
        )
        for name, n in found.items()
    ]


# ---------------------------------------------------------------------------------------
# One alert


@dataclass
class Traffic:
    """The alert's address in the flow store: chart around the window, evidence records."""

    chart: flows_web.TrafficChart | None = None
    #: The alert's window on the chart (SVG x and width).
    mark_x: float = 0.0
    mark_width: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False
    #: Query strings of the flow search and of the records download.
    search: str = ""
    downloads: dict[str, str] = field(default_factory=dict)
    evidence_from: str = ""
    evidence_to: str = ""
    error: str | None = None


def _traffic(runtime: Runtime, actor: Actor, alert: DetectAlert) -> Traffic:
    evidence = alerts.evidence(alert)
    wanted = flows_web.parse_filter(evidence["from"], evidence["to"], evidence["ip"])
    around = flows_web.FlowFilter(
        epoch_ms(as_utc(alert.first_seen) - CHART_MARGIN),
        epoch_ms(as_utc(alert.last_seen) + CHART_MARGIN),
        ips=wanted.ips,
    )
    found = Traffic(
        search=urlencode({k: evidence[k] for k in ("from", "to", "ip")}),
        downloads={fmt: flows_web.export_query(wanted, fmt) for fmt in ("csv", "ndjson")},
        evidence_from=evidence["from"],
        evidence_to=evidence["to"],
    )
    try:
        # The listing is on record as a flow search's is, naming the alert it was for.
        flows_web.audit_listing(runtime, actor, wanted, alert=alert.id)
        store = open_store(runtime)
        try:
            found.chart = flows_web.chart_of(store, around)
            found.records, found.more = flows_web.first_records(store, wanted)
        finally:
            store.close()
    except HostwardenError as exc:
        # An unreachable store must not hide the alert and its forms.
        found.error = str(exc)
        return found
    scale = found.chart.plot_width / (around.end_ms - around.start_ms)
    first, last = epoch_ms(as_utc(alert.first_seen)), epoch_ms(as_utc(alert.last_seen))
    found.mark_x = found.chart.left + (first - around.start_ms) * scale
    found.mark_width = max((last - first) * scale, 2.0)
    return found


def _figure(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if name == "bytes":
        return flows_web.human_bytes(value)
    return f"{value:,}"


#: Columns that name a peer or port come first; the figures about it follow.
_NAMING = ("ip", "port", "host", "peer", "service")


def _table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Peers or ports as a table: each key a column (stored JSON sorts them, so the
    naming ones are put first again)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    columns.sort(key=lambda c: (c not in _NAMING, _NAMING.index(c) if c in _NAMING else 0))
    return columns, [[_figure(c, row.get(c, "")) for c in columns] for row in rows]


def _history(session: Session, alert_id: int) -> list[dict[str, Any]]:
    """The alert's own audit entries: raised, updated, closed, feedback. They hold only
    what the alert shows (alerts._audit_view), so whoever reads the alert reads them."""
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.object_type == "detect_alert", AuditEntry.object_id == str(alert_id))
        .order_by(AuditEntry.seq.desc())
        .limit(HISTORY_ENTRIES)
    )
    entries = [audit.entry_dict(e) for e in rows]
    for entry in entries:
        # Creation lists every field: the page above shows them; the reason says enough.
        entry["changes"] = [] if entry["action"] == "alert.create" else audit.changes(entry)
    return entries


def _alert_page(
    request: Request,
    who: Principal,
    alert_id: int,
    *,
    error: str | None = None,
    notice: str | None = None,
    entered: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    runtime = runtime_of(request)
    with runtime.reading() as session:
        alert = alerts.get_alert(session, alert_id)
        view = alerts.alert_dict(alert)
        customer = None if alert.customer_id is None else session.get(Customer, alert.customer_id)
        instance = None if alert.instance_id is None else session.get(Instance, alert.instance_id)
        history = _history(session, alert.id)
    # After the read: the listing's audit entry is a write of its own.
    traffic = _traffic(runtime, who.actor(), alert) if who.can(Perm.FLOWS_READ) else None
    peers = _table(view["top_peers"])
    ports = _table(view["top_ports"])
    suppress = urlencode(
        {
            "cidr": alert.ip,
            "customer": "" if alert.customer_id is None else str(alert.customer_id),
            "category": alert.category,
        }
    )
    return render(
        request,
        "detect/alert.html",
        {
            "a": view,
            "customer": customer,
            "instance": instance,
            "counts": [(k, _figure(k, v)) for k, v in view["counts"].items()],
            "peers": peers,
            "ports": ports,
            "traffic": traffic,
            "history": history,
            "suppress": suppress,
            "error": error,
            "notice": notice,
            "entered": entered or {},
            "first_records": flows_web.FIRST_RECORDS,
            **_names(),
        },
        principal=who,
        status=status,
    )


@router.get("/alerts/suppressions")
def suppression_page(
    request: Request,
    show: str = "active",
    cidr: str = "",
    customer: str = "",
    category: str = "",
    who: Principal = page(Perm.ALERTS_READ),
) -> HTMLResponse:
    """The suppressions; ``cidr``/``customer``/``category`` fill the add form (the alert
    page's "suppress findings like this" link)."""
    entered = {"cidr": cidr, "customer": customer, "category": category}
    return _suppressions(request, who, show=show, entered=entered if cidr else None)


@router.get("/alerts/{alert_id}")
def alert_page(
    request: Request, alert_id: str, who: Principal = page(Perm.ALERTS_READ)
) -> HTMLResponse:
    return _alert_page(request, who, _alert_id(alert_id))


@router.post("/alerts/{alert_id}/close")
def alert_close(
    request: Request,
    alert_id: str,
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.ALERTS_WRITE),
) -> HTMLResponse:
    number = _alert_id(alert_id)
    try:
        with runtime_of(request).operation(who.actor()) as op:
            alerts.close_alert(op, number, reason=reason)
    except HostwardenError as exc:
        return _alert_page(
            request,
            who,
            number,
            error=str(exc),
            entered={"close_reason": reason},
            status=exc.status,
        )
    i18n.set_locale(who.locale)
    return _alert_page(request, who, number, notice=i18n.gettext("Alert closed."))


@router.post("/alerts/{alert_id}/feedback")
def alert_feedback(
    request: Request,
    alert_id: str,
    verdict: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.ALERTS_WRITE),
) -> HTMLResponse:
    number = _alert_id(alert_id)
    try:
        if not verdict.strip():
            raise ValidationFailed(
                "feedback needs a verdict.",
                hint="Choose true positive or false positive.",
            )
        with runtime_of(request).operation(who.actor()) as op:
            alerts.record_feedback(op, number, verdict, reason=reason)
    except HostwardenError as exc:
        return _alert_page(
            request,
            who,
            number,
            error=str(exc),
            entered={"verdict": verdict, "feedback_reason": reason},
            status=exc.status,
        )
    i18n.set_locale(who.locale)
    return _alert_page(request, who, number, notice=i18n.gettext("Feedback recorded."))


# ---------------------------------------------------------------------------------------
# Suppressions


def _suppressions(
    request: Request,
    who: Principal,
    *,
    show: str = "active",
    error: str | None = None,
    notice: str | None = None,
    entered: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    everything = show == "all"
    now = utcnow()
    with runtime_of(request).reading() as session:
        rules = [
            alerts.suppression_dict(r, now)
            for r in alerts.list_suppressions(session, include_inactive=everything, now=now)
        ]
        categories = alerts.known_categories(session)
    for rule in rules:
        rule["state"] = (
            "removed" if rule["removed_at"] else "active" if rule["active"] else "expired"
        )
    return render(
        request,
        "detect/suppressions.html",
        {
            "rules": rules,
            "show": "all" if everything else "active",
            "categories": categories,
            "error": error,
            "notice": notice,
            "entered": entered or {},
            **_names(),
        },
        principal=who,
        status=status,
    )


@router.post("/alerts/suppressions")
def suppression_add(
    request: Request,
    cidr: Annotated[str, Form()] = "",
    customer: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.SUPPRESSIONS_WRITE),
) -> HTMLResponse:
    entered = {
        "cidr": cidr,
        "customer": customer,
        "category": category,
        "expires": expires,
        "reason": reason,
    }
    try:
        if not cidr.strip():
            raise ValidationFailed(
                "a suppression needs an address or CIDR prefix.",
                hint="For example 203.0.113.7 or 203.0.113.0/28.",
            )
        with runtime_of(request).operation(who.actor()) as op:
            rule = alerts.add_suppression(
                op,
                cidr.strip(),
                reason=reason,
                customer_id=_customer_id(customer),
                category=category.strip() or None,
                expires=expires.strip() or None,
            )
            rule_id = rule.id
    except HostwardenError as exc:
        return _suppressions(request, who, error=str(exc), entered=entered, status=exc.status)
    i18n.set_locale(who.locale)
    notice = i18n.gettext("Suppression %(id)s added.", id=rule_id)
    return _suppressions(request, who, notice=notice, status=201)


@router.post("/alerts/suppressions/{suppression_id}/remove")
def suppression_remove(
    request: Request,
    suppression_id: int,
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.SUPPRESSIONS_WRITE),
) -> HTMLResponse:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            alerts.remove_suppression(op, suppression_id, reason=reason)
    except HostwardenError as exc:
        return _suppressions(request, who, error=str(exc), status=exc.status)
    i18n.set_locale(who.locale)
    notice = i18n.gettext("Suppression %(id)s removed.", id=suppression_id)
    return _suppressions(request, who, notice=notice)
