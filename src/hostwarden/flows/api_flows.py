"""API routes of stored flow records: filtered records (streamed), top talkers, time series."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from hostwarden.api.deps import Principal, require, runtime_of
from hostwarden.core.logs import get_logger
from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Actor, Runtime
from hostwarden.core.timeutil import isoformat
from hostwarden.errors import ValidationFailed
from hostwarden.flows.holds import moment_ms
from hostwarden.flows.store import FlowStore, common, open_store

router = APIRouter(prefix="/api/v1/flows", tags=["flows"])
log = get_logger("hostwarden.flows.api")

RECORD_FORMATS = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def query_args(
    start: str = Query(
        ...,
        alias="from",
        description="Start, ISO 8601 with zone, e.g. 2026-05-01T08:00+08:00; a bare date "
        "is that UTC day.",
    ),
    end: str = Query(
        ..., alias="to", description="End (exclusive), ISO 8601 with zone; a bare date ends it."
    ),
    ip: list[str] = Query([], description="Address or CIDR prefix, on either side (repeat)."),
    customer: list[int] = Query([], description="Customer id (repeat)."),
    port: list[int] = Query([], description="Port, on either side (repeat)."),
    proto: list[str] = Query(
        [], description="IP protocol, a number or tcp, udp, icmp, icmpv6, gre, esp (repeat)."
    ),
) -> dict[str, Any]:
    """The store's query arguments from the query string, checked before any store opens."""
    start_ms = moment_ms(start, "from")
    end_ms = moment_ms(end, "to", end=True)
    common.check_range(start_ms, end_ms)
    protos = [common.protocol_number(p) for p in proto]
    common.filters(ips=ip, customers=customer, ports=port, protos=protos)
    return {
        "start_ms": start_ms,
        "end_ms": end_ms,
        "ips": ip,
        "customers": customer,
        "ports": port,
        "protos": protos,
    }


def _text(ms: int) -> str:
    return isoformat(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _lines(piece: pa.Table, fmt: str, first: bool) -> bytes:
    rows = common.readable(piece)
    if fmt == "csv":
        sink = pa.BufferOutputStream()
        options = pacsv.WriteOptions(include_header=first, quoting_style="needed")
        pacsv.write_csv(rows, sink, write_options=options)
        data: bytes = sink.getvalue().to_pybytes()
        return data
    return common.ndjson_bytes(rows)


def _stream(
    store: FlowStore, pieces: Iterator[pa.Table], fmt: str, where: dict[str, Any]
) -> Iterator[bytes]:
    """The response body, piece by piece; closes the store when done or abandoned. A
    failure after the first byte cannot become an error response any more: it is
    logged and the connection is cut, so the client sees an incomplete transfer rather
    than a short answer that looks whole."""
    sent = 0
    try:
        for piece in pieces:
            yield _lines(piece, fmt, sent == 0)
            sent += piece.num_rows
        if sent == 0 and fmt == "csv":
            yield (",".join(f'"{c}"' for c in common.READABLE_COLUMNS) + "\n").encode()
    except Exception:
        log.exception("flow records stream failed", sent=sent, **where)
        raise
    finally:
        store.close()


def audit_read(runtime: Runtime, actor: Actor, args: dict[str, Any], **more: Any) -> None:
    """Record who takes which flow records out (the API, the console's listing and its
    downloads): they are personal data that the law asks to be handed only to those
    entitled, so every read of them is on record (aggregates are not)."""
    scope = {
        "from": _text(args["start_ms"]),
        "to": _text(args["end_ms"]),
        **{k: list(args[k]) for k in ("ips", "customers", "ports", "protos") if args[k]},
        **more,
    }
    with runtime.operation(actor) as op:
        op.audit("flows.query", "flow_records", scope["from"], after=scope)


def _audited_store(
    runtime: Runtime, who: Principal, args: dict[str, Any], **more: Any
) -> FlowStore:
    """Open the store for reading records, after auditing the read."""
    audit_read(runtime, who.actor(), args, **more)
    return open_store(runtime)


@router.get(
    "/records",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {t: {} for t in RECORD_FORMATS.values()},
            "description": "One record a line (ndjson), or CSV with a header.",
        }
    },
)
def records(
    request: Request,
    args: dict[str, Any] = Depends(query_args),
    limit: int | None = Query(None, description="Most records (default: all)."),
    fmt: str = Query("ndjson", alias="format", description="ndjson or csv."),
    who: Principal = require(Perm.FLOWS_READ),
) -> StreamingResponse:
    """Records starting in [from, to) that match every filter given (any of its values),
    in start order, streamed as the store reads them: a large answer is never built
    whole. Times are ISO 8601 UTC, addresses text."""
    if fmt not in RECORD_FORMATS:
        raise ValidationFailed(
            f"format '{fmt}' is not one this route answers in.", hint="Use ndjson or csv."
        )
    common.check_limit(limit)
    store = _audited_store(runtime_of(request), who, args, format=fmt, limit=limit)
    try:
        # Bad input and unreadable segments raise here, while an error response can
        # still be sent.
        pieces = store.query_batches(**args, limit=limit)
    except BaseException:
        store.close()
        raise
    where = {"from": _text(args["start_ms"]), "to": _text(args["end_ms"])}
    headers = {}
    if fmt == "csv":
        headers["Content-Disposition"] = 'attachment; filename="flows.csv"'
    return StreamingResponse(
        _stream(store, pieces, fmt, where), media_type=RECORD_FORMATS[fmt], headers=headers
    )


