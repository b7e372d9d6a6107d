"""API routes of the abuse desk: report intake (XARF v4, a simple JSON form, a raw mail),
the work queue, cases and their actions, playbooks and allowlists."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from hostwarden.api.deps import Principal, read_body, require, runtime_of
from hostwarden.cases import notify, queries, rawstore, service
from hostwarden.cases.models import AbuseReport
from hostwarden.cases.parsers.base import CATEGORIES, ParsedReport, ReportEvent
from hostwarden.cases.parsers.xarf import parse_xarf4_document
from hostwarden.cases.playbooks import all_playbooks, set_playbook
from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Runtime
from hostwarden.errors import NotFound, TooLarge, ValidationFailed
from hostwarden.registry import netaddr

reports_router = APIRouter(prefix="/api/v1/reports", tags=["abuse desk"])
cases_router = APIRouter(prefix="/api/v1/cases", tags=["abuse desk"])
settings_router = APIRouter(prefix="/api/v1/abuse", tags=["abuse desk"])


class SimpleReport(BaseModel):
    """The simple JSON form of a report: one event."""

    model_config = ConfigDict(extra="forbid")
    category: str
    ip: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    url: str | None = None
    domain: str | None = None
    #: ISO 8601 with its zone (2026-05-01T10:00:00+08:00).
    occurred_at: str
    #: What happened, with the evidence (log lines, headers).
    description: str = Field(max_length=100_000)
    reporter_email: str | None = None


def simple_event(form: SimpleReport, reporter: str) -> ReportEvent:
    """The event of a simple form (the API's and the public web form's)."""
    if form.category not in CATEGORIES:
        raise ValidationFailed(
            f"category {form.category!r} is not known.",
            hint=f"Use one of: {', '.join(CATEGORIES)}.",
        )
    if not (form.ip or form.url or form.domain):
        raise ValidationFailed(
            "the report names no address, URL or domain.",
            hint="Give the IP address (and port), or the URL, concerned.",
        )
    ip = str(netaddr.parse_address(form.ip.strip())) if form.ip else None
    domain = form.domain
    if form.url and not domain:
        domain = urlsplit(form.url if "//" in form.url else f"http://{form.url}").hostname
    try:
        moment = datetime.fromisoformat(form.occurred_at.strip())  # 3.11 reads a "Z" too
    except ValueError:
        raise ValidationFailed(
            f"occurred_at {form.occurred_at!r} is not an ISO 8601 time.",
            hint="For example 2026-05-01T10:00:00+08:00.",
        ) from None
    if moment.tzinfo is None:
        raise ValidationFailed(
            f"occurred_at {form.occurred_at!r} has no zone.",
            hint="Add it, e.g. +08:00 for Beijing time or Z for UTC.",
        )
    return ReportEvent(
        category=form.category,
        ip=ip,
        port=form.port,
        domain=domain,
        url=form.url,
        occurred_at=moment,
        zone=moment.strftime("%z"),
        reporter=reporter,
        excerpt=form.description[:2000],
    )


def _result(results: list[service.ReceiveResult]) -> dict[str, Any]:
    return results[0].as_dict()


@reports_router.post("", status_code=201)
async def submit_report(
    request: Request, who: Principal = require(Perm.REPORTS_SUBMIT)
) -> dict[str, Any]:
    """A report: XARF v4 JSON, the simple JSON form, or a whole mail (message/rfc822).
    The body is kept unchanged as the report's first piece of evidence."""
    runtime = runtime_of(request)
    limit = runtime.settings.cases.max_report_mb * 1024 * 1024
    raw = await read_body(
        request,
        limit,
        lambda: TooLarge(
            f"the report is over {limit:,} bytes.", hint="Send the evidence trimmed or as links."
        ),
    )
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    reporter = who.username
    if kind in ("message/rfc822", "text/plain"):
        results = await run_in_threadpool(
            service.receive_many, runtime, [service.Incoming(raw, "api")], actor=who.actor()
        )
        return _result(results)
    if kind != "application/json":
        raise ValidationFailed(
            f"content type {kind or 'none'} is not taken here.",
            hint="Send application/json (XARF v4 or the simple form) or "
            "message/rfc822 (a whole mail).",
        )
    parsed = _parse_json(raw, reporter)
    item = service.Incoming(raw, "api", reporter=reporter, parsed=parsed)
    results = await run_in_threadpool(service.receive_many, runtime, [item], actor=who.actor())
    return _result(results)


