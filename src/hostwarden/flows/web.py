"""Console pages of the flow store: flow search with charts, retention and integrity."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from starlette.applications import Starlette

from hostwarden.api.deps import Principal, page, runtime_of
from hostwarden.core.logs import get_logger
from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Actor, Runtime
from hostwarden.core.timeutil import isoformat, utcnow
from hostwarden.errors import Conflict, HostwardenError, ValidationFailed
from hostwarden.flows import api_flows, holds
from hostwarden.flows.models import FLOWS_DATASET, FlowSegment
from hostwarden.flows.store import (
    DAY_MS,
    FlowStore,
    Segment,
    common,
    open_store,
)
from hostwarden.flows.store.retention import (
    index_may_match,
    overlaps_in_time,
    scope_of,
)
from hostwarden.flows.verify_record import (
    read_last_verify,
    record_verify,
    verify_summary,
)
from hostwarden.registry import netaddr
from hostwarden.web.i18n import N_
from hostwarden.web.render import render

router = APIRouter(include_in_schema=False)
log = get_logger("hostwarden.flows.web")

#: Records listed under the charts; the download link has them all.
FIRST_RECORDS = 100
TOP_TALKERS = 20
#: The chart's step is the smallest of these that keeps the range within CHART_BUCKETS,
#: so a range gets about 120 to 300 bars whose edges fall on round UTC times.
NICE_STEPS_MS = tuple(
    s * 1000
    for s in (
        *(1, 2, 5, 10, 15, 30),
        *(60, 120, 300, 600, 900, 1800),
        *(3600, 7200, 10800, 21600, 43200),
        *(86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400),
    )
)
CHART_BUCKETS = 300
#: Protocol number → the name people know it by (the first name the store accepts).
PROTOCOL_NAMES: dict[int, str] = {}
for _name, _number in common.PROTOCOL_NAMES.items():
    PROTOCOL_NAMES.setdefault(_number, _name.upper())

#: Verify findings as the console names them (the kinds are PROBLEM_KINDS of the store).
PROBLEM_LABELS = {
    "modified": N_("modified"),
    "truncated": N_("truncated"),
    "deleted": N_("deleted"),
    "added": N_("added"),
    "altered": N_("chain entry altered"),
    "broken-link": N_("chain link broken"),
    "forged": N_("forged checkpoint"),
    "rewritten": N_("chain rewritten"),
    "unsigned": N_("unsigned entries"),
    "index": N_("segment table disagrees"),
}
#: Values the templates translate with _(value); listed so extraction finds them.
DISPLAYED_VALUES = (N_("bytes"), N_("packets"), N_("flows"))


# ---------------------------------------------------------------------------------------
# Search input


@dataclass(frozen=True)
class FlowFilter:
    """A search as the store takes it: a time range in epoch ms and optional matches."""

    start_ms: int
    end_ms: int
    ips: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    protos: tuple[int, ...] = ()
    customers: tuple[int, ...] = ()

    def store_args(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "ips": self.ips,
            "ports": self.ports,
            "protos": self.protos,
            "customers": self.customers,
        }


def _items(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def _numbers(text: str, what: str, example: str, highest: int | None = None) -> tuple[int, ...]:
    found = []
    for item in _items(text):
        if not item.isdigit() or (highest is not None and int(item) > highest):
            wanted = "a whole number" if highest is None else f"a number from 0 to {highest}"
            raise ValidationFailed(
                f"{what} '{item}' is not {wanted}.",
                hint=f"For example {example}; separate several with commas.",
            )
        found.append(int(item))
    return tuple(dict.fromkeys(found))


def _protocols(text: str) -> tuple[int, ...]:
    found = [common.protocol_number(item) for item in _items(text)]
    for number in found:
        if number > 255:
            raise ValidationFailed(
                f"IP protocol {number} is outside 0–255.",
                hint="Give a number from 0 to 255 or a name such as tcp, udp or icmp.",
            )
    return tuple(dict.fromkeys(found))


def parse_filter(
    start: str, end: str, ip: str = "", port: str = "", proto: str = "", customer: str = ""
) -> FlowFilter:
    """The form's fields as a search; raises ValidationFailed naming the field at fault."""
    start_ms = holds.moment_ms(start, "from")
    end_ms = holds.moment_ms(end, "to", end=True)
    if end_ms <= start_ms:
        raise ValidationFailed(
            f"'to' ({end}) is not after 'from' ({start}).",
            hint="Give an end later than the start.",
        )
    ips = tuple(dict.fromkeys(str(netaddr.parse_prefix(item)) for item in _items(ip)))
    return FlowFilter(
        start_ms,
        end_ms,
        ips=ips,
        ports=_numbers(port, "port", "443", 65535),
        protos=_protocols(proto),
        customers=_numbers(customer, "customer id", "42"),
    )


