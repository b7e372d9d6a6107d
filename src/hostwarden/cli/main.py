"""Entry point of the `hostwarden` command: global options, sub-apps, error handling."""

from __future__ import annotations

import gc
import os
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from typer.core import TyperGroup

from hostwarden import __version__
from hostwarden.cases import cli as cases_cli
from hostwarden.cli import scheduler as scheduler_cli
from hostwarden.cli.common import (
    CliState,
    JsonOpt,
    ReasonOpt,
    err,
    operator,
    out,
    print_json,
    read_secret,
    state,
    table,
)
from hostwarden.core import audit, auth, migrate
from hostwarden.core.audit import canonical_json
from hostwarden.core.config import mask_database_url
from hostwarden.core.db import Database
from hostwarden.core.logs import configure_logging
from hostwarden.core.models import AuditEntry
from hostwarden.core.setup import init as init_home
from hostwarden.core.setup import is_initialised
from hostwarden.core.timeutil import isoformat, parse_time
from hostwarden.detect.cli import detect_app
from hostwarden.errors import HostwardenError
from hostwarden.flows import cli_logs
from hostwarden.flows.cli import flows_app
from hostwarden.registry import cli_admission, cli_bulk, cli_customers, cli_inventory, cli_webhooks

app = typer.Typer(
    name="hostwarden",
    help="Compliance and abuse response for hosting providers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Relational database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Effective configuration.", no_args_is_help=True)
