"""What the store backends share on the read side: the query result's schema with
readable addresses, the checks of a query's filters, and the SQL of conditions and
aggregations (top talkers, time series) both engines run."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from hostwarden.core.timeutil import isoformat
from hostwarden.errors import ValidationFailed
from hostwarden.flows.schema import ARROW_SCHEMA, LOCAL_DST, NAMES
from hostwarden.flows.store import DAY_MS
from hostwarden.flows.store.retention import address_ranges
from hostwarden.flows.textformats import PROTOCOLS
from hostwarden.registry import netaddr

_U64_MASK = (1 << 64) - 1
QUERY_SCHEMA = ARROW_SCHEMA.append(pa.field("src", pa.string(), nullable=False)).append(
    pa.field("dst", pa.string(), nullable=False)
)


def range_condition(column: str, first: int, last: int, literal: Callable[[int], str] = str) -> str:
    """``column`` (src/dst) within the 128-bit range [first, last] of one CIDR prefix: a
    prefix is either a range of high words (length ≤ 64) or one high word and a range
    of low words, so this is always a conjunction the engine can push down. ``literal``
    writes an int as the engine's SQL wants it (every value is an int computed here,
    never text from a caller)."""
    first_hi, first_lo = first >> 64, first & _U64_MASK
    last_hi, last_lo = last >> 64, last & _U64_MASK
    if first_hi != last_hi:
        return f"{column}_hi BETWEEN {literal(first_hi)} AND {literal(last_hi)}"
    if first_lo == last_lo:
        return f"{column}_hi = {literal(first_hi)} AND {column}_lo = {literal(first_lo)}"
    return (
        f"{column}_hi = {literal(first_hi)} AND {column}_lo BETWEEN {literal(first_lo)} AND "
        f"{literal(last_lo)}"
    )


def _address_texts(hi: NDArray[np.uint64], lo: NDArray[np.uint64]) -> pa.Array:
    """Readable address text for every row (all-zero words: ""), formatting each
    distinct address once: IPv4 (mapped) addresses in Arrow, whole columns at a time,
    others through ``ipaddress``. A streamed day of records passes every row through
    here, so this is what a per-address Python loop would make slow."""
    if len(hi) == 0:
        return pa.array([], type=pa.string())
    hi, lo = np.asarray(hi, np.uint64), np.asarray(lo, np.uint64)
    inverse: pa.Array
    if (hi == hi[0]).all():
        # Nearly always (IPv4 traffic): one word to tell addresses apart. Arrow's hash
        # dictionary instead of numpy's sorting unique: 17 instead of 57 ms of CPU for
        # the 483,858 rows of bench/query.py's customer /24.
        encoded = pc.dictionary_encode(pa.array(lo, pa.uint64()))
        unique_lo = encoded.dictionary.to_numpy()
        inverse = encoded.indices
        unique_hi = np.full(len(unique_lo), hi[0], np.uint64)
    else:
        pairs = np.stack([hi, lo], axis=1)
        unique, found = np.unique(pairs, axis=0, return_inverse=True)
        unique_hi, unique_lo = unique[:, 0], unique[:, 1]
        inverse = pa.array(found.reshape(-1))
    v4 = (unique_hi == 0) & ((unique_lo >> np.uint64(32)) == np.uint64(0xFFFF))
    if v4.all():
        # Every distinct address IPv4: its texts stay in Arrow (a round trip through a
        # numpy array of Python strings was half of this function's time).
        return _v4_texts(unique_lo).take(inverse)
    texts = np.empty(len(unique_lo), dtype=object)
    if v4.any():
        texts[v4] = _v4_texts(unique_lo[v4]).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(~v4):
        h, low = int(unique_hi[i]), int(unique_lo[i])
        texts[i] = "" if h == 0 and low == 0 else str(netaddr.hilo_to_address(h, low))
    return pa.array(texts, type=pa.string()).take(inverse)


def _v4_texts(words: NDArray[np.uint64]) -> pa.Array:
    """Dotted-quad text of IPv4-mapped low words."""
    octets = [
        pa.array((words >> np.uint64(shift)) & np.uint64(255)).cast(pa.string())
        for shift in (24, 16, 8, 0)
    ]
    texts: pa.Array = pc.binary_join_element_wise(*octets, ".")
    return texts


def with_address_texts(table: pa.Table) -> pa.Table:
    """A result table in ``QUERY_SCHEMA``: the stored columns plus src/dst as text."""
    arrays = [table.column(n) for n in NAMES]
    columns = {n: table.column(n).to_numpy() for n in ("src_hi", "src_lo", "dst_hi", "dst_lo")}
    base = pa.Table.from_arrays(
        [
            a if a.type == f.type else a.cast(f.type)
            for a, f in zip(arrays, ARROW_SCHEMA, strict=True)
        ],
        schema=ARROW_SCHEMA,
    )
    base = base.append_column(
        QUERY_SCHEMA.field("src"), _address_texts(columns["src_hi"], columns["src_lo"])
    )
    return base.append_column(
        QUERY_SCHEMA.field("dst"), _address_texts(columns["dst_hi"], columns["dst_lo"])
    )


# --- filters, aggregations and their checks -------------------------------------------------
#
# Both backends put the same SQL text around their own scan: the conditions and
# aggregations below are written in the dialect DuckDB and ClickHouse share, and every
# value in them is an int checked here (never text from a caller).

#: What top talkers rank by, and what they group by: the provider-side address (src
#: unless ``local_side`` says dst, as at sealing) or the customer.
TOP_BY = ("bytes", "packets", "flows")
TOP_GROUPS = ("ip", "customer")
MIN_STEP_MS = 1_000
#: More points than any chart shows; a longer range needs a longer step.
MAX_BUCKETS = 10_000
#: Steps offered when a range has too many buckets (the smallest that fits is named).
_NICE_STEPS_MS = tuple(
    s * 1000 for s in (1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400)
)
_STEP_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_STEP = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)
#: Protocol names accepted besides numbers (nfdump's and IANA's spellings).
PROTOCOL_NAMES = {**PROTOCOLS, "icmpv6": 58}

TOP_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("customer_id", pa.int64(), nullable=False),
        pa.field("flows", pa.int64(), nullable=False),
        pa.field("packets", pa.int64(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
    ]
)
SERIES_SCHEMA = pa.schema(
    [
        pa.field("bucket_ms", pa.int64(), nullable=False),
        pa.field("flows", pa.int64(), nullable=False),
        pa.field("packets", pa.int64(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
    ]
)
#: The provider-side address of a record, in SQL both engines read.
LOCAL_HI_SQL = f"CASE WHEN local_side = {LOCAL_DST} THEN dst_hi ELSE src_hi END"
LOCAL_LO_SQL = f"CASE WHEN local_side = {LOCAL_DST} THEN dst_lo ELSE src_lo END"
#: The columns top talkers read (a scan can leave every other column unread).
TOP_COLUMNS = (
    "src_hi",
    "src_lo",
    "dst_hi",
    "dst_lo",
    "local_side",
    "customer_id",
    "packets",
    "bytes",
)
#: What a time series reads: the filters are applied inside the scan, so only the
#: columns added up leave it.
SERIES_COLUMNS = ("start", "packets", "bytes")
# Aliases differ from the column names: ClickHouse would read ``sum(bytes) AS bytes``
# as a cyclic alias.
_METRICS_SQL = (
    "CAST(count(*) AS BIGINT) AS n_flows, CAST(sum(packets) AS BIGINT) AS n_packets, "
    "CAST(sum(bytes) AS BIGINT) AS n_bytes"
)


@dataclass(frozen=True)
class Filters:
    """A query's checked filters: address ranges (prefixes), customers, ports (either
    side), IP protocols. Empty means "any"."""

    ranges: tuple[tuple[int, int], ...] = ()
    customers: tuple[int, ...] = ()
    ports: tuple[int, ...] = ()
    protos: tuple[int, ...] = ()

    def conditions(self) -> list[str]:
        """Conditions on everything but the addresses, which each backend writes its
        own way (DuckDB: one branch per address, so each stays a conjunction)."""
        found = []
        if self.customers:
            found.append(customer_condition(self.customers))
        if self.ports:
            ports = ", ".join(str(p) for p in self.ports)
            found.append(f"(src_port IN ({ports}) OR dst_port IN ({ports}))")
        if self.protos:
            found.append(f"proto IN ({', '.join(str(p) for p in self.protos)})")
        return found


def _when_text(ms: int) -> str:
    return isoformat(datetime.fromtimestamp(min(max(ms, 0), _LAST_MS) / 1000, tz=UTC))


#: Times shown in messages are clamped to what a datetime holds (years 1970–9999).
_LAST_MS = 253_402_300_799_000


def check_range(start_ms: int, end_ms: int) -> None:
    if end_ms <= start_ms:
        raise ValidationFailed(
            f"the query's end ({_when_text(end_ms)}) is not after its start "
            f"({_when_text(start_ms)}).",
            hint="Give a later end time.",
        )


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValidationFailed(f"limit {limit} is not positive.", hint="Give 1 or more.")


def _checked(values: Sequence[int], what: str, highest: int, hint: str) -> tuple[int, ...]:
    checked = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValidationFailed(f"{what} {value!r} is not a number.", hint=hint)
        if not 0 <= value <= highest:
            raise ValidationFailed(f"{what} {value} is outside 0–{highest}.", hint=hint)
        checked.add(int(value))
    return tuple(sorted(checked))


def filters(
    *,
    ips: Sequence[str] = (),
    customers: Sequence[int] = (),
    ports: Sequence[int] = (),
    protos: Sequence[int] = (),
) -> Filters:
    """Check a query's filters; raises ``ValidationFailed`` naming the first bad one."""
    return Filters(
        ranges=address_ranges(ips),
        customers=tuple(sorted({int(c) for c in customers})),
        ports=_checked(ports, "port", 65_535, "Give port numbers between 0 and 65535."),
        protos=_checked(
            protos,
            "IP protocol",
            255,
            "Give IP protocol numbers between 0 and 255 (6 tcp, 17 udp, 1 icmp, 58 icmpv6).",
        ),
    )