def choose_step(span_ms: int) -> int:
    """A round step giving at most CHART_BUCKETS buckets (and, but for ranges under a
    few minutes, more than CHART_BUCKETS / 2.5)."""
    for step in NICE_STEPS_MS:
        if span_ms <= step * CHART_BUCKETS:
            return step
    return math.ceil(span_ms / CHART_BUCKETS / DAY_MS) * DAY_MS


def default_range(now: datetime) -> tuple[str, str]:
    """The last 24 hours, ending at the next five-minute mark so that bars are round."""
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=5 - now.minute % 5)
    start = end - timedelta(days=1)
    return start.strftime("%Y-%m-%dT%H:%MZ"), end.strftime("%Y-%m-%dT%H:%MZ")


# ---------------------------------------------------------------------------------------
# Figures as people read them


def _scaled(value: float, units: Sequence[str]) -> tuple[float, str]:
    # 999.6 rounds to 1e+03 in three digits: such a value moves to the next unit.
    for unit in units[:-1]:
        if abs(value) < 999.5:
            return value, unit
        value /= 1000
    return value, units[-1]


def human_bytes(value: float) -> str:
    """Decimal units, as interface counters and transit bills count them."""
    scaled, unit = _scaled(value, ("B", "kB", "MB", "GB", "TB", "PB"))
    return f"{scaled:.0f} {unit}" if unit == "B" else f"{scaled:.3g} {unit}"


def human_count(value: float) -> str:
    scaled, unit = _scaled(value, ("", "k", "M", "G", "T"))
    return f"{scaled:.0f}" if unit == "" else f"{scaled:.3g} {unit}"


