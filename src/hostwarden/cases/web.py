"""Console pages of the abuse desk (case list, case page, work queue, playbooks and
allowlist) and the two public pages: the report form and the customer response page.
Every change goes through ``cases.service`` / ``cases.notify``."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hostwarden.api.deps import Principal, page, public, runtime_of
from hostwarden.cases import notify, queries, rawstore, service
from hostwarden.cases.api import SimpleReport, simple_event
from hostwarden.cases.models import CASE_STATES, OPEN_STATES
from hostwarden.cases.parsers.base import CATEGORIES, ParsedReport
from hostwarden.cases.playbooks import (
    CATEGORY_LABELS,
    ESCALATION_ACTIONS,
    all_playbooks,
    set_playbook,
)
from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Operation
from hostwarden.errors import HostwardenError, TooLarge, ValidationFailed
from hostwarden.web import i18n
from hostwarden.web.i18n import N_
from hostwarden.web.render import render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50

STATE_LABELS = {
    "new": N_("new"),
    "notified": N_("notified"),
    "awaiting_response": N_("awaiting response"),
    "resolved": N_("resolved"),
    "escalated": N_("escalated"),
    "suspended": N_("suspended"),
    "terminated": N_("terminated"),
    "ignored": N_("ignored"),
}
#: What the case page says after an action (the action redirects with ``done=<key>``).
DONE = {
    "notified": N_("Notice queued for the customer."),
    "message": N_("Message queued."),
    "note": N_("Internal note added."),
    "state": N_("Case updated."),
    "authority": N_("Decision recorded."),
}
EMPTY_FILTER = {"state": "", "category": "", "customer": "", "age": ""}
#: Bulk actions on the case list: the transition each makes.
BULK_ACTIONS = ("resolved", "ignored", "escalated")


def _category_name(category: str) -> str:
    en, zh = CATEGORY_LABELS.get(category, (category, category))
    return zh if i18n.current_locale() == "zh-CN" else en


def _labels() -> dict[str, Any]:
    # Looked up while the template renders, in the language render() chose.
    return {
        "category_name": _category_name,
        "state_name": lambda s: i18n.gettext(STATE_LABELS[s]) if s in STATE_LABELS else s,
        "categories": CATEGORIES,
        "states": CASE_STATES,
    }


def _page(
    request: Request,
    who: Principal | None,
    template: str,
    context: dict[str, Any],
    status: int = 200,
) -> HTMLResponse:
    return render(request, template, {**_labels(), **context}, principal=who, status=status)


# --- the case list -------------------------------------------------------------------------


@router.get("/cases")
def case_list(
    request: Request,
    state: str = "",
    category: str = "",
    customer: str = "",
    age: str = "",
    offset: int = Query(0, ge=0),
    who: Principal = page(Perm.CASES_READ),
) -> HTMLResponse:
    form = {
        "state": state.strip(),
        "category": category.strip(),
        "customer": customer.strip(),
        "age": age.strip(),
    }
    return _list_page(request, who, form, offset)


def _list_page(
    request: Request,
    who: Principal,
    form: dict[str, str],
    offset: int = 0,
    *,
    error: str = "",
    notice: str = "",
) -> HTMLResponse:
    rows: list[dict[str, Any]] = []
    total, status = 0, 200
    with runtime_of(request).reading() as session:
        try:
            if form["customer"] and not form["customer"].isdigit():
                raise ValidationFailed(
                    f"customer {form['customer']!r} is not a customer id.",
                    hint="Give the customer's number.",
                )
            found, total = queries.list_cases(
                session,
                states=[form["state"]] if form["state"] else list(OPEN_STATES),
                categories=[form["category"]] if form["category"] else [],
                customer_id=int(form["customer"]) if form["customer"] else None,
                older_than_hours=int(form["age"]) if form["age"].isdigit() else None,
                limit=PAGE_SIZE,
                offset=offset,
            )
            rows = [queries.case_dict(c) for c in found]
        except HostwardenError as exc:
            error, status = str(exc), exc.status
        ages = queries.age_buckets(session)
        sla = service.sla_by_category(session)
    largest = max([a["count"] for a in ages] + [1])
    return _page(
        request,
        who,
        "cases/list.html",
        {
            "form": form,
            "rows": rows,
            "total": total,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "ages": [{**a, "share": 100.0 * a["count"] / largest} for a in ages],
            "sla": sla,
            "error": error,
            "notice": notice,
            "bulk_actions": BULK_ACTIONS,
        },
        status,
    )


@router.post("/cases/bulk")
def case_bulk(
    request: Request,
    case: Annotated[list[str] | None, Form()] = None,
    action: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_WRITE),
) -> HTMLResponse:
    # A plain route, so the database work runs in the thread pool, not on the event loop.
    chosen = case or []
    try:
        if action not in BULK_ACTIONS:
            raise ValidationFailed(
                f"{action!r} is not a bulk action.",
                hint=f"Choose one of: {', '.join(BULK_ACTIONS)}.",
            )
        if not chosen:
            raise ValidationFailed("no case was ticked.", hint="Tick the cases to change.")
        with runtime_of(request).operation(who.actor()) as op:
            for reference in chosen:
                service.transition(op, service.get_case(op.session, reference), action, reason)
    except HostwardenError as exc:
        return _list_page(request, who, EMPTY_FILTER, error=str(exc))
    i18n.set_locale(who.locale)
    return _list_page(
        request, who, EMPTY_FILTER, notice=i18n.gettext("%(n)s cases changed.", n=len(chosen))
    )


# --- one case ---------------------------------------------------------------------------------


def _case_page(
    request: Request,
    who: Principal,
    reference: str,
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> HTMLResponse:
    with runtime_of(request).reading() as session:
        case = service.get_case(session, reference)
        detail = queries.case_detail(session, case)
        rule = all_playbooks(session)[case.category].as_dict()
    allowed = sorted(
        service.TRANSITIONS.get(detail["case"]["state"], frozenset())
        - {"notified", "awaiting_response"}
    )
    return _page(
        request,
        who,
        "cases/case.html",
        {
            "d": detail,
            "c": detail["case"],
            "rule": rule,
            "allowed": allowed,
            "error": error,
            "notice": notice,
        },
        status,
    )


@router.get("/cases/queue")
def queue_route(request: Request, who: Principal = page(Perm.CASES_READ)) -> HTMLResponse:
    return queue_page(request, who)


def queue_page(
    request: Request, who: Principal, *, notice: str = "", error: str = ""
) -> HTMLResponse:
    """The work queue, with what the last action said (never taken from the URL)."""
    with runtime_of(request).reading() as session:
        data = queries.work_queue(session)
    return _page(request, who, "cases/queue.html", {**data, "notice": notice, "error": error})


@router.post("/cases/queue/attribute-again")
def queue_again(request: Request, who: Principal = page(Perm.CASES_WRITE)) -> HTMLResponse:
    done = service.attribute_again(runtime_of(request), who.actor())
    i18n.set_locale(who.locale)
    return queue_page(
        request,
        who,
        notice=i18n.gettext(
            "%(grouped)s events grouped into cases, %(still)s still unresolved.",
            grouped=done["grouped"],
            still=done["still_unresolved"],
        ),
    )


@router.post("/cases/reports/{report_id}/review")
def report_review(
    request: Request,
    report_id: int,
    note: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_WRITE),
) -> HTMLResponse:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            service.review_report(op, report_id, note)
    except HostwardenError as exc:
        return queue_page(request, who, error=str(exc))
    i18n.set_locale(who.locale)
    return queue_page(request, who, notice=i18n.gettext("Report marked reviewed."))


@router.get("/cases/settings")
def settings_route(request: Request, who: Principal = page(Perm.CASES_READ)) -> HTMLResponse:
    return settings_page(request, who)


def settings_page(
    request: Request, who: Principal, *, notice: str = "", error: str = ""
) -> HTMLResponse:
    """Playbooks and the allowlist, with what the last action said."""
    with runtime_of(request).reading() as session:
        rules = [r.as_dict() for r in all_playbooks(session).values()]
        entries = queries.allowlist(session)
    return _page(
        request,
        who,
        "cases/settings.html",
        {
            "rules": rules,
            "entries": entries,
            "actions": ESCALATION_ACTIONS,
            "modes": service.ALLOWLIST_MODES,
            "notice": notice,
            "error": error,
        },
    )


def _settings_change(
    request: Request, who: Principal, change: Callable[[Operation], Any], done: str
) -> HTMLResponse:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            change(op)
    except HostwardenError as exc:
        return settings_page(request, who, error=str(exc))
    i18n.set_locale(who.locale)
    return settings_page(request, who, notice=i18n.gettext(done))


@router.post("/cases/settings/playbooks/{category}")
def playbook_save(
    request: Request,
    category: str,
    deadline_hours: Annotated[int, Form()],
    escalate_after_events: Annotated[int, Form()],
    escalation_action: Annotated[str, Form()] = "none",
    authority_decision: Annotated[bool, Form()] = False,
    auto_notify: Annotated[bool, Form()] = False,
    who: Principal = page(Perm.CASES_ADMIN),
) -> HTMLResponse:
    return _settings_change(
        request,
        who,
        lambda op: set_playbook(
            op,
            category,
            deadline_hours=deadline_hours,
            escalate_after_events=escalate_after_events,
            escalation_action=escalation_action,
            authority_decision=authority_decision,
            auto_notify=auto_notify,
            reason="changed in the console",
        ),
        N_("Playbook saved."),
    )


@router.post("/cases/settings/allowlist")
def allowlist_add(
    request: Request,
    kind: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
    mode: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_ADMIN),
) -> HTMLResponse:
    return _settings_change(
        request,
        who,
        lambda op: service.add_allowlist(op, kind=kind, value=value, mode=mode, reason=reason),
        N_("Allowlist entry added."),
    )


@router.post("/cases/settings/allowlist/{entry_id}/remove")
def allowlist_remove(
    request: Request,
    entry_id: int,
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_ADMIN),
) -> HTMLResponse:
    return _settings_change(
        request,
        who,
        lambda op: service.remove_allowlist(op, entry_id, reason),
        N_("Allowlist entry removed."),
    )


@router.get("/cases/{reference}")
def case_page(
    request: Request, reference: str, done: str = "", who: Principal = page(Perm.CASES_READ)
) -> HTMLResponse:
    i18n.set_locale(who.locale)
    notice = i18n.gettext(DONE[done]) if done in DONE else ""
    return _case_page(request, who, reference, notice=notice)


def _case_action(
    request: Request,
    who: Principal,
    reference: str,
    action: Callable[[Operation, Any], Any],
    done: str,
) -> Response:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            case = service.get_case(op.session, reference)
            action(op, case)
            target = case.reference
    except HostwardenError as exc:
        return _case_page(request, who, reference, error=str(exc), status=exc.status)
    # Redirect after the change, so that reloading the page does not send it again.
    return RedirectResponse(f"/cases/{quote(target)}?done={done}", status_code=303)


@router.post("/cases/{reference}/notify")
def case_notify(
    request: Request,
    reference: str,
    locale: Annotated[str, Form()] = "",
    extra: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_WRITE),
) -> Response:
    return _case_action(
        request,
        who,
        reference,
        lambda op, c: notify.notify_customer(op, c, locale=locale or None, extra=extra),
        "notified",
    )


@router.post("/cases/{reference}/message")
def case_message(
    request: Request,
    reference: str,
    to: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_WRITE),
) -> Response:
    def send(op: Operation, case: Any) -> Any:
        if to == "reporter":
            return notify.message_reporter(op, case, subject, text)
        if to == "customer":
            return notify.message_customer(op, case, subject, text)
        raise ValidationFailed("choose who the message is for.", hint="Customer or reporter.")

    return _case_action(request, who, reference, send, "message")


@router.post("/cases/{reference}/note")
def case_note(
    request: Request,
    reference: str,
    text: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_WRITE),
) -> Response:
    return _case_action(
        request,
        who,
        reference,
        lambda op, c: service.add_note(op, c, text),
        "note",
    )


@router.post("/cases/{reference}/state")
def case_state(
    request: Request,
    reference: str,
    to: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_WRITE),
) -> Response:
    return _case_action(
        request,
        who,
        reference,
        lambda op, c: service.transition(op, c, to, reason),
        "state",
    )


@router.post("/cases/{reference}/authority")
def case_authority(
    request: Request,
    reference: str,
    reported: Annotated[str, Form()] = "",
    to: Annotated[str, Form()] = "",
    ref: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.CASES_WRITE),
) -> Response:
    def decide(op: Operation, case: Any) -> Any:
        if reported not in ("yes", "no"):
            raise ValidationFailed("choose whether the case was reported.", hint="Yes or no.")
        return service.record_authority_decision(
            op, case, reported=reported == "yes", to=to, reference=ref, reason=reason
        )

    return _case_action(request, who, reference, decide, "authority")


# --- public pages -------------------------------------------------------------------------------


class _RateLimit:
    """Reports per client address per hour, in this process. Kept by hand: a sliding
    window over a few timestamps per address needs no library; behind several API
    replicas each counts its own share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, deque[float]] = {}

    def allow(self, client: str, per_hour: int) -> bool:
        now = time.monotonic()
        with self.lock:
            times = self.seen.setdefault(client, deque())
            while times and now - times[0] > 3600:
                times.popleft()
            if len(times) >= per_hour:
                return False
            times.append(now)
            return True


