"""`hostwarden reports …` and `hostwarden cases …`: the abuse desk from the shell."""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hostwarden.cases import imports, notify, queries, service
from hostwarden.cases.playbooks import all_playbooks, set_playbook
from hostwarden.cli.common import JsonOpt, err, operator, out, print_json, state, table
from hostwarden.core.timeutil import isoformat, parse_time
from hostwarden.errors import HostwardenError, ValidationFailed

reports_app = typer.Typer(
    help="Abuse reports: check, import, listen, the queue.", no_args_is_help=True
)
cases_app = typer.Typer(help="Abuse cases: list, act, playbooks, allowlists.", no_args_is_help=True)
allowlist_app = typer.Typer(help="Reporters and addresses that open no case.", no_args_is_help=True)
playbook_app = typer.Typer(help="Per-category deadlines and escalation.", no_args_is_help=True)
mail_app = typer.Typer(help="The outgoing mail queue.", no_args_is_help=True)
cases_app.add_typer(allowlist_app, name="allowlist")
cases_app.add_typer(playbook_app, name="playbook")

Reason = Annotated[str, typer.Option("--reason", help="Why (audited).")]
BATCH = 200


def _event_dict(event: Any) -> dict[str, Any]:
    data = asdict(event)
    data["occurred_at"] = isoformat(event.occurred_at)
    return data


# --- reports ---------------------------------------------------------------------------------


@reports_app.command("parse")
def reports_parse(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A report: .eml (one message).")],
    as_json: JsonOpt = False,
) -> None:
    """Which parser reads a report and the events it finds; nothing is stored."""
    if not path.is_file():
        raise ValidationFailed(f"{path} is not a file.", hint="Give one .eml file.")
    runtime = state(ctx).runtime()
    message, parsed = service.read_report(runtime, path.read_bytes())
    data = {
        "parser": parsed.parser,
        "reporter": message.reporter if message else "",
        "events": [_event_dict(e) for e in parsed.events],
        "notes": parsed.notes + (message.warnings if message else []),
    }
    if as_json:
        print_json(data)
        return
    out.print(f"parser: [bold]{data['parser']}[/bold], reporter: {data['reporter'] or '—'}")
    table(
        f"Events ({len(parsed.events)})",
        ["category", "ip", "port", "domain / url", "time (UTC)", "zone"],
        [
            [e.category, e.ip, e.port, e.url or e.domain, isoformat(e.occurred_at), e.zone]
            for e in parsed.events
        ],
    )
    for note in data["notes"]:
        out.print(f"note: {note}")


@reports_app.command("import")
def reports_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="An .eml file, an mbox, or a directory of them.")],
    as_json: JsonOpt = False,
) -> None:
    """Take reports in from files, as if they had arrived by mail."""
    runtime = state(ctx).runtime()
    totals = {
        "reports": 0,
        "events": 0,
        "duplicates": 0,
        "unresolved": 0,
        "unparsed": 0,
        "cases_opened": 0,
        "failed": 0,
    }
    failures: list[dict[str, str]] = []
    batch: list[service.Incoming] = []

    def flush() -> None:
        for result in service.receive_many(runtime, batch, actor=operator()):
            totals["reports"] += 1
            totals["events"] += result.events
            totals["duplicates"] += result.duplicates
            totals["unresolved"] += result.unresolved
            totals["unparsed"] += result.status == "unparsed"
            totals["cases_opened"] += len(result.cases_opened)
        batch.clear()

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=as_json,
    ) as bar:
        task = bar.add_task(path.name, total=imports.count(path) if path.exists() else 0)
        for item in imports.read_reports(path):
            bar.advance(task)
            if item.error:
                totals["failed"] += 1
                failures.append({"file": item.name, "error": item.error})
                continue
            try:
                message, parsed = service.read_report(runtime, item.raw)
            except HostwardenError as exc:
                totals["failed"] += 1
                failures.append({"file": item.name, "error": str(exc)})
                continue
            batch.append(service.Incoming(item.raw, "import", parsed=parsed, message=message))
            if len(batch) >= BATCH:
                flush()
        if batch:
            flush()
    if as_json:
        print_json({**totals, "failures": failures})
        return
    out.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in totals.items()))
    for failure in failures:
        err.print(f"[yellow]skipped[/yellow] {failure['file']}: {failure['error']}")
    if failures:
        raise typer.Exit(1)


