"""`hostwarden flows …`: collect exports, import files, query the store."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hostwarden.cli.common import JsonOpt, err, out, print_json, state, table
from hostwarden.errors import ValidationFailed
from hostwarden.flows import imports

flows_app = typer.Typer(help="Flow collection, imports and queries.", no_args_is_help=True)


@flows_app.command("collect")
def collect(ctx: typer.Context) -> None:
    """Receive NetFlow/IPFIX/sFlow exports on the configured UDP listeners until stopped
    (Ctrl-C or SIGTERM); `serve` starts the same collectors with the service."""
    from hostwarden.core.logs import configure_logging
    from hostwarden.flows.collector import CollectorGroup

    cli = state(ctx)
    settings = cli.settings
    configure_logging(settings.logging.level, settings.logging.format)
    group = CollectorGroup(settings, cli.config)
    group.start()
    listening = ", ".join(f"{x.protocol} [{x.host}]:{x.port}" for x in settings.flows.listeners)
    out.print(f"collecting with {settings.flows.workers} worker(s) on {listening}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set() and group.alive():
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        group.stop()
    if not stop.is_set() and not group.alive():
        err.print("every collector worker stopped; see the log lines above for why")
        raise typer.Exit(1)


FormatOpt = Annotated[str, typer.Option("--format", "-f", help="auto, pcap, nfdump-csv or jsonl.")]


@flows_app.command("import")
def import_command(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Files to import.")],
    fmt: FormatOpt = "auto",
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Zone of times written without one (nfdump CSV)."),
    ] = None,
    exporter: Annotated[
        str, typer.Option(help="Exporter address to record when the file has none.")
    ] = "",
    json_out: JsonOpt = False,
) -> None:
    """Import flow records (pcap/pcapng of export datagrams, nfdump CSV, JSON lines),
    attributed at ingest, into the store."""
    from hostwarden.flows.ingest import Ingestor
    from hostwarden.flows.store import open_store

    imports.check_format(fmt)
    runtime = state(ctx).runtime()
    store = open_store(runtime)
    reports: list[dict[str, Any]] = []
    try:
        ingestor = Ingestor(runtime, store)
        for path in files:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=json_out,
            ) as bar:
                task = bar.add_task(path.name, total=path.stat().st_size if path.is_file() else 0)

                def checking(on: bool, task: Any = task, name: str = path.name) -> None:
                    bar.update(task, description=f"{name} (checking)" if on else name)

                def advance(done: int, task: Any = task) -> None:
                    bar.update(task, completed=done)

                report = imports.import_file(
                    ingestor,
                    path,
                    fmt,
                    tz=tz,
                    exporter=exporter,
                    progress=advance,
                    checking=checking,
                )
            reports.append(report.as_dict())
        store.flush()
    finally:
        store.close()
        runtime.close()
    if json_out:
        print_json(reports if len(reports) != 1 else reports[0])
        return
    for r in reports:
        rate = f"{r['records_per_second']:,}/s" if r["records_per_second"] else "—"
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"
        out.print(
            f"{r['path']} ({r['format']}): {r['records']:,} records, {r['attributed']:,} "
            f"attributed to a customer, {r['seconds']:.2f} s ({rate}); decode problems: {errors}"
        )
        for note in r["notes"]:
            out.print(f"  note: {note}")


def _moment_ms(text: str, what: str) -> int:
    from hostwarden.registry.inventory import aware_time

    return int(aware_time(text, what).timestamp() * 1000)


@flows_app.command("query")
def query_command(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--from", help="Start, ISO 8601 with zone.")],
    end: Annotated[str, typer.Option("--to", help="End (exclusive), ISO 8601 with zone.")],
    ip: Annotated[list[str], typer.Option("--ip", help="Address (repeatable).")] = [],  # noqa: B006
    customer: Annotated[
        list[int], typer.Option("--customer", help="Customer id (repeatable).")
    ] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="Most records to show.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Stored records in a time range, for addresses and/or customers."""
    from hostwarden.flows.store import open_store

    start_ms, end_ms = _moment_ms(start, "--from"), _moment_ms(end, "--to")
    if end_ms <= start_ms:
        raise ValidationFailed("--to must be after --from.", hint="Give a non-empty range.")
    if limit < 1:
        raise ValidationFailed("--limit must be at least 1.", hint="For example --limit 100.")
    runtime = state(ctx).runtime()
    store = open_store(runtime)
    try:
        began = time.perf_counter()
        found = store.query(
            start_ms=start_ms, end_ms=end_ms, ips=ip, customers=customer, limit=limit
        )
        seconds = time.perf_counter() - began
    finally:
        store.close()
        runtime.close()
    rows = found.to_pylist()
    if json_out:
        print_json(rows)
        return
    shown = ["start", "src", "src_port", "dst", "dst_port", "proto", "packets", "bytes"]
    shown += ["customer_id"]
    table(
        f"{len(rows)} record(s) in {seconds * 1000:.0f} ms",
        shown,
        [[r.get(c, "") for c in shown] for r in rows],
    )