FORM_LIMIT = _RateLimit()


@router.get("/report")
def report_form(request: Request, _: None = public()) -> HTMLResponse:
    return _page(request, None, "cases/report_form.html", {"entered": {}, "error": ""})


@router.post("/report")
def report_submit(
    request: Request,
    category: Annotated[str, Form()] = "",
    address: Annotated[str, Form()] = "",
    port: Annotated[str, Form()] = "",
    occurred_at: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    _: None = public(csrf=True),
) -> HTMLResponse:
    entered = {
        "category": category,
        "address": address,
        "port": port,
        "occurred_at": occurred_at,
        "description": description,
        "email": email,
    }
    runtime = runtime_of(request)
    client = request.client.host if request.client else "unknown"
    try:
        if not FORM_LIMIT.allow(client, runtime.settings.cases.form_per_hour):
            raise ValidationFailed(
                "too many reports from your address in the last hour.",
                hint="Wait an hour, or send the report by mail to the abuse address.",
            )
        value = address.strip()
        # An address is an address; anything else given is a URL or a host name.
        try:
            is_url = not ipaddress.ip_address(value)
        except ValueError:
            is_url = True
        if port.strip() and not port.strip().isdigit():
            raise ValidationFailed(
                f"port {port!r} is not a number.", hint="Give 1–65535 or nothing."
            )
        form = SimpleReport(
            category=category or "other",
            ip=None if is_url or not value else value,
            url=value if is_url else None,
            port=int(port) if port.strip() else None,
            occurred_at=occurred_at.strip(),
            description=description[:100_000],
            reporter_email=email.strip() or None,
        )
        reporter = email.strip().lower() or f"web-form:{client}"
        event = simple_event(form, reporter)
        raw = (
            f"Web form report from {client}\nEmail: {email}\nCategory: {category}\n"
            f"Address: {address}\nPort: {port}\nTime: {occurred_at}\n\n{description}\n"
        ).encode()
        result = service.receive_many(
            runtime,
            [
                service.Incoming(
                    raw, "form", reporter=reporter, parsed=ParsedReport("web-form", [event])
                )
            ],
        )[0]
    except HostwardenError as exc:
        return _page(
            request,
            None,
            "cases/report_form.html",
            {"entered": entered, "error": str(exc)},
            exc.status,
        )
    except ValueError as exc:  # pydantic's checks of the form's fields
        return _page(
            request,
            None,
            "cases/report_form.html",
            {"entered": entered, "error": str(exc).splitlines()[-1]},
            422,
        )
    return _page(request, None, "cases/report_thanks.html", {"report_id": result.report_id})


