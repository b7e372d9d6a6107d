"""``hostwarden detect replay FILE | --from --to``: findings as JSON lines on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from hostwarden.cli.common import err, state
from hostwarden.detect.findings import Finding
from hostwarden.errors import ValidationFailed
from hostwarden.flows.holds import moment_ms


def _emit(finding: Finding) -> None:
    sys.stdout.write(json.dumps(finding.as_dict(), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def replay_command(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(
            help="A file `flows import` reads (pcap of exports, nfdump CSV, JSON "
            "lines) or an sshd log; or give --from/--to for stored records."
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Start of a stored range (ISO time or date).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End of the stored range.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto, pcap, nfdump-csv, jsonl or ssh-auth.")
    ] = "auto",
    tz: Annotated[
        str | None, typer.Option("--tz", help="Zone of times written without one.")
    ] = None,
    exporter: Annotated[str, typer.Option(help="Exporter address when the file has none.")] = "",
    server_ip: Annotated[
        str | None, typer.Option("--server-ip", help="Server address of sshd logs.")
    ] = None,
    year: Annotated[int | None, typer.Option(help="Year of classic syslog times.")] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record", help="Also record the findings as alerts (deduplicated, audited)."
        ),
    ] = False,
) -> None:
    """Run the live detectors over a file or a stored range; each finding is printed as
    one JSON line (provider-side IP, category, kind, window, counts, peers). A summary
    goes to stderr."""
    from hostwarden.detect import replay

    if (file is None) == (start is None and end is None):
        raise ValidationFailed(
            "give either a FILE or --from and --to, not both and not neither.",
            hint="e.g. `hostwarden detect replay exports.pcap` or "
            "`hostwarden detect replay --from 2026-05-04 --to 2026-05-05`.",
        )
    runtime = state(ctx).runtime()
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            if file is not None:
                task = bar.add_task(file.name, total=file.stat().st_size if file.is_file() else 0)
                report = replay.replay_file(
                    runtime,
                    file,
                    fmt,
                    emit=_emit,
                    record=record,
                    tz=tz,
                    exporter=exporter,
                    server_ip=server_ip,
                    year=year,
                    progress=lambda done: bar.update(task, completed=done),
                )
            else:
                if start is None or end is None:
                    raise ValidationFailed(
                        "a stored range needs both --from and --to.",
                        hint="e.g. --from 2026-05-04T00:00Z --to 2026-05-04T06:00Z",
                    )
                start_ms = moment_ms(start, "--from")
                end_ms = moment_ms(end, "--to", end=True)
                task = bar.add_task("stored records", total=max(end_ms - start_ms, 1))
                report = replay.replay_range(
                    runtime,
                    start_ms,
                    end_ms,
                    emit=_emit,
                    record=record,
                    progress=lambda step: bar.advance(task, step),
                )
    finally:
        runtime.close()
    summary: dict[str, Any] = report.as_dict()
    engine = summary.get("engine") or {}
    late = f", {engine['late']:,} late" if engine.get("late") else ""
    err.print(
        f"{summary['source']} ({summary['format']}): {summary['records']:,} records, "
        f"{summary['findings']:,} finding(s){late}"
        + (f", {summary['alerts_recorded']:,} recorded as alerts" if record else "")
    )