@reports_app.command("queue")
def reports_queue(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """What waits for a person: unparsed reports and events nobody could be found for."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        data = queries.work_queue(session)
    if as_json:
        print_json(data)
        return
    table(
        "Reports no parser understood",
        ["id", "received", "reporter", "subject"],
        [
            [r["id"], r["received_at"][:19], r["reporter"], r["subject"][:60]]
            for r in data["unparsed"]
        ],
    )
    table(
        "Events nobody could be found for",
        ["id", "time", "subject", "category", "reason"],
        [
            [e["id"], e["occurred_at"][:19], e["ip"] or e["domain"], e["category"], e["reason"]]
            for e in data["unresolved"]
        ],
    )


@reports_app.command("review")
def reports_review(ctx: typer.Context, report_id: int, note: Reason = "") -> None:
    """Mark an unparsed report as read by a person."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        service.review_report(op, report_id, note)
    out.print(f"Report {report_id} marked reviewed.")


@reports_app.command("attribute-again")
def reports_attribute_again(ctx: typer.Context) -> None:
    """Try the events nobody could be found for again (after fixing the registry)."""
    runtime = state(ctx).runtime()
    done = service.attribute_again(runtime, operator())
    out.print(
        f"grouped: {done['grouped']}, allowlisted: {done['allowlisted']}, "
        f"still unresolved: {done['still_unresolved']}"
    )


@reports_app.command("listen")
def reports_listen(ctx: typer.Context) -> None:
    """Run the SMTP (or LMTP) intake in the foreground ([cases] smtp_host, smtp_port)."""
    from hostwarden.cases import intake_smtp

    runtime = state(ctx).runtime()
    listener = intake_smtp.start(runtime)
    out.print(
        f"Taking abuse mail on {listener.where} for "
        f"{', '.join(runtime.settings.cases.abuse_addresses)}; Ctrl-C stops."
    )
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()


# --- cases -----------------------------------------------------------------------------------


@cases_app.command("list")
def cases_list(
    ctx: typer.Context,
    state_: Annotated[list[str] | None, typer.Option("--state", help="State (repeat).")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="(repeat)")] = None,
    customer: Annotated[int | None, typer.Option(help="Customer id.")] = None,
    older_than_hours: Annotated[int | None, typer.Option(help="Opened this long ago.")] = None,
    limit: Annotated[int, typer.Option(help="How many (1–1000).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Cases, newest activity first."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows, total = queries.list_cases(
            session,
            states=state_ or [],
            categories=category or [],
            customer_id=customer,
            older_than_hours=older_than_hours,
            limit=limit,
        )
        items = [queries.case_dict(c) for c in rows]
    if as_json:
        print_json({"total": total, "items": items})
        return
    table(
        f"Cases ({len(items)} of {total})",
        ["reference", "state", "category", "subject", "customer", "events", "last event"],
        [
            [
                c["reference"],
                c["state"],
                c["category"],
                c["subject"],
                c["customer_id"],
                c["events"],
                c["last_event_at"][:19],
            ]
            for c in items
        ],
    )


@cases_app.command("show")
def cases_show(ctx: typer.Context, case: str, as_json: JsonOpt = False) -> None:
    """One case with its timeline."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        data = queries.case_detail(session, service.get_case(session, case))
    if as_json:
        print_json(data)
        return
    c = data["case"]
    out.print(f"[bold]{c['reference']}[/bold] {c['category']} {c['subject']} — {c['state']}")
    table(
        "Timeline",
        ["time", "kind", "by", "text"],
        [[t["at"][:19], t["kind"], t["author"], t["text"][:90]] for t in data["timeline"]],
    )


@cases_app.command("notify")
def cases_notify(
    ctx: typer.Context,
    case: str,
    locale: Annotated[str | None, typer.Option(help="en or zh-CN (default: the case's).")] = None,
) -> None:
    """Send the customer the notice with the evidence and the response link."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = service.get_case(op.session, case)
        mail = notify.notify_customer(op, row, locale=locale)
        reference = row.reference
    out.print(f"{reference}: notice queued for {mail.recipient} (mail {mail.id}).")


@cases_app.command("state")
def cases_state(ctx: typer.Context, case: str, to: str, reason: Reason = "") -> None:
    """Move a case on: escalated, suspended, terminated, resolved, ignored, new."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = service.transition(op, service.get_case(op.session, case), to, reason)
        now = row.state
    out.print(f"{case} is now {now}.")


@cases_app.command("note")
def cases_note(ctx: typer.Context, case: str, text: str) -> None:
    """Add an internal note (never sent)."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        service.add_note(op, service.get_case(op.session, case), text)
    out.print("Note added.")


@cases_app.command("authority")
def cases_authority(
    ctx: typer.Context,
    case: str,
    reported: Annotated[bool, typer.Option("--reported/--not-reported")],
    to: Annotated[str, typer.Option(help="To whom (e.g. 公安机关网安部门).")] = "",
    reference: Annotated[str, typer.Option(help="Their reference number.")] = "",
    reason: Reason = "",
) -> None:
    """Record the decision on reporting the case to the authorities (报告主管部门)."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        service.record_authority_decision(
            op,
            service.get_case(op.session, case),
            reported=reported,
            to=to,
            reference=reference,
            reason=reason,
        )
    out.print("Decision recorded.")


@cases_app.command("deadlines")
def cases_deadlines(ctx: typer.Context) -> None:
    """Escalate cases past their deadline and close idle ones now (the scheduler does it
    every minute)."""
    done = service.run_deadlines(state(ctx).runtime())
    out.print(f"escalated: {done['escalated']}, closed as idle: {done['closed_idle']}")


@cases_app.command("sla")
def cases_sla(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Time to first action and to mitigation, per category."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows = service.sla_by_category(session)
    if as_json:
        print_json(rows)
        return

    def hours(value: float | None) -> str:
        return "—" if value is None else f"{value / 3600:.1f} h"

    table(
        "SLA",
        ["category", "cases", "open", "to first action", "to mitigation"],
        [
            [
                r["category"],
                r["cases"],
                r["open"],
                hours(r["first_action_seconds"]),
                hours(r["mitigation_seconds"]),
            ]
            for r in rows
        ],
    )


# --- allowlist and playbooks --------------------------------------------------------------------


@allowlist_app.command("add")
def allowlist_add(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="reporter or address.")],
    value: Annotated[str, typer.Argument(help="abuse@example.net, @example.net, or a CIDR.")],
    mode: Annotated[str, typer.Option(help="reporter: ignore, log, no-ack; address: record.")],
    reason: Reason = "",
    expires: Annotated[str | None, typer.Option(help="ISO 8601 time it ends.")] = None,
) -> None:
    """Add an allowlist entry."""
    runtime = state(ctx).runtime()
    until: datetime | None = parse_time(expires) if expires else None
    with runtime.operation(operator()) as op:
        row = service.add_allowlist(
            op, kind=kind, value=value, mode=mode, reason=reason, expires_at=until
        )
        entry_id = row.id
    out.print(f"Allowlist entry {entry_id} added.")


@allowlist_app.command("list")
def allowlist_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Active allowlist entries."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows = queries.allowlist(session)
    if as_json:
        print_json(rows)
        return
    table(
        "Allowlist",
        ["id", "kind", "value", "mode", "hits", "expires", "reason"],
        [
            [r["id"], r["kind"], r["value"], r["mode"], r["hits"], r["expires_at"], r["reason"]]
            for r in rows
        ],
    )


@allowlist_app.command("remove")
def allowlist_remove(ctx: typer.Context, entry_id: int, reason: Reason = "") -> None:
    """Remove an allowlist entry."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        service.remove_allowlist(op, entry_id, reason)
    out.print(f"Allowlist entry {entry_id} removed.")


@playbook_app.command("list")
def playbook_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every category's playbook."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rules = [r.as_dict() for r in all_playbooks(session).values()]
    if as_json:
        print_json(rules)
        return
    table(
        "Playbooks",
        [
            "category",
            "deadline h",
            "escalate after",
            "on escalation",
            "authority decision",
            "auto notify",
        ],
        [
            [
                r["category"],
                r["deadline_hours"],
                r["escalate_after_events"],
                r["escalation_action"],
                r["authority_decision"],
                r["auto_notify"],
            ]
            for r in rules
        ],
    )


@playbook_app.command("set")
def playbook_set(
    ctx: typer.Context,
    category: str,
    deadline_hours: Annotated[int, typer.Option()],
    escalate_after: Annotated[int, typer.Option()],
    action: Annotated[str, typer.Option(help="none or suspend.")] = "none",
    authority: Annotated[bool, typer.Option("--authority/--no-authority")] = False,
    auto_notify: Annotated[bool, typer.Option("--auto-notify/--no-auto-notify")] = False,
    reason: Reason = "",
) -> None:
    """Set one category's playbook."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        set_playbook(
            op,
            category,
            deadline_hours=deadline_hours,
            escalate_after_events=escalate_after,
            escalation_action=action,
            authority_decision=authority,
            auto_notify=auto_notify,
            reason=reason,
        )
    out.print(f"Playbook {category} set.")


# --- mail ---------------------------------------------------------------------------------------


@mail_app.command("send")
def mail_send(ctx: typer.Context) -> None:
    """Send the queued mail that is due now (the scheduler does it every 30 s)."""
    result = notify.send_due(state(ctx).runtime())
    out.print(", ".join(f"{k}: {v}" for k, v in result.as_dict().items()))


@mail_app.command("list")
def mail_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The newest outgoing mail and its state."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows = queries.outbox(session)
    if as_json:
        print_json(rows)
        return
    table(
        "Outbox",
        ["id", "to", "subject", "status", "attempts", "error"],
        [
            [
                m["id"],
                m["recipient"],
                m["subject"][:50],
                m["status"],
                m["attempts"],
                m["last_error"][:60],
            ]
            for m in rows
        ],
    )