@router.get("/respond/{token}")
def respond_route(request: Request, token: str, _: None = public()) -> HTMLResponse:
    return respond_page(request, token)


def respond_page(
    request: Request, token: str, *, notice: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    try:
        with runtime_of(request).reading() as session:
            case = service.case_by_token(session, token)
            detail = queries.case_detail(session, case)
    except HostwardenError as exc:
        return _page(
            request, None, "cases/respond.html", {"c": None, "error": str(exc)}, exc.status
        )
    shared = [t for t in detail["timeline"] if t["audience"] == "customer"]
    return _page(
        request,
        None,
        "cases/respond.html",
        {
            "c": detail["case"],
            "token": token,
            "messages": shared,
            "events": detail["events"][-5:],
            "notice": notice,
            "error": error,
        },
        status,
    )


@router.post("/respond/{token}")
async def respond_submit(
    request: Request,
    token: str,
    text: Annotated[str, Form()] = "",
    files: Annotated[list[UploadFile] | None, File()] = None,
    _: None = public(csrf=True),
) -> HTMLResponse:
    runtime = runtime_of(request)
    limit = runtime.settings.cases.max_report_mb * 1024 * 1024
    attached: list[tuple[str, bytes]] = []
    try:
        for upload in files or []:
            if not upload.filename:
                continue
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise TooLarge(
                    f"{upload.filename} is over {limit:,} bytes.",
                    hint="Attach a smaller file or send a link.",
                )
            attached.append((upload.filename, data))
        client = request.client.host if request.client else ""
        await run_in_threadpool(
            service.customer_reply, runtime, token, text, attached, client=client
        )
    except HostwardenError as exc:
        return respond_page(request, token, error=str(exc), status=exc.status)
    return respond_page(
        request,
        token,
        notice=i18n.gettext(
            "Thank you: your reply is on the case. The abuse desk will answer by mail."
        ),
    )


@router.get("/cases/reports/{report_id}/raw")
def report_raw(
    request: Request, report_id: int, who: Principal = page(Perm.CASES_READ)
) -> Response:
    """A report exactly as received, checked against its SHA-256 on the way out."""
    with runtime_of(request).reading() as session:
        digest, data = rawstore.of_report(session, report_id)
    return Response(
        data,
        media_type="message/rfc822",
        headers={
            "X-Content-SHA256": digest,
            "Content-Disposition": f'attachment; filename="report-{report_id}.eml"',
        },
    )
