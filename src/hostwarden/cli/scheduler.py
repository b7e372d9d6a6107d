"""`hostwarden scheduler`: run the job scheduler as a process of its own."""

from __future__ import annotations

import typer

from hostwarden.cli.common import CliState
from hostwarden.core import migrate
from hostwarden.core.config import Settings, load_settings
from hostwarden.core.logs import configure_logging
from hostwarden.core.runtime import Runtime
from hostwarden.core.scheduler import run_forever
from hostwarden.core.setup import is_initialised
from hostwarden.errors import HostwardenError

app = typer.Typer(
    help="The scheduled jobs (only the elected leader among all processes runs them).",
    no_args_is_help=True,
)


@app.callback()
def scheduler() -> None:
    """The scheduled jobs (only the elected leader among all processes runs them)."""
    # A callback keeps `run` a sub-command even while it is the only one.


def _settings(ctx: typer.Context) -> Settings:
    # Mounted under `hostwarden`, honour its --home/--config; alone, read the environment.
    root = ctx.find_root().obj
    return root.settings if isinstance(root, CliState) else load_settings()


@app.command()
def run(ctx: typer.Context) -> None:
    """Run the jobs until SIGTERM or Ctrl-C; start it on several hosts for fail-over."""
    settings = _settings(ctx)
    if not settings.scheduler.enabled:
        raise HostwardenError(
            "the scheduler is disabled (scheduler.enabled = false).",
            hint="Set [scheduler] enabled = true or HOSTWARDEN_SCHEDULER__ENABLED=true.",
        )
    if not is_initialised(settings):
        raise HostwardenError(
            f"{settings.home.resolve()} is not initialised.", hint="Run `hostwarden init` first."
        )
    configure_logging(settings.logging.level, settings.logging.format)
    runtime = Runtime.open(settings)
    try:
        if not migrate.is_current(runtime.db.engine):
            raise HostwardenError(
                "the database schema is not current.", hint="Run `hostwarden db upgrade`."
            )
        run_forever(runtime)
    finally:
        runtime.close()