user_app = typer.Typer(help="Console and API users.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for other systems.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(scheduler_cli.app, name="scheduler")
app.add_typer(cli_admission.provisioning_app, name="provisioning")
app.add_typer(cli_admission.commitment_app, name="commitment")
app.add_typer(cli_customers.registry_app, name="registry")
app.add_typer(cli_customers.customer_app, name="customer")
app.add_typer(cli_inventory.inventory_app, name="inventory")
app.add_typer(cli_webhooks.app, name="webhook")
app.add_typer(cli_logs.logs_app, name="logs")
app.add_typer(flows_app, name="flows")
app.add_typer(detect_app, name="detect")
app.add_typer(cases_cli.reports_app, name="reports")
app.add_typer(cases_cli.cases_app, name="cases")
app.add_typer(cases_cli.mail_app, name="mail")
app.command("import")(cli_bulk.import_command)
app.command("export")(cli_bulk.export_command)
app.command("attribute")(cli_inventory.attribute_command)


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="Data directory (default $HOSTWARDEN_HOME or ./hostwarden-data)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="hostwarden.toml to read instead of the one in --home."),
    ] = None,
) -> None:
    ctx.obj = CliState(home, config)
    # Log lines go to stderr, masked, so that --json output on stdout stays parseable and
    # personal data never reaches a terminal unmasked; a one-shot command only says what
    # went wrong (WARNING) unless HOSTWARDEN_LOGGING__LEVEL asks for more. `serve` and
    # `flows collect` configure again from the settings.
    level = os.environ.get("HOSTWARDEN_LOGGING__LEVEL", "WARNING").upper()
    configure_logging(
        level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING", "console"
    )


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def init(
    ctx: typer.Context,
    admin: Annotated[str, typer.Option(help="Username of the first administrator.")] = "admin",
) -> None:
    """Create the data directory, signing key and schema; safe to run again."""
    settings = state(ctx).settings
    result = init_home(settings, admin_username=admin)
    where = settings.home.resolve()
    if result.created_key:
        out.print(f"Initialised {where} (signing key created, schema at {result.migrated_to}).")
    elif result.migrated_from != result.migrated_to:
        out.print(f"Schema of {where} upgraded {result.migrated_from} → {result.migrated_to}.")
    else:
        out.print(f"{where} is already initialised (schema {result.migrated_to}).")
    if result.admin_password:
        out.print(
            f"First administrator: [bold]{admin}[/bold]  "
            f"password: [bold]{result.admin_password}[/bold]"
        )
        out.print("Write the password down now: it is shown this once.")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on (server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (server.port).")] = None,
    scheduler: Annotated[bool, typer.Option(help="Run scheduled jobs in this process.")] = True,
    collectors: Annotated[
        bool, typer.Option(help="Start the flow collectors ([flows] listeners) too.")
    ] = True,
) -> None:
    """Serve the API and the web console."""
    import uvicorn

    from hostwarden.api.app import create_app
    from hostwarden.registry import attribution

    cli = state(ctx)
    settings = cli.settings
    if not is_initialised(settings):
        raise HostwardenError(
            f"{settings.home.resolve()} is not initialised.", hint="Run `hostwarden init` first."
        )
    configure_logging(settings.logging.level, settings.logging.format)
    runtime = cli.runtime()
    if not migrate.is_current(runtime.db.engine):
        raise HostwardenError(
            "the database schema is not current.", hint="Run `hostwarden db upgrade`."
        )
    bind_host = host or settings.server.host
    bind_port = port or settings.server.port
    if not 1 <= bind_port <= 65535:
        raise HostwardenError(f"port {bind_port} is out of range.", hint="Use 1–65535.")
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    out.print(f"hostwarden {__version__} console and API on http://{shown}:{bind_port}/")
    app = create_app(runtime, run_scheduler=scheduler)
    # Build the attribution index now rather than on the first lookup (seconds for a
    # million assignments) and keep it current, in the background, so the server starts
    # listening at once and no request waits for a generation check.
    threading.Thread(
        target=attribution.keep_warm,
        args=(runtime, threading.Event()),
        name="attribution-warm",
        daemon=True,
    ).start()
    group = None
    if collectors:
        from hostwarden.flows.collector import CollectorGroup

        group = CollectorGroup(settings, cli.config)
        group.start()
        listening = ", ".join(f"{x.protocol} udp/{x.port}" for x in settings.flows.listeners)
        out.print(f"flow collectors: {settings.flows.workers} worker(s) on {listening}")
    intake = None
    if settings.cases.listen:
        from hostwarden.cases import intake_smtp

        intake = intake_smtp.start(runtime)
        out.print(f"abuse mail intake: {intake.where}")
    # Everything built so far lives as long as the process: moving it out of the
    # garbage collector's generations keeps full collections (latency spikes) short.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            app,
            host=bind_host,
            port=bind_port,
            log_config=None,
            access_log=False,
        )
    finally:
        if group is not None:
            group.stop()
        if intake is not None:
            intake.stop()


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations."""
    database = Database(state(ctx).settings.database_url)
    try:
        before, after = migrate.upgrade(database.engine)
    finally:
        database.dispose()
    out.print(
        f"Schema {before or 'empty'} → {after}."
        if before != after
        else f"Schema already at {after}."
    )


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Show the schema revision and whether it is current."""
    settings = state(ctx).settings
    database = Database(settings.database_url)
    try:
        current = migrate.current_revision(database.engine)
    finally:
        database.dispose()
    head = migrate.head_revision()
    out.print(f"{mask_database_url(settings.database_url)}: at {current or 'empty'}, newest {head}")
    if current != head:
        raise typer.Exit(1)


@config_app.command("show")
def config_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Print the effective configuration, secrets masked."""
    view = state(ctx).settings.public_view()
    if as_json:
        print_json(view)
        return
    rows: list[list[object]] = []
    for key, value in view.items():
        if isinstance(value, dict):
            rows.extend([f"{key}.{k}", v] for k, v in value.items())
        else:
            rows.append([key, value])
    table("Effective configuration", ["key", "value"], rows)


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: str,
    role: Annotated[list[str], typer.Option("--role", "-r", help="Role; repeat for several.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    email: Annotated[str, typer.Option(help="E-mail address.")] = "",
    locale: Annotated[str, typer.Option(help="en or zh-CN.")] = "en",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
    reason: ReasonOpt = "",
) -> None:
    """Add a user; without --password-stdin a password is generated and shown once."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else auth.generate_password()
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        user = auth.create_user(
            op,
            username,
            password,
            role,
            display_name=name,
            email=email,
            locale=locale,
            reason=reason,
        )
    out.print(f"User {user.username} created with roles {', '.join(user.role_list)}.")
    if not password_stdin:
        out.print(f"Password (shown once): [bold]{password}[/bold]")