def utc_text(ms: int, pattern: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(pattern)


# ---------------------------------------------------------------------------------------
# The traffic chart: geometry computed here, drawn as SVG by templates/flows/_chart.html


@dataclass(frozen=True)
class Tick:
    at: float  # SVG coordinate along the axis
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    #: What the tooltip names: the bucket's UTC interval and every figure of it.
    when: str
    bytes: str
    packets: str
    flows: str


@dataclass(frozen=True)
class Panel:
    metric: str  # "bytes" | "packets"
    top: float  # SVG y of the plot's top edge
    bars: list[Bar]
    y_ticks: list[Tick]
    peak: str


@dataclass(frozen=True)
class TrafficChart:
    width: int
    height: int
    left: int
    plot_width: int
    panel_height: int
    panels: list[Panel]
    x_ticks: list[Tick]
    step: str
    total_bytes: str
    total_packets: str
    total_flows: str


#: SVG user units; the element scales to the page width, keeping its proportions.
CHART_WIDTH = 960
CHART_LEFT = 70  # room for "999 MB"
CHART_RIGHT = 28  # room for half of the last time label
PANEL_HEIGHT = 130
PANEL_GAP = 10
#: Above each panel's plot: its name and peak, clear of the top tick's label.
PANEL_HEAD = 22
AXIS_HEIGHT = 22


def _nice_ceiling(value: float) -> tuple[float, float]:
    """A round top for the y axis at or above ``value`` and its tick spacing (1, 2 or 5
    times a power of ten, four ticks or fewer)."""
    if value <= 0:
        return 1.0, 1.0
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    # Every figure charted is a count: no tick between two whole numbers.
    spacing = max(next(m * power for m in (1, 2, 5, 10) if m * power >= raw), 1)
    return math.ceil(value / spacing) * spacing, spacing


def _duration_text(ms: int) -> str:
    for unit_ms, unit in ((DAY_MS, "d"), (3_600_000, "h"), (60_000, "min"), (1000, "s")):
        if ms % unit_ms == 0:
            return f"{ms // unit_ms} {unit}"
    return f"{ms} ms"


def _x_ticks(start_ms: int, end_ms: int, scale: float) -> list[Tick]:
    """Six to twelve labels on round UTC times; the format shows what changes along it."""
    span = end_ms - start_ms
    spacing = next((s for s in NICE_STEPS_MS if span / s <= 8), NICE_STEPS_MS[-1])
    if spacing >= DAY_MS:
        pattern = "%m-%d"
    elif span > DAY_MS:
        pattern = "%m-%d %H:%M"
    elif spacing < 60_000:
        pattern = "%H:%M:%S"
    else:
        pattern = "%H:%M"
    first = -(-start_ms // spacing) * spacing  # the first round time in the range
    return [
        Tick(CHART_LEFT + (at - start_ms) * scale, utc_text(at, pattern))
        for at in range(first, end_ms + 1, spacing)
    ]


def traffic_chart(
    buckets: Sequence[dict[str, int]], start_ms: int, end_ms: int, step_ms: int
) -> TrafficChart:
    """Bars of bytes and of packets per bucket (``bucket_ms``, ``flows``, ``packets``,
    ``bytes``) over [start_ms, end_ms), one panel each, sharing the time axis."""
    plot_width = CHART_WIDTH - CHART_LEFT - CHART_RIGHT
    scale = plot_width / max(end_ms - start_ms, 1)
    gap = 1.0 if step_ms * scale > 4 else 0.0  # separate bars only while they are wide
    panels = []
    for index, metric in enumerate(("bytes", "packets")):
        top = index * (PANEL_HEAD + PANEL_HEIGHT + PANEL_GAP) + PANEL_HEAD
        peak = max((b[metric] for b in buckets), default=0)
        ceiling, spacing = _nice_ceiling(peak)
        fmt = human_bytes if metric == "bytes" else human_count
        bars = []
        for b in buckets:
            if b[metric] <= 0:
                continue
            x0 = max(b["bucket_ms"], start_ms)
            x1 = min(b["bucket_ms"] + step_ms, end_ms)
            height = b[metric] / ceiling * PANEL_HEIGHT
            bars.append(
                Bar(
                    x=CHART_LEFT + (x0 - start_ms) * scale,
                    y=top + PANEL_HEIGHT - height,
                    width=max((x1 - x0) * scale - gap, 0.5),
                    height=height,
                    when=f"{utc_text(b['bucket_ms'], '%Y-%m-%d %H:%M:%S')} – "
                    f"{utc_text(b['bucket_ms'] + step_ms, '%H:%M:%S')} UTC",
                    bytes=human_bytes(b["bytes"]),
                    packets=human_count(b["packets"]),
                    flows=human_count(b["flows"]),
                )
            )
        ticks = [
            Tick(top + PANEL_HEIGHT - k * spacing / ceiling * PANEL_HEIGHT, fmt(k * spacing))
            # An empty range gets only its zero line, not an invented scale.
            for k in range(round(ceiling / spacing) + 1 if peak else 1)
        ]
        panels.append(Panel(metric, top, bars, ticks, fmt(peak)))
    height = 2 * (PANEL_HEAD + PANEL_HEIGHT) + PANEL_GAP + AXIS_HEIGHT
    return TrafficChart(
        width=CHART_WIDTH,
        height=height,
        left=CHART_LEFT,
        plot_width=plot_width,
        panel_height=PANEL_HEIGHT,
        panels=panels,
        x_ticks=_x_ticks(start_ms, end_ms, scale),
        step=_duration_text(step_ms),
        total_bytes=human_bytes(sum(b["bytes"] for b in buckets)),
        total_packets=human_count(sum(b["packets"] for b in buckets)),
        total_flows=human_count(sum(b["flows"] for b in buckets)),
    )


# ---------------------------------------------------------------------------------------
# Flow search


def _rows(table: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _record_time(value: datetime | int) -> str:
    # Query results carry times as timestamps; milliseconds shown, as exporters send them.
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def _record_view(row: dict[str, Any]) -> dict[str, Any]:
    proto = int(row.get("proto") or 0)
    return {
        "start": _record_time(row["start"]),
        "src": row.get("src", ""),
        "dst": row.get("dst", ""),
        "src_port": row.get("src_port"),
        "dst_port": row.get("dst_port"),
        "proto": PROTOCOL_NAMES.get(proto, str(proto)),
        "packets": human_count(int(row.get("packets") or 0)),
        "bytes": human_bytes(int(row.get("bytes") or 0)),
        "customer_id": int(row.get("customer_id", -1)),
        "instance_id": int(row.get("instance_id", -1)),
    }


def _int_or(value: Any, default: int) -> int:
    return default if value is None else int(value)


def _talker_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row.get("key"),
        "customer_id": _int_or(row.get("customer_id"), -1),
        "flows": human_count(int(row.get("flows") or 0)),
        "packets": human_count(int(row.get("packets") or 0)),
        "bytes": human_bytes(int(row.get("bytes") or 0)),
    }


@dataclass
class SearchResult:
    chart: TrafficChart
    talkers: list[dict[str, Any]]
    records: list[dict[str, Any]]
    more: bool
    seconds: float


def audit_listing(runtime: Runtime, actor: Actor, wanted: FlowFilter, **more: Any) -> None:
    """Put a console listing of records on record (``more``: what it was listed for)."""
    # Records are personal data: the listing is on record as a read through the API is
    # (flows.query, same scope); the chart and top talkers are aggregates and are not.
    api_flows.audit_read(
        runtime, actor, wanted.store_args(), limit=FIRST_RECORDS, via="console", **more
    )


def chart_of(store: FlowStore, wanted: FlowFilter) -> TrafficChart:
    """The traffic chart of the records ``wanted`` selects, at the step their range gets."""
    step = choose_step(wanted.end_ms - wanted.start_ms)
    series = store.time_series(step_ms=step, **wanted.store_args())
    buckets = [
        {k: int(v or 0) for k, v in row.items() if k in ("bucket_ms", "flows", "packets", "bytes")}
        for row in _rows(series)
    ]
    return traffic_chart(buckets, wanted.start_ms, wanted.end_ms, step)


def first_records(store: FlowStore, wanted: FlowFilter) -> tuple[list[dict[str, Any]], bool]:
    """The first FIRST_RECORDS records by start time, as the page shows them, and whether
    more match. The caller audits the listing (``audit_listing``)."""
    found = _rows(store.query(limit=FIRST_RECORDS + 1, **wanted.store_args()))
    return [_record_view(r) for r in found[:FIRST_RECORDS]], len(found) > FIRST_RECORDS


def run_search(
    runtime: Runtime, actor: Actor, wanted: FlowFilter, *, by: str, group: str
) -> SearchResult:
    """Chart, top talkers and first records of one search, from one store opened for it."""
    began = time.perf_counter()
    audit_listing(runtime, actor, wanted)
    store = open_store(runtime)
    try:
        chart = chart_of(store, wanted)
        talkers = store.top_talkers(by=by, group=group, limit=TOP_TALKERS, **wanted.store_args())
        records, more = first_records(store, wanted)
    finally:
        store.close()
    return SearchResult(
        chart=chart,
        talkers=[_talker_view(r) for r in _rows(talkers)],
        records=records,
        more=more,
        seconds=time.perf_counter() - began,
    )


def export_query(wanted: FlowFilter, fmt: str) -> str:
    """The query string of the API's /api/v1/flows/records for this search (the console's
    /flows/records takes the same): repeatable ip, customer, port, proto."""
    params: list[tuple[str, str | int]] = [
        ("from", isoformat(datetime.fromtimestamp(wanted.start_ms / 1000, UTC))),
        ("to", isoformat(datetime.fromtimestamp(wanted.end_ms / 1000, UTC))),
    ]
    params += [("ip", v) for v in wanted.ips] + [("customer", v) for v in wanted.customers]
    params += [("port", v) for v in wanted.ports] + [("proto", v) for v in wanted.protos]
    return urlencode([*params, ("format", fmt)])


@router.get("/flows")
def flow_search(
    request: Request,
    start: Annotated[str, Query(alias="from")] = "",
    end: Annotated[str, Query(alias="to")] = "",
    ip: str = "",
    port: str = "",
    proto: str = "",
    customer: str = "",
    by: str = "bytes",
    group: str = "ip",
    who: Principal = page(Perm.FLOWS_READ),
) -> HTMLResponse:
    defaults = default_range(utcnow())
    form = {
        "start": start.strip() or defaults[0],
        "end": end.strip() or defaults[1],
        "ip": ip.strip(),
        "port": port.strip(),
        "proto": proto.strip(),
        "customer": customer.strip(),
        "by": by,
        "group": group,
    }
    result, error, status, exports = None, None, 200, {}
    try:
        common.check_top(by, group, TOP_TALKERS)
        wanted = parse_filter(
            form["start"], form["end"], form["ip"], form["port"], form["proto"], form["customer"]
        )
        result = run_search(runtime_of(request), who.actor(), wanted, by=by, group=group)
        exports = {fmt: export_query(wanted, fmt) for fmt in ("csv", "ndjson")}
    except HostwardenError as exc:
        error, status = str(exc), exc.status
    base = {k: v for k, v in form.items() if k not in ("by", "group")}
    return render(
        request,
        "flows/search.html",
        {
            "form": form,
            "result": result,
            "error": error,
            "orders": common.TOP_BY,
            "groups": common.TOP_GROUPS,
            "switch": {
                (o, g): "/flows?" + urlencode({**_field_names(base), "by": o, "group": g})
                for o in common.TOP_BY
                for g in common.TOP_GROUPS
            },
            "exports": exports,
            "first_records": FIRST_RECORDS,
        },
        principal=who,
        status=status,
    )


def _field_names(form: dict[str, str]) -> dict[str, str]:
    names = {"start": "from", "end": "to"}
    return {names.get(k, k): v for k, v in form.items() if v}


@router.get("/flows/records")
def flow_records(
    request: Request,
    start: Annotated[str, Query(alias="from")] = "",
    end: Annotated[str, Query(alias="to")] = "",
    ip: Annotated[list[str] | None, Query()] = None,
    customer: Annotated[list[str] | None, Query()] = None,
    port: Annotated[list[str] | None, Query()] = None,
    proto: Annotated[list[str] | None, Query()] = None,
    fmt: Annotated[str, Query(alias="format")] = "csv",
    who: Principal = page(Perm.FLOWS_READ),
) -> Response:
    """Every matching record as a download, for the signed-in person: the API's
    /api/v1/flows/records (streamed, audited) behind the console's session."""
    wanted = parse_filter(
        start,
        end,
        ",".join(ip or []),
        ",".join(port or []),
        ",".join(proto or []),
        ",".join(customer or []),
    )
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in wanted.store_args().items()}
    return api_flows.records(request, args=args, limit=None, fmt=fmt, who=who)


# ---------------------------------------------------------------------------------------
# Verify runs: one at a time per process, in a thread; the last result survives restarts


@dataclass
class VerifyRun:
    """One verify run as the page shows it while it goes on and after."""

    started_at: str
    actor: str
    done: int = 0
    total: int = 0
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.finished_at is None

    @property
    def percent(self) -> int:
        return int(self.done * 100 / self.total) if self.total else 0


@dataclass
class VerifyRunner:
    """Runs ``store.verify`` in a background thread so the page can poll its progress."""

    runtime: Runtime
    current: VerifyRun | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self, actor: Actor) -> VerifyRun:
        with self._lock:
            if self.current is not None and self.current.running:
                raise Conflict(
                    f"a verify run started by {self.current.actor} at "
                    f"{self.current.started_at} is still going.",
                    hint="Wait for it to finish; its progress is shown on this page.",
                )
            run = VerifyRun(started_at=isoformat(utcnow()), actor=actor.name)
            self.current = run
            self._thread = threading.Thread(
                target=self._run, args=(run, actor), name="flows-verify", daemon=True
            )
            self._thread.start()
        return run

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self, run: VerifyRun, actor: Actor) -> None:
        def progress(done: int, total: int) -> None:
            run.done, run.total = done, total

        summary: dict[str, Any]
        try:
            store = open_store(self.runtime)
            try:
                report = store.verify(progress=progress)
            finally:
                store.close()
            summary = verify_summary(report)
        except Exception as exc:  # a run that could not finish is a result to show and record
            log.exception("flow store verify failed to run")
            summary = {"ok": False, "error": str(exc), "problem_count": 0, "problem_counts": {}}
        self._record(run, actor, summary)

    def _record(self, run: VerifyRun, actor: Actor, summary: dict[str, Any]) -> None:
        try:
            kept = record_verify(
                self.runtime, actor, summary, started_at=run.started_at, via="console"
            )
        except Exception as exc:  # shown on the page instead; the thread must end cleanly
            log.exception("flow store verify result not recorded")
            kept = {
                **summary,
                "ok": False,
                "error": f"the result could not be recorded: {exc}",
                "started_at": run.started_at,
                "finished_at": isoformat(utcnow()),
                "actor": run.actor,
            }
        run.result = kept
        run.error = kept.get("error")
        run.finished_at = kept["finished_at"]


