"""`hostwarden import` and `hostwarden export`: registry records in bulk, CSV or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from hostwarden.cli.common import err, operator, out, print_json, state
from hostwarden.errors import ValidationFailed
from hostwarden.registry import bulk
from hostwarden.registry.importers import IMPORTERS, check_kind, export_chunks

KINDS = ", ".join(IMPORTERS)


def import_command(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"One of: {KINDS}.")],
    file: Annotated[Path, typer.Argument(help="CSV (with a header row) or JSON file.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or json (default: the file's extension).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything, write nothing.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Write the good rows, report the bad ones.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import records; upserts by external id. Any bad row stops the whole file (nothing is
    written) unless --skip-invalid. Exit 1 when any row was refused."""
    importer = IMPORTERS[check_kind(kind)]
    if not file.is_file():
        raise ValidationFailed(f"{file} does not exist.", hint="Give the path of the file.")
    rows = bulk.read_rows(file.read_bytes(), bulk.detect_format(file, fmt))
    runtime = state(ctx).runtime()
    with Progress(
        TextColumn(f"importing {kind}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task("import", total=len(rows))
        report = bulk.run_import(
            runtime,
            operator(),
            importer,
            rows,
            dry_run=dry_run,
            skip_invalid=skip_invalid,
            progress=lambda n: progress.advance(task, n),
        )
    if as_json:
        print_json(report.as_dict())
    else:
        verb = "would be" if dry_run else ("were" if report.written else "would have been")
        out.print(
            f"{report.total} rows: {report.created} created, {report.updated} updated, "
            f"{report.unchanged} unchanged {verb}; {len(report.errors)} refused."
        )
        for error in report.errors:
            err.print(f"  {error}")
        if report.errors and not report.written and not dry_run:
            err.print("Nothing was written. Fix the rows above, or use --skip-invalid.")
    if report.errors:
        raise typer.Exit(1)


def export_command(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"One of: {KINDS}.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or json (JSON lines).")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
) -> None:
    """Export records in the shape `hostwarden import` reads (phone and ID numbers are
    left out)."""
    chunks = export_chunks(state(ctx).runtime(), kind, fmt, operator())
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        return
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        for chunk in chunks:
            handle.write(chunk)
    partial.replace(output)
    err.print(f"{kind} written to {output}.")