@user_app.command("list")
def user_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List users (e-mail addresses masked)."""
    from hostwarden.core.schemas import UserOut

    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        users = [UserOut.of(u) for u in auth.list_users(session)]
    if as_json:
        print_json([u.model_dump(mode="json") for u in users])
        return
    table(
        "Users",
        ["id", "username", "name", "roles", "active", "locked until", "last sign-in"],
        [
            [
                u.id,
                u.username,
                u.display_name,
                ",".join(u.roles),
                "yes" if u.is_active else "no",
                u.locked_until and isoformat(u.locked_until),
                u.last_login_at and isoformat(u.last_login_at),
            ]
            for u in users
        ],
    )


def _set_active(ctx: typer.Context, username: str, active: bool, reason: str) -> None:
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        user = auth.get_user_by_name(op.session, username)
        auth.update_user(op, user.id, is_active=active, reason=reason)
    out.print(f"User {username} {'enabled' if active else 'disabled'}.")


@user_app.command("disable")
def user_disable(ctx: typer.Context, username: str, reason: ReasonOpt = "") -> None:
    """Disable a user: no sign-in, no API; sessions end at once."""
    _set_active(ctx, username, False, reason)


@user_app.command("enable")
def user_enable(ctx: typer.Context, username: str, reason: ReasonOpt = "") -> None:
    """Enable a disabled user again."""
    _set_active(ctx, username, True, reason)


@user_app.command("passwd")
def user_passwd(
    ctx: typer.Context,
    username: str,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
    generate: Annotated[bool, typer.Option(help="Generate a password and show it once.")] = False,
    reason: ReasonOpt = "",
) -> None:
    """Set a user's password (also lifts a lock-out)."""
    password = auth.generate_password() if generate else read_secret("New password", password_stdin)
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        user = auth.get_user_by_name(op.session, username)
        auth.set_password(op, user.id, password, reason=reason)
    out.print(f"Password of {username} set; its sessions were ended.")
    if generate:
        out.print(f"Password (shown once): [bold]{password}[/bold]")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="Owner of the token.")],
    name: Annotated[str, typer.Option("--name", "-n", help="What will use it.")],
    role: Annotated[
        list[str] | None, typer.Option("--role", "-r", help="Restrict to these roles.")
    ] = None,
    days: Annotated[int, typer.Option(help="Days until it expires.")] = 90,
    as_json: JsonOpt = False,
    reason: ReasonOpt = "",
) -> None:
    """Create an API token; the secret is printed once."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        owner = auth.get_user_by_name(op.session, user)
        token, secret = auth.create_token(op, owner.id, name, roles=role, days=days, reason=reason)
        summary = {
            "id": token.id,
            "prefix": token.prefix,
            "user": owner.username,
            "roles": token.role_list,
            "expires_at": isoformat(token.expires_at),
            "token": secret,
        }
    if as_json:
        print_json(summary)
        return
    out.print(
        f"Token {token.id} ({token.prefix}) for {user}, roles {', '.join(token.role_list)}, "
        f"expires {summary['expires_at']}."
    )
    out.print(f"Secret (shown once): [bold]{secret}[/bold]")


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List API tokens (never their secrets)."""
    from hostwarden.core.schemas import TokenOut

    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        owner = auth.get_user_by_name(session, user).id if user else None
        tokens = [TokenOut.of(t) for t in auth.list_tokens(session, owner)]
    if as_json:
        print_json([t.model_dump(mode="json") for t in tokens])
        return
    table(
        "API tokens",
        ["id", "prefix", "user", "name", "roles", "expires", "revoked", "last used"],
        [
            [
                t.id,
                t.prefix,
                t.username,
                t.name,
                ",".join(t.roles),
                isoformat(t.expires_at),
                t.revoked_at and isoformat(t.revoked_at),
                t.last_used_at and isoformat(t.last_used_at),
            ]
            for t in tokens
        ],
    )


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: int, reason: ReasonOpt = "") -> None:
    """Revoke a token at once."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        auth.revoke_token(op, token_id, reason=reason)
    out.print(f"Token {token_id} revoked.")


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Re-hash every entry, check every link and signature; exit 1 naming the first
    tampered entry."""
    runtime = state(ctx).runtime()
    report = audit.verify(runtime)
    if as_json:
        print_json(report.as_dict())
    elif report.ok:
        out.print(
            f"[green]Audit trail intact[/green]: {report.entries} entries, "
            f"{report.checkpoints} signed checkpoints, head #{report.head_seq} "
            f"{report.head_hash[:16]}…"
        )
    else:
        first = report.first
        assert first is not None
        err.print(
            f"[red]Audit trail broken[/red] at entry #{first.seq} ({first.kind}): "
            f"{escape(first.message)}"
        )
        for problem in report.problems:
            if problem is not first:
                err.print(f"  also: {problem.message}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--from", help="ISO date/time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option("--to", help="ISO date/time, exclusive.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
) -> None:
    """Write entries as JSON lines in chain order, with their hashes."""
    start: datetime | None = parse_time(since) if since else None
    end: datetime | None = parse_time(until) if until else None
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        total = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
        if output is None:
            for item in audit.iter_export(session, start, end):
                sys.stdout.write(canonical_json(item) + "\n")
            return
        tmp = output.with_name(output.name + ".partial")
        written = 0
        with Progress(
            TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
        ) as progress:
            task = progress.add_task("export", total=total)
            with tmp.open("w", encoding="utf-8") as handle:
                for item in audit.iter_export(session, start, end):
                    handle.write(canonical_json(item) + "\n")
                    written += 1
                    progress.advance(task)
        tmp.replace(output)
    err.print(f"{written} entries written to {output}.")