_runners_lock = threading.Lock()


def verify_runner(app: Starlette) -> VerifyRunner:
    """The app's verify runner (one per app, so per process and runtime)."""
    with _runners_lock:
        runner = getattr(app.state, "flows_verify_runner", None)
        if runner is None:
            runner = VerifyRunner(app.state.runtime)
            app.state.flows_verify_runner = runner
    assert isinstance(runner, VerifyRunner)
    return runner


# ---------------------------------------------------------------------------------------
# Retention and integrity


@dataclass(frozen=True)
class DayRow:
    day: str
    segments: int
    rows: int
    size: int
    size_text: str
    #: Bar length in percent of the busiest day.
    share: float


def retention_view(runtime: Runtime, segments: list[Segment], now_ms: int) -> dict[str, Any]:
    """Oldest record kept, next expiry and live data per day, from the segment index."""
    flows = runtime.settings.flows
    keep_ms = flows.retention_days * DAY_MS
    live = [s for s in segments if s.live]
    with runtime.reading() as session:
        active = holds.list_holds(session, active_only=True)
    scopes = [scope_of(h) for h in active]

    def held(segment: Segment) -> bool:
        # The index alone; expiry also looks inside a segment for a narrowed hold's remote
        # addresses, so a segment shown here as due may still be kept then.
        return any(overlaps_in_time(segment, s) and index_may_match(segment, s) for s in scopes)

    unheld = [s for s in live if not held(s)]
    due = min((s.last_ms + keep_ms for s in unheld), default=None)
    per_day: dict[str, list[Segment]] = {}
    for s in live:
        per_day.setdefault(s.day, []).append(s)
    busiest = max((sum(s.rows for s in group) for group in per_day.values()), default=0)
    days = [
        DayRow(
            day,
            len(group),
            sum(s.rows for s in group),
            sum(s.size for s in group),
            human_bytes(sum(s.size for s in group)),
            sum(s.rows for s in group) * 100 / busiest if busiest else 0.0,
        )
        for day, group in sorted(per_day.items(), reverse=True)
    ]
    return {
        "retention_days": flows.retention_days,
        "profile": flows.profile,
        "backend": flows.store,
        "oldest": None if not live else utc_text(min(s.first_ms for s in live)),
        "next_expiry": None if due is None else utc_text(due),
        "next_expiry_overdue": due is not None and due <= now_ms,
        "held_segments": len(live) - len(unheld),
        "live_segments": len(live),
        "live_rows": sum(s.rows for s in live),
        "live_bytes": human_bytes(sum(s.size for s in live)),
        "expired_segments": len(segments) - len(live),
        "days": days,
    }