def _parse_json(raw: bytes, reporter: str) -> ParsedReport:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(
            f"the body is not JSON: {exc}.", hint="Send XARF v4 JSON or the simple form."
        ) from None
    if not isinstance(document, dict):
        raise ValidationFailed(
            "the JSON body is not an object.", hint="Send XARF v4 JSON or the simple form."
        )
    if "Report" in document or "Reporter" in document:
        return parse_xarf4_document(document, reporter=reporter)
    try:
        form = SimpleReport.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValidationFailed(
            f"field {where}: {first['msg']}.",
            hint="The simple form has category, ip or url, occurred_at and description.",
        ) from None
    return ParsedReport("api-form", [simple_event(form, form.reporter_email or reporter)])


@reports_router.get("/queue")
def report_queue(request: Request, who: Principal = require(Perm.CASES_READ)) -> dict[str, Any]:
    """Reports no parser understood and events nobody could be found for."""
    with runtime_of(request).reading() as session:
        return queries.work_queue(session)


@reports_router.get("/{report_id}")
def report_show(
    request: Request, report_id: int, who: Principal = require(Perm.CASES_READ)
) -> dict[str, Any]:
    with runtime_of(request).reading() as session:
        return queries.report_dict(_report(session, report_id))


@reports_router.get("/{report_id}/raw")
def report_raw(
    request: Request, report_id: int, who: Principal = require(Perm.CASES_READ)
) -> Response:
    """The report exactly as received (checked against its SHA-256)."""
    with runtime_of(request).reading() as session:
        digest, data = rawstore.of_report(session, report_id)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "X-Content-SHA256": digest,
            "Content-Disposition": f'attachment; filename="report-{report_id}.eml"',
        },
    )


def _report(session: Session, report_id: int) -> AbuseReport:
    report = session.get(AbuseReport, report_id)
    if report is None:
        raise NotFound(f"there is no report {report_id}.", hint="See /api/v1/reports/queue.")
    return report


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


@reports_router.post("/{report_id}/review")
def report_review(
    request: Request, report_id: int, body: NoteIn, who: Principal = require(Perm.CASES_WRITE)
) -> dict[str, Any]:
    with runtime_of(request).operation(who.actor()) as op:
        return queries.report_dict(service.review_report(op, report_id, body.text))


# --- cases -----------------------------------------------------------------------------------


@cases_router.get("")
def case_list(
    request: Request,
    state: list[str] = Query([]),
    category: list[str] = Query([]),
    customer: int | None = None,
    older_than_hours: int | None = Query(None, ge=0),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    who: Principal = require(Perm.CASES_READ),
) -> dict[str, Any]:
    with runtime_of(request).reading() as session:
        rows, total = queries.list_cases(
            session,
            states=state,
            categories=category,
            customer_id=customer,
            older_than_hours=older_than_hours,
            limit=limit,
            offset=offset,
        )
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [queries.case_dict(c) for c in rows],
        }


@cases_router.get("/sla")
def case_sla(request: Request, who: Principal = require(Perm.CASES_READ)) -> list[dict[str, Any]]:
    """Per category: cases, open, mean seconds to first action and to mitigation."""
    with runtime_of(request).reading() as session:
        return service.sla_by_category(session)


@cases_router.get("/{case}")
def case_show(
    request: Request, case: str, who: Principal = require(Perm.CASES_READ)
) -> dict[str, Any]:
    with runtime_of(request).reading() as session:
        return queries.case_detail(session, service.get_case(session, case))


def _act(runtime: Runtime, who: Principal, case: str, action: Any) -> dict[str, Any]:
    with runtime.operation(who.actor()) as op:
        row = service.get_case(op.session, case)
        action(op, row)
        op.session.flush()
        return queries.case_dict(row)


class NotifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    locale: str | None = None
    #: A paragraph added to the notice.
    extra: str = ""


