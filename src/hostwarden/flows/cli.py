"""`hostwarden flows …`: collect exports, import files, query records, top talkers and series."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO

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
from hostwarden.flows.holds import moment_ms

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


FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="auto, pcap, nfdump-csv, jsonl; logs: nginx, nginx-json, nat-syslog, ssh-auth.",
    ),
]


@flows_app.command("import")
def import_command(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Files to import.")],
    fmt: FormatOpt = "auto",
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Zone of times written without one (nfdump CSV, syslog)."),
    ] = None,
    exporter: Annotated[
        str, typer.Option(help="Exporter address to record when the file has none.")
    ] = "",
    server_ip: Annotated[
        str | None,
        typer.Option("--server-ip", help="Server address of HTTP/SSH logs that name none."),
    ] = None,
    year: Annotated[
        int | None,
        typer.Option("--year", help="Year of classic syslog times (default: the file's)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Import flow records (pcap/pcapng of export datagrams, nfdump CSV, JSON lines) or
    logs (HTTP access, NAT port blocks, SSH logins), attributed at ingest, into the store."""
    from hostwarden.flows.ingest import Ingestor
    from hostwarden.flows.store import open_store
    from hostwarden.flows.store.datasets import LogStore

    imports.check_format(fmt)
    runtime = state(ctx).runtime()
    store = open_store(runtime)
    logs = LogStore(runtime)
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
                    logs=logs,
                    server_ip=server_ip,
                    year=year,
                )
            reports.append(report.as_dict())
        store.flush()
        logs.flush()
    finally:
        logs.close()
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


# --- queries ----------------------------------------------------------------------------

FromOpt = Annotated[
    str, typer.Option("--from", help="Start, ISO 8601 with zone; a bare date is that UTC day.")
]
ToOpt = Annotated[
    str,
    typer.Option("--to", help="End (exclusive), ISO 8601 with zone; a bare date ends that day."),
]
IpOpt = Annotated[
    list[str], typer.Option("--ip", help="Address or CIDR prefix, on either side (repeatable).")
]
CustomerOpt = Annotated[list[int], typer.Option("--customer", help="Customer id (repeatable).")]
PortOpt = Annotated[list[int], typer.Option("--port", help="Port, on either side (repeatable).")]
ProtoOpt = Annotated[
    list[str],
    typer.Option("--proto", help="IP protocol: a number or tcp, udp, icmp, icmpv6, gre, esp, …"),
]
QUERY_FORMATS = ("table", "csv", "json", "parquet")
#: Records a table shows when no --limit is given; the other formats write them all.
TABLE_ROWS = 100


def _query_args(
    start: str,
    end: str,
    ip: list[str],
    customer: list[int],
    port: list[int],
    proto: list[str],
) -> dict[str, Any]:
    """The store's query arguments from the shared options, checked before the store opens."""
    from hostwarden.flows.store import common

    start_ms, end_ms = moment_ms(start, "--from"), moment_ms(end, "--to", end=True)
    if end_ms <= start_ms:
        raise ValidationFailed("--to must be after --from.", hint="Give a non-empty range.")
    args: dict[str, Any] = {
        "start_ms": start_ms,
        "end_ms": end_ms,
        "ips": ip,
        "customers": customer,
        "ports": port,
        "protos": [common.protocol_number(p) for p in proto],
    }
    common.filters(**{k: v for k, v in args.items() if k not in ("start_ms", "end_ms")})
    return args