# Typer's own usage errors, exits and aborts travel as exceptions and must reach its main
# loop; it vendors click, so the common base is found from a public class rather than
# imported from a private module.
_CLICK_EXCEPTION: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
_CLI_FLOW: tuple[type[Exception], ...] = (typer.Exit, typer.Abort, _CLICK_EXCEPTION)


class _Group(TyperGroup):
    """Turns the errors an operator can cause into one line on stderr and exit 1, for
    every command (and for CliRunner in tests, which never goes through main())."""

    def invoke(self, ctx: Any) -> Any:
        if os.environ.get("HOSTWARDEN_DEBUG"):
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except HostwardenError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
        except OperationalError as exc:
            err.print(
                f"[red]error:[/red] cannot reach the database: {escape(str(exc.orig))}. "
                "Check database.url and that the server runs."
            )
        except SQLAlchemyError as exc:
            err.print(
                f"[red]error:[/red] database error: {exc.__class__.__name__}: "
                f"{escape(str(exc))}. If the schema is old, run `hostwarden db upgrade`."
            )
        except _CLI_FLOW:
            raise
        except Exception as exc:  # a bug: still one line, and the way to the traceback
            err.print(
                f"[red]error:[/red] unexpected failure: {exc.__class__.__name__}: "
                f"{escape(str(exc))}. Run again with HOSTWARDEN_DEBUG=1 for the traceback "
                "and report it."
            )
            raise typer.Exit(2) from None
        raise typer.Exit(1)


app.info.cls = _Group


def main() -> None:
    """Run the CLI; errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
