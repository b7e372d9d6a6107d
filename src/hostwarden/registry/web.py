"""Console pages of the registry: customers, admission review, inventory, attribution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from hostwarden.api.deps import Principal, page, runtime_of
from hostwarden.core.rbac import Perm
from hostwarden.core.timeutil import utcnow
from hostwarden.errors import HostwardenError
from hostwarden.registry import attribution, commitments, customers, gate, inventory, verification
from hostwarden.registry.models import CUSTOMER_STATUSES, IpAssignment
from hostwarden.web.i18n import N_
from hostwarden.web.render import render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/customers")
def customer_list(
    request: Request,
    status: str = "",
    id_number: str = "",
    phone: str = "",
    offset: int = Query(0, ge=0),
    who: Principal = page(Perm.REGISTRY_READ),
) -> HTMLResponse:
    runtime = runtime_of(request)
    error = None
    searched = bool(id_number.strip() or phone.strip())
    with runtime.reading() as session:
        try:
            if searched:
                rows = customers.search_customers(
                    session, runtime.vault, id_number=id_number, phone=phone
                )
                total = len(rows)
            else:
                rows, total = customers.list_customers(
                    session, status=status or None, limit=PAGE_SIZE, offset=offset
                )
        except HostwardenError as exc:
            rows, total, error = [], 0, str(exc)
    return render(
        request,
        "registry/customers.html",
        {
            "customers": rows,
            "total": total,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "statuses": CUSTOMER_STATUSES,
            "status": status,
            "searched": searched,
            "error": error,
        },
        principal=who,
    )


@router.get("/customers/review")
def review_queue(request: Request, who: Principal = page(Perm.REGISTRY_READ)) -> HTMLResponse:
    return _review(request, who)


def _review(
    request: Request,
    who: Principal,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    runtime = runtime_of(request)
    with runtime.reading() as session:
        pending = verification.list_requests(session, status="pending")
        applicants = {
            r.customer_id: customers.get_customer(session, r.customer_id) for r in pending
        }
        names = {customer_id: c.name for customer_id, c in applicants.items()}
        # Requests this reviewer may not approve (four eyes): the button is shown disabled.
        barred = {
            r.id
            for r in pending
            if verification.four_eyes_conflict(
                runtime.settings, r, applicants[r.customer_id], who.username
            )
        }
        flags = customers.list_flags(session, status="open")
    return render(
        request,
        "registry/review.html",
        {
            "pending": pending,
            "names": names,
            "barred": barred,
            "flags": flags,
            "error": error,
            "notice": notice,
        },
        principal=who,
        status=status,
    )


@router.post("/customers/review/{request_id}")
def review_decide(
    request: Request,
    request_id: int,
    decision: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.KYC_REVIEW),
) -> HTMLResponse:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            if decision == "approve":
                verification.approve(op, request_id, reason)
            elif decision == "reject":
                verification.reject(op, request_id, reason)
            else:
                raise HostwardenError(f"'{decision}' is not a decision.", hint="Approve or reject.")
    except HostwardenError as exc:
        return _review(request, who, error=str(exc), status=exc.status)
    return _review(request, who, notice=f"#{request_id}: {decision}d.")


@dataclass(frozen=True)
class Bar:
    """One assignment drawn on the IP-history timeline (SVG coordinates in percent)."""

    prefix: str
    row: int
    x: float
    width: float
    current: bool
    label: str


def timeline(rows: list[IpAssignment], now: datetime) -> tuple[list[Bar], list[str], int]:
    """Bars for each prefix's holding intervals, on one time axis from the first
    assignment to now; the axis labels are the start, middle and end dates."""
    if not rows:
        return [], [], 0
    start = min(r.valid_from for r in rows)
    span = max((now - start).total_seconds(), 1.0)
    prefixes = sorted({r.prefix for r in rows})
    bars = []
    for r in rows:
        end = r.valid_to or now
        x = (r.valid_from - start).total_seconds() / span * 100
        width = max((end - r.valid_from).total_seconds() / span * 100, 0.6)
        bars.append(
            Bar(
                r.prefix,
                prefixes.index(r.prefix),
                x,
                min(width, 100 - x),
                r.valid_to is None,
                f"{r.prefix}: {r.valid_from:%Y-%m-%d %H:%M} → "
                f"{r.valid_to.strftime('%Y-%m-%d %H:%M') if r.valid_to else 'now'}",
            )
        )
    middle = start + timedelta(seconds=span / 2)
    labels = [f"{start:%Y-%m-%d}", f"{middle:%Y-%m-%d}", f"{now:%Y-%m-%d}"]
    return bars, labels, len(prefixes)


def _customer_page(
    request: Request,
    who: Principal,
    customer_id: int,
    *,
    pii: Any = None,
    decision: gate.Decision | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    with runtime_of(request).reading() as session:
        customer = customers.get_customer(session, customer_id)
        assignments = inventory.list_assignments(session, customer_id=customer_id)
        bars, axis, lanes = timeline(assignments, utcnow())
        context = {
            "c": customer,
            "documents": customers.list_documents(session, customer_id),
            "requests": verification.list_requests(session, status=None, customer_id=customer_id),
            "acceptances": commitments.list_acceptances(session, customer_id),
            "current_version": commitments.current_version(session),
            "instances": inventory.list_instances(session, customer_id=customer_id),
            "assignments": assignments,
            "bars": bars,
            "axis": axis,
            "lanes": lanes,
            "decisions": [
                (row.decided_at, row.requested_by, gate.decision_of(row))
                for row in gate.list_decisions(session, customer_id, limit=10)
            ],
            "flags": customers.list_flags(session, customer_id=customer_id),
            "pii": pii,
            "decision": decision,
            "error": error,
        }
    return render(request, "registry/customer.html", context, principal=who, status=status)


@router.get("/customers/{customer_id}")
def customer_page(
    request: Request, customer_id: int, who: Principal = page(Perm.REGISTRY_READ)
) -> HTMLResponse:
    return _customer_page(request, who, customer_id)


@router.post("/customers/{customer_id}/reveal")
def customer_reveal(
    request: Request,
    customer_id: int,
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.PII_VIEW),
) -> HTMLResponse:
    """Full e-mail, phone and ID numbers, shown once in this answer; the view is audited
    with its reason."""
    try:
        with runtime_of(request).operation(who.actor()) as op:
            pii = customers.reveal(op, customer_id, reason)
    except HostwardenError as exc:
        return _customer_page(request, who, customer_id, error=str(exc), status=exc.status)
    return _customer_page(request, who, customer_id, pii=pii)


@router.post("/customers/{customer_id}/provisioning-check")
def customer_gate(
    request: Request, customer_id: int, who: Principal = page(Perm.PROVISIONING_CHECK)
) -> HTMLResponse:
    with runtime_of(request).operation(who.actor()) as op:
        decision = gate.check(op, customer_id, reason="checked in the console")
    return _customer_page(request, who, customer_id, decision=decision)


@router.get("/customers/{customer_id}/acceptances/{acceptance_id}.pdf")
def customer_letter_pdf(
    request: Request,
    customer_id: int,
    acceptance_id: int,
    who: Principal = page(Perm.REGISTRY_READ),
) -> Response:
    runtime = runtime_of(request)
    with runtime.reading() as session:
        row = commitments.get_acceptance(session, acceptance_id)
        if row.customer_id != customer_id:
            raise HostwardenError("that letter belongs to another customer.")
    pdf = commitments.render_pdf(runtime, acceptance_id)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="commitment-{acceptance_id}.pdf"'},
    )


@router.get("/inventory")
def inventory_page(request: Request, who: Principal = page(Perm.REGISTRY_READ)) -> HTMLResponse:
    with runtime_of(request).reading() as session:
        context = {
            "rooms": inventory.list_rooms(session),
            "ranges": inventory.list_ranges(session),
            "instances": inventory.list_instances(session)[:200],
            "assignments": inventory.list_assignments(session, current_only=True, limit=200),
            "nat": inventory.list_nat(session)[:200],
        }
    return render(request, "registry/inventory.html", context, principal=who)


@router.get("/attribution")
def attribution_page(
    request: Request,
    ip: str = "",
    at: str = "",
    port: str = "",
    who: Principal = page(Perm.REGISTRY_READ),
) -> HTMLResponse:
    """Who held this IP (and port) at that time."""
    runtime = runtime_of(request)
    result, error, name = None, None, None
    if ip:
        try:
            port_number = int(port) if port.strip() else None
            result = attribution.attribute(runtime, ip.strip(), at.strip(), port_number)
            if result is not None:
                with runtime.reading() as session:
                    name = customers.get_customer(session, result.customer_id).name
        except ValueError:
            error = f"'{port}' is not a port number (1–65535)."
        except HostwardenError as exc:
            error = str(exc)
    return render(
        request,
        "registry/attribution.html",
        {
            "ip": ip,
            "at": at,
            "port": port,
            "result": result,
            "error": error,
            "name": name,
            "searched": bool(ip) and error is None,
        },
        principal=who,
    )


# Stored values the templates translate with _(value); listed so extraction finds them.
DISPLAYED_VALUES = (
    N_("pending"),
    N_("active"),
    N_("restricted"),
    N_("suspended"),
    N_("terminated"),
    N_("individual"),
    N_("organisation"),
    N_("low"),
    N_("medium"),
    N_("high"),
    N_("unverified"),
    N_("verified"),
    N_("rejected"),
    N_("approved"),
    N_("error"),
    N_("open"),
    N_("cleared"),
    N_("confirmed"),
)