class _Output:
    """Where csv/json/parquet records go: stdout, or ``path`` by way of a temporary file
    renamed over it only once everything is written, so that a failed query leaves no
    half-written file (and an older file of that name as it was)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.tmp: Path | None = None
        self.handle: BinaryIO | None = None
        if path is not None:
            if path.is_dir():
                raise ValidationFailed(
                    f"--output {path} is a directory.", hint="Give a file name in it."
                )
            self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                self.handle = self.tmp.open("wb")
            except OSError as exc:
                raise ValidationFailed(
                    f"--output {path} cannot be written: {exc.strerror or exc}.",
                    hint="Check that the directory exists and you may write there.",
                ) from exc

    def write(self, data: bytes) -> None:
        if self.handle is None:
            sys.stdout.write(data.decode("utf-8"))
        else:
            self.handle.write(data)

    def finish(self, ok: bool) -> None:
        if self.handle is None or self.tmp is None or self.path is None:
            sys.stdout.flush()
            return
        self.handle.close()
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _write_records(pieces: Iterator[Any], fmt: str, output: _Output) -> int:
    """Write the query's pieces as csv, json (one array, an object a line) or parquet;
    returns how many records were written."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from hostwarden.flows.store.common import json_texts, readable

    written = 0
    parquet: pq.ParquetWriter | None = None
    if fmt == "json":
        output.write(b"[")
    try:
        for piece in pieces:
            if fmt == "parquet":
                table = readable(piece, times_as_text=False)
                if parquet is None:
                    assert output.handle is not None
                    parquet = pq.ParquetWriter(output.handle, table.schema, compression="zstd")
                parquet.write_table(table)
            elif fmt == "csv":
                sink = pa.BufferOutputStream()
                options = pacsv.WriteOptions(include_header=written == 0, quoting_style="needed")
                pacsv.write_csv(readable(piece), sink, write_options=options)
                output.write(sink.getvalue().to_pybytes())
            else:
                objects = json_texts(readable(piece)).to_pylist()
                if objects:
                    lead = "\n" if written == 0 else ",\n"
                    output.write((lead + ",\n".join(objects)).encode("utf-8"))
            written += piece.num_rows
    finally:
        if parquet is not None:
            parquet.close()
    if fmt == "json":
        output.write(b"\n]\n" if written else b"]\n")
    elif fmt == "parquet" and parquet is None:
        # No records: still a valid (empty) Parquet file with the columns.
        from hostwarden.flows.store.common import QUERY_SCHEMA

        assert output.handle is not None
        pq.write_table(readable(QUERY_SCHEMA.empty_table(), times_as_text=False), output.handle)
    elif fmt == "csv" and written == 0:
        from hostwarden.flows.store.common import READABLE_COLUMNS

        output.write((",".join(f'"{c}"' for c in READABLE_COLUMNS) + "\n").encode())
    return written