def customer_condition(customers: Iterable[int]) -> str:
    ids = sorted({int(c) for c in customers})
    return f"customer_id IN ({', '.join(str(i) for i in ids)})"


def protocol_number(text: str) -> int:
    """An IP protocol given as a number or a name (tcp, udp, icmp, icmpv6, gre, esp, …)."""
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    if value in PROTOCOL_NAMES:
        return PROTOCOL_NAMES[value]
    raise ValidationFailed(
        f"IP protocol '{text}' is neither a number nor a protocol name I know.",
        hint=f"Give a number (0–255) or one of: {', '.join(sorted(PROTOCOL_NAMES))}.",
    )


def step_text(ms: int) -> str:
    """A step in the largest unit that divides it: 30s, 5m, 1h, 1d."""
    for unit, size in sorted(_STEP_UNITS.items(), key=lambda u: -u[1]):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_step(text: str) -> int:
    """A step such as 30s, 5m, 1h or 1d, in milliseconds."""
    match = _STEP.match(text)
    if match is None:
        raise ValidationFailed(
            f"step '{text}' is not a number with a unit.",
            hint="Write it like 30s, 5m, 1h or 1d.",
        )
    return int(match.group(1)) * _STEP_UNITS[match.group(2).lower()]


def check_top(by: str, group: str, limit: int) -> None:
    if by not in TOP_BY:
        raise ValidationFailed(
            f"top talkers cannot rank by '{by}'.", hint=f"Rank by one of: {', '.join(TOP_BY)}."
        )
    if group not in TOP_GROUPS:
        raise ValidationFailed(
            f"top talkers cannot group by '{group}'.",
            hint="Group by ip (the provider-side address) or customer.",
        )
    check_limit(limit)