class TalkerOut(BaseModel):
    key: str
    customer_id: int
    flows: int
    packets: int
    bytes: int


class TopOut(BaseModel):
    start: str
    end: str
    by: str
    group: str
    items: list[TalkerOut]


class BucketOut(BaseModel):
    bucket_ms: int
    bucket: str
    flows: int
    packets: int
    bytes: int


class SeriesOut(BaseModel):
    start: str
    end: str
    step_ms: int
    items: list[BucketOut]


@router.get("/top")
def top(
    request: Request,
    args: dict[str, Any] = Depends(query_args),
    by: str = Query("bytes", description="bytes, packets or flows."),
    group: str = Query("ip", description="ip (the provider-side address) or customer."),
    limit: int = Query(20, description="How many to list."),
    who: Principal = require(Perm.FLOWS_READ),
) -> TopOut:
    """Top talkers: the provider-side addresses (key: the address; an address that
    changed hands in the range is listed once per customer) or customers (key: the id,
    "-" for records nobody held) with the most bytes, packets or flows."""
    common.check_top(by, group, limit)
    store = open_store(runtime_of(request))
    try:
        found = store.top_talkers(**args, by=by, group=group, limit=limit)
    finally:
        store.close()
    return TopOut(
        start=_text(args["start_ms"]),
        end=_text(args["end_ms"]),
        by=by,
        group=group,
        items=[TalkerOut(**row) for row in found.to_pylist()],
    )


@router.get("/series")
def series(
    request: Request,
    args: dict[str, Any] = Depends(query_args),
    step: str = Query("5m", description="Bucket length: 30s, 5m, 1h, 1d, …"),
    who: Principal = require(Perm.FLOWS_READ),
) -> SeriesOut:
    """Flows, packets and bytes per step from ``from``: every step of the range is
    listed, steps without records as zeros; at most 10,000 steps."""
    step_ms = common.parse_step(step)
    common.check_series(args["start_ms"], args["end_ms"], step_ms)
    store = open_store(runtime_of(request))
    try:
        found = store.time_series(**args, step_ms=step_ms)
    finally:
        store.close()
    return SeriesOut(
        start=_text(args["start_ms"]),
        end=_text(args["end_ms"]),
        step_ms=step_ms,
        items=[BucketOut(bucket=_text(r["bucket_ms"]), **r) for r in found.to_pylist()],
    )