@flows_app.command("query")
def query_command(
    ctx: typer.Context,
    start: FromOpt,
    end: ToOpt,
    ip: IpOpt = [],  # noqa: B006
    customer: CustomerOpt = [],  # noqa: B006
    port: PortOpt = [],  # noqa: B006
    proto: ProtoOpt = [],  # noqa: B006
    limit: Annotated[
        int | None,
        typer.Option(help=f"Most records (default: {TABLE_ROWS} in a table, all otherwise)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="table, csv, json or parquet (needs --output).")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write csv/json/parquet to this file.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Stored records in a time range, filtered by addresses, customers, ports and
    protocols; csv, json and parquet are written as the store reads them."""
    from hostwarden.flows.store import open_store

    fmt = "json" if json_out else fmt.lower()
    if fmt not in QUERY_FORMATS:
        raise ValidationFailed(
            f"--format {fmt} is not a query format.",
            hint=f"Use one of: {', '.join(QUERY_FORMATS)}.",
        )
    if fmt == "parquet" and output is None:
        raise ValidationFailed(
            "--format parquet needs --output FILE.", hint="Parquet is binary: name a file."
        )
    if fmt == "table" and output is not None:
        raise ValidationFailed(
            "--output takes csv, json or parquet.", hint="Add --format csv, json or parquet."
        )
    if limit is not None and limit < 1:
        raise ValidationFailed("--limit must be at least 1.", hint="For example --limit 100.")
    args = _query_args(start, end, ip, customer, port, proto)
    runtime = state(ctx).runtime()
    store = open_store(runtime)
    try:
        if fmt != "table":
            sink = _Output(output)
            ok = False
            try:
                written = _write_records(store.query_batches(**args, limit=limit), fmt, sink)
                ok = True
            finally:
                sink.finish(ok)
            if output is not None:
                err.print(f"{written:,} record(s) written to {output}")
            return
        began = time.perf_counter()
        found = store.query(**args, limit=limit or TABLE_ROWS)
        seconds = time.perf_counter() - began
    finally:
        store.close()
        runtime.close()
    from hostwarden.flows.store.common import readable

    rows = readable(found).to_pylist()
    shown = ["start", "src", "src_port", "dst", "dst_port", "proto", "packets", "bytes"]
    shown += ["customer_id"]
    table(
        f"{len(rows)} record(s) in {seconds * 1000:.0f} ms",
        shown,
        [[r.get(c, "") for c in shown] for r in rows],
    )


@flows_app.command("top")
def top_command(
    ctx: typer.Context,
    start: FromOpt,
    end: ToOpt,
    by: Annotated[str, typer.Option(help="Rank by bytes, packets or flows.")] = "bytes",
    group: Annotated[str, typer.Option(help="ip (the provider-side address) or customer.")] = "ip",
    ip: IpOpt = [],  # noqa: B006
    customer: CustomerOpt = [],  # noqa: B006
    port: PortOpt = [],  # noqa: B006
    proto: ProtoOpt = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="How many to list.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Top talkers: the provider-side addresses or customers with the most bytes,
    packets or flows in a time range."""
    from hostwarden.flows.store import common, open_store

    common.check_top(by, group, limit)
    args = _query_args(start, end, ip, customer, port, proto)
    runtime = state(ctx).runtime()
    store = open_store(runtime)
    try:
        found = store.top_talkers(**args, by=by, group=group, limit=limit)
    finally:
        store.close()
        runtime.close()
    rows = found.to_pylist()
    if json_out:
        print_json(rows)
        return
    what = "address" if group == "ip" else "customer"
    columns = [what, "customer", "flows", "packets", "bytes"]
    if group == "customer":
        columns.remove("customer")
    table(
        f"Top {len(rows)} {what}{'es' if group == 'ip' else 's'} by {by}, "
        f"{_range_text(args['start_ms'], args['end_ms'])}",
        columns,
        [
            [r["key"]]
            + ([_customer_text(r["customer_id"])] if group == "ip" else [])
            + [f"{r[m]:,}" for m in ("flows", "packets", "bytes")]
            for r in rows
        ],
    )


@flows_app.command("series")
def series_command(
    ctx: typer.Context,
    start: FromOpt,
    end: ToOpt,
    step: Annotated[str, typer.Option(help="Bucket length: 30s, 5m, 1h, 1d, …")] = "5m",
    ip: IpOpt = [],  # noqa: B006
    customer: CustomerOpt = [],  # noqa: B006
    port: PortOpt = [],  # noqa: B006
    proto: ProtoOpt = [],  # noqa: B006
    json_out: JsonOpt = False,
) -> None:
    """Flows, packets and bytes per step over a time range (every step listed, quiet
    ones as zeros), from the start given."""
    from hostwarden.flows.store import common, open_store

    step_ms = common.parse_step(step)
    args = _query_args(start, end, ip, customer, port, proto)
    common.check_series(args["start_ms"], args["end_ms"], step_ms)
    runtime = state(ctx).runtime()
    store = open_store(runtime)
    try:
        found = store.time_series(**args, step_ms=step_ms)
    finally:
        store.close()
        runtime.close()
    rows = [{"bucket": _ms_text(r["bucket_ms"]), **r} for r in found.to_pylist()]
    if json_out:
        print_json(rows)
        return
    table(
        f"Every {common.step_text(step_ms)}, {_range_text(args['start_ms'], args['end_ms'])}",
        ["from", "flows", "packets", "bytes"],
        [[r["bucket"]] + [f"{r[m]:,}" for m in ("flows", "packets", "bytes")] for r in rows],
    )


def _ms_text(ms: int) -> str:
    from datetime import UTC, datetime

    from hostwarden.core.timeutil import isoformat

    return isoformat(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _range_text(start_ms: int, end_ms: int) -> str:
    return f"{_ms_text(start_ms)} – {_ms_text(end_ms)}"


def _customer_text(customer_id: int) -> str:
    return "—" if customer_id < 0 else str(customer_id)
