"""`hostwarden logs …`: verify the flow and log store, run retention, manage legal holds,
query the log datasets."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hostwarden.cli.common import JsonOpt, err, operator, out, print_json, state, table
from hostwarden.core.timeutil import isoformat, utcnow
from hostwarden.flows import holds
from hostwarden.flows.schemas_holds import LegalHoldOut
from hostwarden.flows.store import PROBLEM_KINDS, StoreVerifyReport, open_store
from hostwarden.flows.verify_record import record_verify, verify_summary

logs_app = typer.Typer(
    help="The flow and log store: integrity, retention and legal holds.", no_args_is_help=True
)
hold_app = typer.Typer(
    help="Legal holds: keep records past retention until released.", no_args_is_help=True
)
logs_app.add_typer(hold_app, name="hold")

RequiredReason = Annotated[
    str, typer.Option("--reason", help="Why; required, recorded in the audit trail.")
]

_KIND_WORDS = {
    "modified": "modified",
    "truncated": "truncated",
    "deleted": "deleted",
    "added": "added",
    "altered": "chain entry altered",
    "broken-link": "chain link broken",
    "forged": "forged checkpoint",
    "rewritten": "chain rewritten",
    "unsigned": "unsigned entries",
    "index": "segment table disagrees",
}


def _print_report(report: StoreVerifyReport) -> None:
    if report.ok:
        out.print(
            f"[green]Flow store intact[/green]: {report.segments_checked} segments re-hashed "
            f"({report.bytes_hashed:,} bytes), {report.chain_entries} chain entries, "
            f"{report.checkpoints} signed checkpoints, head #{report.head_seq} "
            f"{report.head_hash[:16]}…"
        )
    else:
        err.print(
            f"[red]Flow store integrity broken[/red]: {len(report.problems)} problem(s) "
            f"in {report.chain_entries} chain entries and {report.segments_checked} "
            "segment(s) re-hashed."
        )
        for kind in PROBLEM_KINDS:
            for problem in (p for p in report.problems if p.kind == kind):
                err.print(f"  [bold]{_KIND_WORDS[kind]}[/bold]: {escape(problem.message)}")
    for note in report.notes:
        err.print(f"  note: {escape(note)}")


@logs_app.command("verify")
def verify(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only re-hash segments of this UTC day (YYYY-MM-DD) on."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash every live segment and check every chain link and signature; name each
    segment modified, truncated, deleted or added. Exit 1 when anything is wrong."""
    since_ms = None if since is None else holds.moment_ms(since, "--since")
    runtime = state(ctx).runtime()
    started_at = isoformat(utcnow())
    try:
        store = open_store(runtime)
        with Progress(
            TextColumn("re-hashing segments"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task("verify", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                report = store.verify(since_ms=since_ms, progress=progress)
            finally:
                store.close()
        # Audited, and kept as the console's "last verify result" when it covered
        # everything (a run with --since checked part of the store only).
        record_verify(
            runtime,
            operator(),
            verify_summary(report),
            started_at=started_at,
            via="command line",
            since=since,
        )
    finally:
        runtime.close()
    if as_json:
        print_json(report.as_dict())
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@logs_app.command("expire")
def expire(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Run retention now (the daily job does the same): expire segments older than
    flows.retention_days unless a legal hold pins them."""
    from hostwarden.flows.jobs import expire_segments

    runtime = state(ctx).runtime()
    try:
        report = expire_segments(runtime, int(time.time() * 1000))
    finally:
        runtime.close()
    if as_json:
        print_json(report.as_dict())
        return
    out.print(
        f"{len(report.expired)} segment(s) expired ({report.rows_expired:,} records, "
        f"{report.bytes_expired:,} bytes) older than {report.retention_days} days; "
        f"{len(report.pinned)} kept by legal holds."
    )
    for name, file_state in sorted(report.damaged.items()):
        err.print(f"  [yellow]{name} was already {file_state} when it expired[/yellow]")
    for name, ids in sorted(report.pinned.items()):
        out.print(f"  kept {name}: hold(s) {', '.join(str(i) for i in ids)}")


#: Columns `logs query` shows in its table, per dataset (--json gives every column).
_QUERY_COLUMNS = {
    "http": ("time", "server", "client", "host", "method", "path", "status", "bytes"),
    "nat": ("time", "event", "public", "port_first", "port_last", "inside", "proto"),
    "ssh": ("time", "host", "server", "remote", "remote_port", "user", "result", "method"),
}


@logs_app.command("query")
def query(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="http, nat or ssh.")],
    start: Annotated[str, typer.Option("--from", help="Start, ISO 8601 with zone.")],
    end: Annotated[str, typer.Option("--to", help="End (exclusive), ISO 8601 with zone.")],
    ip: Annotated[
        list[str], typer.Option("--ip", help="Address or prefix, either side (repeatable).")
    ] = [],  # noqa: B006
    customer: Annotated[
        list[int], typer.Option("--customer", help="Customer id (repeatable).")
    ] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="Most records to show.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Stored log records (HTTP access, NAT port blocks, SSH logins) in a time range, for
    addresses and/or customers, oldest first."""
    from hostwarden.flows.store.datasets import LogStore, check_dataset

    check_dataset(dataset)
    start_ms = holds.moment_ms(start, "--from")
    end_ms = holds.moment_ms(end, "--to", end=True)
    runtime = state(ctx).runtime()
    store = LogStore(runtime)
    try:
        found = store.query(
            dataset, start_ms=start_ms, end_ms=end_ms, ips=ip, customers=customer, limit=limit
        )
    finally:
        store.close()
        runtime.close()
    rows = found.to_pylist()
    for row in rows:
        row["time"] = isoformat(row["time"])
    if as_json:
        print_json(rows)
        return
    shown = _QUERY_COLUMNS[dataset]
    table(
        f"{len(rows)} {dataset} record(s)",
        list(shown),
        [["" if r.get(c) is None else str(r.get(c)) for c in shown] for r in rows],
    )


@hold_app.command("add")
def hold_add(
    ctx: typer.Context,
    start: Annotated[
        str,
        typer.Option("--from", help="Start: ISO 8601 with zone (…T10:00:00+08:00) or a UTC date."),
    ],
    reason: RequiredReason,
    end: Annotated[
        str | None,
        typer.Option("--to", help="End, as --from; a date holds that whole day. Default: open."),
    ] = None,
    ip: Annotated[
        list[str] | None,
        typer.Option("--ip", help="Address or CIDR prefix (either side of a flow); repeatable."),
    ] = None,
    customer: Annotated[
        list[int] | None, typer.Option("--customer", help="Customer id; repeatable.")
    ] = None,
    case_ref: Annotated[str, typer.Option("--case", help="Case or request reference number.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Place a legal hold: the records it covers outlive retention until it is released."""
    runtime = state(ctx).runtime()
    try:
        with runtime.operation(operator()) as op:
            hold = holds.place_hold(
                op,
                start=start,
                end=end,
                ips=ip or [],
                customers=customer or [],
                reason=reason,
                case_ref=case_ref,
            )
            shown = LegalHoldOut.of(hold)
    finally:
        runtime.close()
    if as_json:
        print_json(shown.model_dump(mode="json"))
        return
    out.print(f"Legal hold {shown.id} placed: {_scope_text(shown)}.")


def _scope_text(hold: LegalHoldOut) -> str:
    until = isoformat(hold.end_at) if hold.end_at is not None else "open-ended"
    parts = [f"{isoformat(hold.start_at)} – {until}"]
    if hold.ips:
        parts.append("addresses " + ", ".join(hold.ips))
    if hold.customer_ids:
        parts.append("customers " + ", ".join(str(c) for c in hold.customer_ids))
    if not hold.ips and not hold.customer_ids:
        parts.append("every record")
    return "; ".join(parts)


@hold_app.command("list")
def hold_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Include released holds.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List legal holds, newest first (active ones unless --all)."""
    runtime = state(ctx).runtime()
    try:
        with runtime.reading() as session:
            rows = [LegalHoldOut.of(h) for h in holds.list_holds(session, active_only=not show_all)]
    finally:
        runtime.close()
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table(
        "Legal holds",
        ["id", "case", "from", "to", "addresses", "customers", "reason", "by", "released"],
        [
            [
                r.id,
                r.case_ref,
                isoformat(r.start_at),
                r.end_at and isoformat(r.end_at),
                ", ".join(r.ips),
                ", ".join(str(c) for c in r.customer_ids),
                r.reason,
                r.created_by,
                r.released_at and isoformat(r.released_at),
            ]
            for r in rows
        ],
    )


@hold_app.command("release")
def hold_release(ctx: typer.Context, hold_id: int, reason: RequiredReason) -> None:
    """Release a legal hold; its records expire at the next retention run unless another
    hold keeps them."""
    runtime = state(ctx).runtime()
    try:
        with runtime.operation(operator()) as op:
            holds.release_hold(op, hold_id, reason=reason)
    finally:
        runtime.close()
    out.print(f"Legal hold {hold_id} released.")