@cases_router.post("/{case}/notify")
def case_notify(
    request: Request, case: str, body: NotifyIn, who: Principal = require(Perm.CASES_WRITE)
) -> dict[str, Any]:
    """Send the customer the notice; the case becomes notified and its deadline starts."""
    return _act(
        runtime_of(request),
        who,
        case,
        lambda op, row: notify.notify_customer(op, row, locale=body.locale, extra=body.extra),
    )


class StateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str
    reason: str = ""


@cases_router.post("/{case}/state")
def case_state(
    request: Request, case: str, body: StateIn, who: Principal = require(Perm.CASES_WRITE)
) -> dict[str, Any]:
    return _act(
        runtime_of(request),
        who,
        case,
        lambda op, row: service.transition(op, row, body.to, body.reason),
    )


@cases_router.post("/{case}/notes")
def case_note(
    request: Request, case: str, body: NoteIn, who: Principal = require(Perm.CASES_WRITE)
) -> dict[str, Any]:
    """An internal note: never sent to anyone."""
    return _act(
        runtime_of(request), who, case, lambda op, row: service.add_note(op, row, body.text)
    )


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: customer or reporter
    to: str
    subject: str
    text: str


@cases_router.post("/{case}/messages")
def case_message(
    request: Request, case: str, body: MessageIn, who: Principal = require(Perm.CASES_WRITE)
) -> dict[str, Any]:
    if body.to not in ("customer", "reporter"):
        raise ValidationFailed(
            f"{body.to!r} is not a party of the case.", hint="Use customer or reporter."
        )
    send = notify.message_customer if body.to == "customer" else notify.message_reporter
    return _act(
        runtime_of(request), who, case, lambda op, row: send(op, row, body.subject, body.text)
    )


class AuthorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reported: bool
    to: str = ""
    reference: str = ""
    reason: str = ""


@cases_router.post("/{case}/authority")
def case_authority(
    request: Request, case: str, body: AuthorityIn, who: Principal = require(Perm.CASES_WRITE)
) -> dict[str, Any]:
    """The decision on reporting to the authorities (报告主管部门)."""
    return _act(
        runtime_of(request),
        who,
        case,
        lambda op, row: service.record_authority_decision(
            op,
            row,
            reported=body.reported,
            to=body.to,
            reference=body.reference,
            reason=body.reason,
        ),
    )


# --- playbooks and allowlist ----------------------------------------------------------------------


@settings_router.get("/playbooks")
def playbooks(request: Request, who: Principal = require(Perm.CASES_READ)) -> list[dict[str, Any]]:
    with runtime_of(request).reading() as session:
        return [r.as_dict() for r in all_playbooks(session).values()]


class PlaybookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deadline_hours: int
    escalate_after_events: int
    escalation_action: str = "none"
    authority_decision: bool = False
    auto_notify: bool = False
    reason: str = ""


@settings_router.put("/playbooks/{category}")
def playbook_put(
    request: Request, category: str, body: PlaybookIn, who: Principal = require(Perm.CASES_ADMIN)
) -> dict[str, Any]:
    with runtime_of(request).operation(who.actor()) as op:
        return set_playbook(op, category, **body.model_dump()).as_dict()


@settings_router.get("/allowlist")
def allowlist(request: Request, who: Principal = require(Perm.CASES_READ)) -> list[dict[str, Any]]:
    with runtime_of(request).reading() as session:
        return queries.allowlist(session)


class AllowlistIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    value: str
    mode: str
    reason: str
    expires_at: datetime | None = None


@settings_router.post("/allowlist", status_code=201)
def allowlist_add(
    request: Request, body: AllowlistIn, who: Principal = require(Perm.CASES_ADMIN)
) -> dict[str, Any]:
    with runtime_of(request).operation(who.actor()) as op:
        row = service.add_allowlist(op, **body.model_dump())
        return {"id": row.id, "kind": row.kind, "value": row.value, "mode": row.mode}


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str


@settings_router.post("/allowlist/{entry_id}/remove")
def allowlist_remove(
    request: Request, entry_id: int, body: ReasonIn, who: Principal = require(Perm.CASES_ADMIN)
) -> dict[str, Any]:
    with runtime_of(request).operation(who.actor()) as op:
        row = service.remove_allowlist(op, entry_id, body.reason)
        return {"id": row.id, "removed_by": row.removed_by}
