"""What every CLI command shares: the runtime from --home/--config, output helpers."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hostwarden.core.config import Settings, load_settings
from hostwarden.core.runtime import Actor, Runtime, new_request_id

#: Options every command shares the wording of.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; recorded in the audit trail.")]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CliState:
    def __init__(self, home: Path | None, config: Path | None) -> None:
        self.home = home
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(home=self.home, config_file=self.config)
        return self._settings

    def runtime(self) -> Runtime:
        return Runtime.open(self.settings)


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def operator() -> Actor:
    """The person at the server's shell: whoever can read the data directory's key is
    trusted as an administrator, and is named by their system account in the trail."""
    return Actor(f"cli:{getpass.getuser()}", ("admin",), new_request_id())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*["—" if v is None or v == "" else str(v) for v in row])
    out.print(grid)


def read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))
