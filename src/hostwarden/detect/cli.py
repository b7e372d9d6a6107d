"""`hostwarden detect …`: alerts, suppressions and deliveries from the shell (and replay)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hostwarden.cli.common import JsonOpt, operator, out, print_json, state, table
from hostwarden.detect import alerts, delivery
from hostwarden.detect.cli_replay import replay_command

detect_app = typer.Typer(
    help="Abuse detection: alerts, suppressions, deliveries, replay.", no_args_is_help=True
)
alerts_app = typer.Typer(help="Alerts raised by the detectors.", no_args_is_help=True)
suppress_app = typer.Typer(
    help="Suppressions: keep findings of a prefix from becoming alerts.", no_args_is_help=True
)
detect_app.add_typer(alerts_app, name="alerts")
detect_app.add_typer(suppress_app, name="suppress")

NeededReason = Annotated[str, typer.Option("--reason", help="Why (required; audited).")]


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# --- alerts -----------------------------------------------------------------------------------


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    category: Annotated[
        list[str] | None, typer.Option("--category", "-c", help="Category (repeat).")
    ] = None,
    severity: Annotated[
        list[str] | None, typer.Option("--severity", "-s", help="Severity (repeat).")
    ] = None,
    status: Annotated[str | None, typer.Option(help="open or closed.")] = None,
    customer: Annotated[int | None, typer.Option(help="Customer id.")] = None,
    ip: Annotated[str | None, typer.Option(help="Address or CIDR prefix.")] = None,
    since: Annotated[str | None, typer.Option(help="Seen after (ISO 8601 or date).")] = None,
    until: Annotated[str | None, typer.Option(help="Seen before (ISO 8601 or date).")] = None,
    limit: Annotated[int, typer.Option(help="How many (1–1000).")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many first.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Alerts matching every filter given, newest first."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows, total = alerts.list_alerts(
            session,
            category=category or [],
            severity=severity or [],
            status=status,
            customer_id=customer,
            ip=ip,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        items = [alerts.alert_dict(a) for a in rows]
    if as_json:
        print_json({"total": total, "limit": limit, "offset": offset, "items": items})
        return
    table(
        f"Alerts ({len(items)} of {total})",
        ["id", "last seen", "severity", "category", "ip", "customer", "status", "summary"],
        [
            [
                a["id"],
                a["last_seen"][:19],
                a["severity"],
                f"{a['category']}/{a['kind']}" if a["kind"] else a["category"],
                a["ip"],
                a["customer_id"],
                a["status"] if a["feedback"] == "none" else f"{a['status']} ({a['feedback']})",
                _short(a["summary"]),
            ]
            for a in items
        ],
    )


def _print_alert(a: dict[str, Any]) -> None:
    out.print(f"[bold]Alert {a['id']}[/bold]: {a['summary']}")
    rows: list[tuple[str, Any]] = [
        ("category", f"{a['category']} / {a['kind']}"),
        ("severity", a["severity"]),
        ("address", f"{a['ip']} ({a['direction']})"),
        ("customer", a["customer_id"]),
        ("instance", a["instance_id"]),
        ("window", f"{a['first_seen']} – {a['last_seen']} ({a['window_seconds']} s windows)"),
        ("updates", a["updates"]),
        ("detector", a["detector"]),
        ("status", a["status"]),
        ("closed", a["closed_at"] and f"{a['closed_at']} by {a['closed_by']}: {a['close_reason']}"),
        ("feedback", a["feedback"]),
        ("feedback by", a["feedback_by"] and f"{a['feedback_by']}: {a['feedback_reason']}"),
        ("suggested", a["suggested_action"]),
        ("counts", ", ".join(f"{k}={v}" for k, v in sorted(a["counts"].items()))),
        ("top peers", ", ".join(str(p.get("ip", p)) for p in a["top_peers"][:5])),
        ("top ports", ", ".join(str(p.get("port", p)) for p in a["top_ports"][:5])),
        ("evidence", a["evidence"]["url"]),
    ]
    table("", ["field", "value"], [[k, v] for k, v in rows])


@alerts_app.command("show")
def alerts_show(ctx: typer.Context, alert_id: int, as_json: JsonOpt = False) -> None:
    """One alert in full, with the flow query of its evidence."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        data = alerts.alert_dict(alerts.get_alert(session, alert_id))
    if as_json:
        print_json(data)
    else:
        _print_alert(data)


