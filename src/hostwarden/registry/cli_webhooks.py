"""`hostwarden webhook …`: the systems allowed to push inventory changes."""

from __future__ import annotations

import typer

from hostwarden.cli.common import JsonOpt, ReasonOpt, operator, out, print_json, state, table
from hostwarden.core.timeutil import isoformat
from hostwarden.registry import webhooks

app = typer.Typer(
    help="Change-feed sources (billing, panels) and their secrets.", no_args_is_help=True
)


@app.command("source-add")
def source_add(ctx: typer.Context, name: str, reason: ReasonOpt = "") -> None:
    """Register a source; its signing secret is printed once."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        _, secret = webhooks.create_source(op, name, reason=reason)
    out.print(f"Source {name} registered. Secret (shown once): [bold]{secret}[/bold]")
    out.print(f"Endpoint: POST /api/v1/webhooks/{name.strip().lower()}")


@app.command("source-rotate")
def source_rotate(ctx: typer.Context, name: str, reason: ReasonOpt = "") -> None:
    """Replace a source's secret; the old one stops working at once."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        secret = webhooks.rotate_secret(op, name, reason=reason)
    out.print(f"New secret for {name} (shown once): [bold]{secret}[/bold]")


@app.command("source-disable")
def source_disable(ctx: typer.Context, name: str, reason: ReasonOpt = "") -> None:
    """Refuse further deliveries from a source."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        webhooks.set_active(op, name, False, reason=reason)
    out.print(f"Source {name} disabled.")


@app.command("source-list")
def source_list(
    ctx: typer.Context,
    as_json: JsonOpt = False,
) -> None:
    """List sources (never their secrets)."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows = [
            {"name": s.name, "active": s.is_active, "created_at": isoformat(s.created_at)}
            for s in webhooks.list_sources(session)
        ]
    if as_json:
        print_json(rows)
        return
    table(
        "Webhook sources",
        ["name", "active", "created"],
        [[r["name"], "yes" if r["active"] else "no", r["created_at"]] for r in rows],
    )