def check_series(start_ms: int, end_ms: int, step_ms: int) -> int:
    """How many buckets the series has; refuses a step under a second or a range of
    more than ``MAX_BUCKETS`` steps, naming a step that fits."""
    check_range(start_ms, end_ms)
    if step_ms < MIN_STEP_MS:
        raise ValidationFailed(
            f"a step of {step_ms} ms is shorter than the shortest, 1 s.",
            hint="Give a step of 1s or more, e.g. 30s, 5m, 1h or 1d.",
        )
    buckets = -(-(end_ms - start_ms) // step_ms)
    if buckets > MAX_BUCKETS:
        least = -(-(end_ms - start_ms) // MAX_BUCKETS)
        fits = next((s for s in _NICE_STEPS_MS if s >= least), -(-least // DAY_MS) * DAY_MS)
        raise ValidationFailed(
            f"a step of {step_text(step_ms)} cuts this range into {buckets:,} buckets, more "
            f"than the {MAX_BUCKETS:,} a series may have.",
            hint=f"Choose a larger step: {step_text(fits)} or more for this range.",
        )
    return buckets


def top_sql(source: str, *, by: str, group: str, limit: int) -> str:
    """Top talkers over the rows ``source`` selects (it needs ``TOP_COLUMNS``):
    ranked by ``by``, ties in key order so both backends answer alike. Grouping by ip
    keeps the customer apart: an address that changed hands in the range is listed
    once per holder."""
    if group == "ip":
        keys = f"{LOCAL_HI_SQL} AS key_hi, {LOCAL_LO_SQL} AS key_lo, customer_id"
        grouping = "key_hi, key_lo, customer_id"
    else:
        keys, grouping = "customer_id", "customer_id"
    return (
        f"SELECT {keys}, {_METRICS_SQL} FROM ({source}) AS scanned "  # noqa: S608
        f"GROUP BY {grouping} ORDER BY n_{by} DESC, {grouping} LIMIT {int(limit)}"
    )


def series_sql(source: str, bucket: str) -> str:
    """Totals per bucket (``bucket``: the SQL of a row's bucket index)."""
    return (
        f"SELECT {bucket} AS bucket, {_METRICS_SQL} FROM ({source}) AS scanned "  # noqa: S608
        "GROUP BY bucket"
    )


def _metric(table: pa.Table, name: str) -> NDArray[np.int64]:
    values: NDArray[np.int64] = table.column(name).to_numpy().astype(np.int64, copy=False)
    return values


def top_table(found: pa.Table, group: str) -> pa.Table:
    """The engine's top-talker rows in ``TOP_SCHEMA``: the key as readable text."""
    customers = _metric(found, "customer_id")
    if group == "ip":
        keys = _address_texts(
            found.column("key_hi").to_numpy().astype(np.uint64),
            found.column("key_lo").to_numpy().astype(np.uint64),
        )
    else:
        keys = pa.array(["-" if c < 0 else str(c) for c in customers.tolist()], pa.string())
    return pa.Table.from_arrays(
        [
            keys,
            pa.array(customers, pa.int64()),
            *(pa.array(_metric(found, f"n_{m}"), pa.int64()) for m in TOP_BY[::-1]),
        ],
        schema=TOP_SCHEMA,
    )


def series_table(found: pa.Table, *, start_ms: int, step_ms: int, buckets: int) -> pa.Table:
    """Every bucket of the range in ``SERIES_SCHEMA``, those without records as zeros."""
    index = _metric(found, "bucket") if found.num_rows else np.zeros(0, np.int64)
    columns = {}
    for metric in ("flows", "packets", "bytes"):
        values = np.zeros(buckets, np.int64)
        if found.num_rows:
            values[index] = _metric(found, f"n_{metric}")
        columns[metric] = values
    starts = start_ms + step_ms * np.arange(buckets, dtype=np.int64)
    return pa.Table.from_arrays(
        [pa.array(starts, pa.int64()), *(pa.array(columns[m], pa.int64()) for m in columns)],
        schema=SERIES_SCHEMA,
    )


# --- readable output ------------------------------------------------------------------------

#: What a person or another program gets of a record (CLI formats, the API): times as
#: ISO 8601 UTC text, addresses as text, no internal address words.
READABLE_COLUMNS = (
    "start",
    "end",
    "src",
    "src_port",
    "dst",
    "dst_port",
    "proto",
    "tcp_flags",
    "packets",
    "bytes",
    "sampling",
    "customer_id",
    "instance_id",
    "local_side",
    "direction",
    "in_if",
    "out_if",
    "exporter",
    "nat_src",
    "nat_src_port",
    "nat_dst",
    "nat_dst_port",
    "source",
)


def readable(table: pa.Table | pa.RecordBatch, *, times_as_text: bool = True) -> pa.Table:
    """A ``QUERY_SCHEMA`` result with ``READABLE_COLUMNS``; ``times_as_text=False``
    keeps start/end typed (for Parquet output)."""
    table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in READABLE_COLUMNS:
        if name in ("exporter", "nat_src", "nat_dst"):
            arrays[name] = _address_texts(
                table.column(f"{name}_hi").to_numpy(), table.column(f"{name}_lo").to_numpy()
            )
        elif name in ("start", "end") and times_as_text:
            arrays[name] = _time_texts(table.column(name))
        else:
            arrays[name] = table.column(name)
    return pa.table(arrays)


def _time_texts(times: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO 8601 UTC with milliseconds (2026-05-01T00:00:00.000Z). Arrow's cast to text
    writes "2026-05-01 00:00:00.000" several times faster than its strftime."""
    text = pc.cast(pc.cast(times, pa.timestamp("ms")), pa.string())
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(text, pa.scalar("Z"), "")


def json_texts(table: pa.Table) -> pa.Array:
    """Each row of a ``readable`` table as one JSON object's text, built column-wise in
    Arrow (a Python ``json.dumps`` per row manages about a fifth as many records a
    second). Plain quoting is enough: every text column is an address or a time written
    here, never free text, so nothing in it needs escaping."""
    parts = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_string(field.type):
            text = pc.binary_join_element_wise(pa.scalar('"'), column, pa.scalar('"'), "")
        elif pa.types.is_timestamp(field.type):
            text = pc.binary_join_element_wise(
                pa.scalar('"'), _time_texts(column), pa.scalar('"'), ""
            )
        else:
            text = pc.cast(column, pa.string())
        parts.append(pc.binary_join_element_wise(pa.scalar(f'"{field.name}":'), text, ""))
    if not parts or table.num_rows == 0:
        return pa.array([], pa.string())
    body = pc.binary_join_element_wise(*parts, ",")
    objects = pc.binary_join_element_wise(pa.scalar("{"), body, pa.scalar("}"), "")
    return objects.combine_chunks() if isinstance(objects, pa.ChunkedArray) else objects


def ndjson_bytes(table: pa.Table) -> bytes:
    """A ``readable`` table as JSON lines: the texts of ``json_texts``, one a line."""
    lines = json_texts(table)
    if len(lines) == 0:
        return b""
    lines = pc.binary_join_element_wise(lines, pa.scalar("\n"), "")
    # A string array's data buffer holds its values back to back: the whole text.
    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, lines.offset * 4)
    data = lines.buffers()[2]
    text: bytes = data.to_pybytes()[offsets[0] : offsets[-1]]
    return text


#: An aggregation's source: the FROM-able SQL of the matching records and the function
#: that runs a statement over it on the backend's engine.
AggregateSource = tuple[str, Callable[[str], pa.Table]]


class Aggregations:
    """``top_talkers`` and ``time_series`` for a backend that can give the matching
    records as SQL (``_aggregate_source``) and say how its engine numbers a record's
    step (``BUCKET_SQL``); the statements themselves are ``top_sql``/``series_sql``."""

    #: The step index of a record, with ``{start}`` and ``{step}`` (ints) filled in.
    BUCKET_SQL: str

    def _aggregate_source(
        self, start_ms: int, end_ms: int, wanted: Filters, columns: Sequence[str]
    ) -> AggregateSource | None:
        raise NotImplementedError

    def top_talkers(
        self,
        *,
        start_ms: int,
        end_ms: int,
        by: str = "bytes",
        group: str = "ip",
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
        limit: int = 20,
    ) -> pa.Table:
        check_top(by, group, limit)
        wanted = filters(ips=ips, customers=customers, ports=ports, protos=protos)
        source = self._aggregate_source(start_ms, end_ms, wanted, TOP_COLUMNS)
        if source is None:
            return TOP_SCHEMA.empty_table()
        sql, run = source
        found = run(top_sql(sql, by=by, group=group, limit=limit))
        if found.num_rows == 0:
            return TOP_SCHEMA.empty_table()
        return top_table(found, group)

    def time_series(
        self,
        *,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
    ) -> pa.Table:
        buckets = check_series(start_ms, end_ms, step_ms)
        wanted = filters(ips=ips, customers=customers, ports=ports, protos=protos)
        source = self._aggregate_source(start_ms, end_ms, wanted, SERIES_COLUMNS)
        found = pa.table({"bucket": pa.array([], pa.int64())})
        if source is not None:
            sql, run = source
            bucket = self.BUCKET_SQL.format(start=int(start_ms), step=int(step_ms))
            found = run(series_sql(sql, bucket))
        return series_table(found, start_ms=start_ms, step_ms=step_ms, buckets=buckets)