@dataclass(frozen=True)
class DatasetRow:
    dataset: str
    segments: int
    rows: int
    size_text: str
    oldest: str


#: What each log dataset holds, for the retention page.
DATASET_LABELS = {
    "http": N_("HTTP access logs"),
    "nat": N_("NAT port-block logs"),
    "ssh": N_("SSH authentication logs"),
}


def log_datasets(runtime: Runtime) -> list[DatasetRow]:
    """Live segments of the log datasets (HTTP, NAT, SSH), from the segment index; they
    share the chain, retention and holds with the flow records."""
    with runtime.reading() as session:
        found = session.execute(
            select(
                FlowSegment.dataset,
                func.count(),
                func.sum(FlowSegment.rows),
                func.sum(FlowSegment.size),
                func.min(FlowSegment.first_ms),
            )
            .where(FlowSegment.dataset != FLOWS_DATASET, FlowSegment.expired_at.is_(None))
            .group_by(FlowSegment.dataset)
            .order_by(FlowSegment.dataset)
        ).all()
    return [
        DatasetRow(name, int(count), int(rows or 0), human_bytes(int(size or 0)), utc_text(first))
        for name, count, rows, size, first in found
    ]


def _integrity(
    request: Request,
    who: Principal,
    *,
    error: str | None = None,
    notice: dict[str, Any] | None = None,
    hold_form: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    runtime = runtime_of(request)
    store_error = None
    try:
        store = open_store(runtime)
        try:
            segments = store.segments()
        finally:
            store.close()
    except HostwardenError as exc:
        # An unreachable ClickHouse must not hide the holds and the last verify result.
        segments, store_error = [], str(exc)
    view = retention_view(runtime, segments, int(time.time() * 1000))
    view["datasets"] = log_datasets(runtime)
    view["dataset_labels"] = DATASET_LABELS
    active = []
    if who.can(Perm.LEGAL_HOLDS_READ):
        with runtime.reading() as session:
            active = [holds.summary(h) for h in holds.list_holds(session, active_only=True)]
    return render(
        request,
        "flows/integrity.html",
        {
            "v": view,
            "holds": active,
            **_verify_context(request),
            "error": error,
            "store_error": store_error,
            "notice": notice,
            "hold_form": hold_form or {},
        },
        principal=who,
        status=status,
    )


@router.get("/flows/integrity")
def integrity_page(request: Request, who: Principal = page(Perm.FLOWS_READ)) -> HTMLResponse:
    return _integrity(request, who)


def _verify_context(request: Request) -> dict[str, Any]:
    """The run going on (if any) and the newest finished result: this process's last run
    if the file could not take it, else the file (which another process may have
    written later)."""
    run = verify_runner(request.app).current
    last = read_last_verify(runtime_of(request))
    mine = None if run is None else run.result
    if mine is not None and (last is None or last.get("finished_at", "") < mine["finished_at"]):
        last = mine
    if last is not None:
        last = {**last, "bytes_text": human_bytes(int(last.get("bytes_hashed") or 0))}
    return {"run": run, "last": last, "labels": PROBLEM_LABELS}


def _verify_fragment(request: Request, who: Principal, status: int = 200) -> HTMLResponse:
    return render(
        request, "flows/_verify.html", _verify_context(request), principal=who, status=status
    )


@router.post("/flows/integrity/verify")
def verify_start(request: Request, who: Principal = page(Perm.LOGS_VERIFY)) -> Response:
    """Start a verify run; htmx gets the progress fragment, a plain form the page."""
    # Already running: that run's progress is the answer, not an error.
    with suppress(Conflict):
        verify_runner(request.app).start(who.actor())
    if request.headers.get("hx-request"):
        return _verify_fragment(request, who, status=202)
    return RedirectResponse("/flows/integrity", status_code=303)


@router.get("/flows/integrity/verify")
def verify_status(request: Request, who: Principal = page(Perm.FLOWS_READ)) -> HTMLResponse:
    """The progress of the current run, or the last result (polled by the page)."""
    return _verify_fragment(request, who)


@router.post("/flows/holds")
def hold_place(
    request: Request,
    start: Annotated[str, Form()] = "",
    end: Annotated[str, Form()] = "",
    ips: Annotated[str, Form()] = "",
    customers: Annotated[str, Form()] = "",
    case_ref: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.LEGAL_HOLDS_WRITE),
) -> HTMLResponse:
    entered = {
        "start": start,
        "end": end,
        "ips": ips,
        "customers": customers,
        "case_ref": case_ref,
        "reason": reason,
    }
    try:
        if not start.strip():
            raise ValidationFailed(
                "a legal hold needs a start.",
                hint="Give it with its zone, e.g. 2026-05-01T00:00:00+08:00, or a UTC date.",
            )
        customer_ids = _numbers(customers, "customer id", "42")
        with runtime_of(request).operation(who.actor()) as op:
            hold = holds.place_hold(
                op,
                start=start,
                end=end.strip() or None,
                ips=_items(ips),
                customers=customer_ids,
                reason=reason,
                case_ref=case_ref,
            )
            hold_id = hold.id
    except HostwardenError as exc:
        return _integrity(request, who, error=str(exc), hold_form=entered, status=exc.status)
    return _integrity(request, who, notice={"placed": hold_id}, status=201)


@router.post("/flows/holds/{hold_id}/release")
def hold_release(
    request: Request,
    hold_id: int,
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.LEGAL_HOLDS_WRITE),
) -> HTMLResponse:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            holds.release_hold(op, hold_id, reason=reason)
    except HostwardenError as exc:
        return _integrity(request, who, error=str(exc), status=exc.status)
    return _integrity(request, who, notice={"released": hold_id})