@alerts_app.command("close")
def alerts_close(ctx: typer.Context, alert_id: int, reason: NeededReason = "") -> None:
    """Close an alert; a later finding of the address opens a new one."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        alerts.close_alert(op, alert_id, reason=reason)
    out.print(f"Alert {alert_id} closed.")


@alerts_app.command("feedback")
def alerts_feedback(
    ctx: typer.Context,
    alert_id: int,
    verdict: Annotated[str, typer.Argument(help="true-positive or false-positive.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (required for a false positive; audited).")
    ] = "",
) -> None:
    """Say whether the alert was right."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        alert = alerts.record_feedback(op, alert_id, verdict, reason=reason)
        given = alert.feedback
    out.print(f"Alert {alert_id} marked {given}.")


# --- suppressions ---------------------------------------------------------------------------------


@suppress_app.command("add")
def suppress_add(
    ctx: typer.Context,
    cidr: Annotated[str, typer.Argument(help="Address or CIDR prefix.")],
    reason: NeededReason = "",
    customer: Annotated[int | None, typer.Option(help="Only this customer's findings.")] = None,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    expires: Annotated[
        str, typer.Option(help="12h, 7d, a date, an ISO 8601 moment, or never.")
    ] = "never",
    as_json: JsonOpt = False,
) -> None:
    """Keep findings of a prefix from becoming alerts (they are counted instead)."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        rule = alerts.add_suppression(
            op, cidr, reason=reason, customer_id=customer, category=category, expires=expires
        )
        data = alerts.suppression_dict(rule)
    if as_json:
        print_json(data)
        return
    until = data["expires_at"] or "removed"
    out.print(f"Suppression {data['id']} of {data['cidr']} added, until {until}.")


@suppress_app.command("list")
def suppress_list(
    ctx: typer.Context,
    include_all: Annotated[
        bool, typer.Option("--all", help="Also removed and expired ones.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Suppressions, newest first (active ones unless --all)."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rules = [
            alerts.suppression_dict(r)
            for r in alerts.list_suppressions(session, include_inactive=include_all)
        ]
    if as_json:
        print_json(rules)
        return
    table(
        "Suppressions",
        ["id", "cidr", "customer", "category", "expires", "hits", "active", "by", "reason"],
        [
            [
                r["id"],
                r["cidr"],
                r["customer_id"],
                r["category"] or "all",
                r["expires_at"] or "never",
                r["hits"],
                "yes" if r["active"] else "no",
                r["created_by"],
                _short(r["reason"], 50),
            ]
            for r in rules
        ],
    )


@suppress_app.command("remove")
def suppress_remove(ctx: typer.Context, suppression_id: int, reason: NeededReason = "") -> None:
    """End a suppression."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        alerts.remove_suppression(op, suppression_id, reason=reason)
    out.print(f"Suppression {suppression_id} removed.")


# --- deliveries ---------------------------------------------------------------------------------


@detect_app.command("deliver")
def deliver(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Send the queued alert deliveries that are due now (the scheduler does this every
    [detect] delivery_interval_seconds); exit 1 if any failed."""
    runtime = state(ctx).runtime()
    report = delivery.deliver_due(runtime)
    if as_json:
        print_json(report.as_dict())
    else:
        out.print(
            f"{report.delivered} delivered, {report.retrying} to retry, {report.failed} given up."
        )
        for error in report.errors:
            out.print(f"  {error}")
    if report.retrying or report.failed:
        raise typer.Exit(1)


# --- replay -------------------------------------------------------------------------------------
# `hostwarden detect replay FILE | --from --to` (alerts as JSON lines, the live code path)
# is written by the lead and registered here on `detect_app`.
detect_app.command("replay")(replay_command)
