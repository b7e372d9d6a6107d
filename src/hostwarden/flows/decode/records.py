"""Data-set records → FlowBatch columns: the one vectorised pass v5, v9 and IPFIX share.

Decoders hand over each data set as raw bytes with its compiled ``Layout`` and a
``Context`` (header times, exporter, sampling known for its domain). Sets of the same layout
and protocol are joined, across datagrams too, and decoded with one ``np.frombuffer``;
every column is then computed with array operations over all their records at once. The
per-set context becomes per-record arrays with ``np.repeat`` (or stays a scalar when all
sets agree, the common case).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from hostwarden.errors import ValidationFailed
from hostwarden.flows.decode.base import DecodeError, DecodeResult, InterfaceCounters
from hostwarden.flows.decode.templates import NTP, REVERSE, Layout, Slot
from hostwarden.flows.schema import COLUMNS, DIRECTION_UNKNOWN, FlowBatch, FlowSource
from hostwarden.registry.netaddr import V4_MAPPED_BASE, address_int, parse_address

log = logging.getLogger(__name__)

I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
Buffer = bytes | memoryview
#: Records of one data set: their bytes, how many, and their context.
Chunk = tuple[Buffer, int, "Context"]
#: A per-record value: one number for all records, or one per record.
PerRecord = int | NDArray[Any]

_U32 = 1 << 32
_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
_V4_MAPPED = np.uint64(V4_MAPPED_BASE)

# Elements giving a record's start and end, most precise first.
_START = (152, 154, 156, 150, 158, 22)
_END = (153, 155, 157, 151, 159, 21)


class Context(NamedTuple):
    """What the records of one data set need from outside them."""

    exporter: str
    export_ms: int  # header export time, UTC epoch ms
    uptime_ms: int  # v5 / v9: the header's sysUptime; -1 for IPFIX
    init_ms: int  # IPFIX: systemInitTimeMilliseconds from options, -1 if not announced
    rate: int  # sampling rate for records that carry none, >= 1
    samplers: Mapping[int, int] | None  # sampler / selector id → rate


@lru_cache(maxsize=4096)
def exporter_words(exporter: str) -> tuple[int, int]:
    """The exporter's address as the two words of the schema; (0, 0) if it is no address."""
    try:
        value = address_int(parse_address(exporter))
    except ValidationFailed:
        return 0, 0
    return value >> 64, value & ((1 << 64) - 1)


class RecordSink:
    """What one decode call found: data sets waiting for the vectorised pass, batches
    decoded elsewhere (sFlow), interface counters and problems."""

    def __init__(self) -> None:
        self._groups: dict[tuple[Layout, FlowSource], list[Chunk]] = {}
        self.batches: list[FlowBatch] = []
        self.counters: list[InterfaceCounters] = []
        self.errors: list[DecodeError] = []

    def add(
        self, layout: Layout, source: FlowSource, data: Buffer, count: int, ctx: Context
    ) -> None:
        """Records of one data set: ``count`` * ``layout.record_length`` bytes of ``data``."""
        if count:
            self._groups.setdefault((layout, source), []).append((data, count, ctx))

    def error(self, exporter: str, reason: str, detail: str) -> None:
        self.errors.append(DecodeError(exporter, reason, detail))

    def merge(self, result: DecodeResult) -> None:
        self.batches.append(result.batch)
        self.counters.extend(result.counters)
        self.errors.extend(result.errors)

    def result(self, buffered: int) -> DecodeResult:
        batches = list(self.batches)
        for (layout, source), chunks in self._groups.items():
            try:
                batches.append(_decode_group(layout, source, chunks, self))
            except Exception as exc:  # a decoder bug must not stop a collector
                exporters = ", ".join(sorted({c[2].exporter for c in chunks}))
                log.exception("flow decoder failed on records from %s", exporters)
                self.error(exporters, "decoder-bug", f"{type(exc).__name__}: {exc}")
        self._groups.clear()
        return DecodeResult(FlowBatch.concat(batches), self.errors, self.counters, buffered)


#: Column values of ``flowDirection`` 0, 1 and anything else.
_DIRECTIONS = np.array([0, 1, DIRECTION_UNKNOWN], dtype=np.uint8)


def _complete(columns: dict[str, NDArray[Any]], n: int) -> dict[str, NDArray[Any]]:
    """The columns not set yet, at their sentinel for ``n`` records (made here because
    FlowBatch's ``np.full`` is several times slower than ``np.zeros`` on small batches)."""
    for column in COLUMNS:
        if column.name in columns:
            continue
        if column.default:
            values = np.empty(n, dtype=column.dtype)
            values.fill(column.default)
        else:
            values = np.zeros(n, dtype=column.dtype)
        columns[column.name] = values
    return columns


def _per_record(values: list[int], counts: Sequence[int], dtype: Any) -> PerRecord:
    first = values[0]
    if values.count(first) == len(values):
        return first
    return np.repeat(np.asarray(values, dtype=dtype), counts)


def uint(rec: NDArray[Any], slot: Slot, dtype: Any = np.uint64) -> NDArray[Any]:
    """An unsigned field of any length 1..8 as ``dtype`` (uint64 unless the column is
    narrower: converting once saves a copy). 3-, 5-, 6- and 7-byte fields are raw bytes in
    the layout and are right-aligned into 8-byte words here."""
    raw = rec[slot.name]
    if raw.ndim == 1:
        return raw.astype(dtype)
    words = np.zeros((len(raw), 8), dtype=np.uint8)
    words[:, 8 - slot.length :] = raw
    return words.view(">u8").ravel().astype(dtype)


def get(
    layout: Layout, rec: NDArray[Any], *elements: int, dtype: Any = np.uint64
) -> NDArray[Any] | None:
    """The first of ``elements`` the layout has, as ``dtype``."""
    for element in elements:
        slot = layout.slots.get(element)
        if slot is not None:
            return uint(rec, slot, dtype)
    return None


def _address(
    layout: Layout, rec: NDArray[Any], v4: int, v6: int, *, zero_is_absent: bool
) -> tuple[U64, U64] | None:
    """An address from its IPv4 and/or IPv6 element, in the 128-bit space."""
    lo4: U64 | None = None
    slot4 = layout.slots.get(v4)
    if slot4 is not None:
        raw4 = rec[slot4.name].astype(np.uint64)
        lo4 = raw4 | _V4_MAPPED
        if zero_is_absent:
            lo4 = np.where(raw4 == 0, np.uint64(0), lo4)
    slot6 = layout.slots.get(v6)
    if slot6 is None:
        return None if lo4 is None else (np.zeros(len(lo4), dtype=np.uint64), lo4)
    words = rec[slot6.name]
    hi6 = words[:, 0].astype(np.uint64)
    lo6 = words[:, 1].astype(np.uint64)
    if lo4 is None:
        return hi6, lo6
    # Both sent (some exporters do, one of them zero): take the IPv6 one where it is set.
    is6 = (hi6 | lo6) != 0
    return np.where(is6, hi6, np.uint64(0)), np.where(is6, lo6, lo4)


def _ntp_ms(value: U64) -> I64:
    seconds = (value >> np.uint64(32)).astype(np.int64)
    # NTP era 1 (from 2036-02-07) restarts at zero: small second counts belong to it.
    seconds = np.where(seconds < (1 << 31), seconds + _U32, seconds)
    fraction_ms = ((value & np.uint64(0xFFFFFFFF)) * np.uint64(1000)) >> np.uint64(32)
    ms: I64 = (seconds - _NTP_UNIX_OFFSET) * 1000 + fraction_ms.astype(np.int64)
    return ms


class _Times:
    """Per-record header values for the time columns."""

    def __init__(
        self, source: FlowSource, export_ms: PerRecord, uptime_ms: PerRecord, init_ms: PerRecord
    ) -> None:
        self.source = source
        self.export_ms = export_ms
        self.uptime_ms = uptime_ms
        self.init_ms = init_ms
        self.unknown_init = False

    def of(self, layout: Layout, rec: NDArray[Any], elements: tuple[int, ...]) -> I64 | None:
        for element in elements:
            slot = layout.slots.get(element)
            if slot is None:
                continue
            if slot.kind == NTP:
                return _ntp_ms(rec[slot.name].astype(np.uint64))
            value = uint(rec, slot, np.int64)
            base = element & 0xFFFF  # the same for a biflow's reverse elements
            if base in (152, 153):
                return value
            if base in (150, 151):
                return value * 1000
            if base in (158, 159):  # microseconds before the export time
                result: I64 = (np.int64(0) + self.export_ms) * 1000 - value
                return result // 1000
            return self._uptime(layout, rec, value)
        return None

    def _uptime(self, layout: Layout, rec: NDArray[Any], value: I64) -> I64:
        if self.source != FlowSource.IPFIX:
            # v5 / v9: milliseconds of sysUptime; the header gives sysUptime at export. The
            # difference is taken modulo 2**32 as a signed number, so that a counter that
            # wrapped (after 49.7 days) between flow start and export still comes out right,
            # as does a start a little after the header's time (exporter clock jitter).
            # (export - ((uptime - value + 2**31) mod 2**32 - 2**31)), in four array ops
            delta = (self.uptime_ms + (1 << 31) - value) & 0xFFFFFFFF
            start: I64 = (self.export_ms + (1 << 31)) - delta
            return start
        init: PerRecord = self.init_ms
        if layout.has(160):
            from_record = get(layout, rec, 160)
            assert from_record is not None
            record_init = from_record.astype(np.int64)
            init = np.where(record_init > 0, record_init, init)
        unknown = np.asarray(init) < 0
        if unknown.any():
            # flowStart/EndSysUpTime count from a system start nobody announced: the
            # export time is the best guess left, and the caller reports it.
            self.unknown_init = True
            absolute: I64 = np.where(unknown, np.int64(0) + self.export_ms, init + value)
            return absolute
        known: I64 = init + value
        return known


def record_rates(layout: Layout, rec: NDArray[Any]) -> U64 | None:
    """Sampling rates carried in the records themselves (0 where a record has none)."""
    direct = get(layout, rec, 34, 50)
    if direct is not None:
        return direct
    interval = get(layout, rec, 305)
    if interval is not None:
        # Systematic count-based sampling (RFC 5476): select `interval`, skip `space`.
        space = get(layout, rec, 306)
        total = interval if space is None else interval + space
        return np.where(interval > 0, total // np.maximum(interval, np.uint64(1)), 0)
    size = get(layout, rec, 309)
    population = get(layout, rec, 310)
    if size is not None and population is not None:
        return np.where(size > 0, population // np.maximum(size, np.uint64(1)), 0)
    slot = layout.slots.get(311)
    if slot is not None:
        with np.errstate(all="ignore"):  # NaN, infinities and zeros are not rates
            probability = rec[slot.name].astype(np.float64)
            usable = np.isfinite(probability) & (probability > 2.0**-32) & (probability <= 1)
            inverse = np.rint(1.0 / np.where(usable, probability, 1.0))
            rates: U64 = np.where(usable, inverse, 0).astype(np.uint64)
        return rates
    return None


def sampler_rates(ids: U64, samplers: Mapping[int, int], default: int) -> U64:
    """Rates of the samplers named in ``ids``; ``default`` for unknown ones."""
    if not samplers:
        return np.full(len(ids), default, dtype=np.uint64)
    keys = np.fromiter(samplers.keys(), dtype=np.uint64, count=len(samplers))
    values = np.fromiter(samplers.values(), dtype=np.uint64, count=len(samplers))
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    at = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
    rates: U64 = np.where(keys[at] == ids, values[at], np.uint64(default))
    return rates


def _decode_group(
    layout: Layout,
    source: FlowSource,
    chunks: list[Chunk],
    sink: RecordSink,
) -> FlowBatch:
    counts = [c[1] for c in chunks]
    n = sum(counts)
    data = chunks[0][0] if len(chunks) == 1 else b"".join(c[0] for c in chunks)
    group = _Group(layout, np.frombuffer(data, dtype=layout.dtype, count=n), source, chunks)
    forward = group.columns(reverse=False)
    if group.times.unknown_init:
        sink.error(
            ", ".join(sorted({c[2].exporter for c in chunks})),
            "no-init-time",
            f"{n} IPFIX records count time from system start but the exporter announced no "
            "systemInitTimeMilliseconds; their times are the export time",
        )
    if not layout.biflow:
        return FlowBatch(forward)
    # RFC 5103 biflow: the reverse direction becomes a record of its own (addresses, ports
    # and interfaces swapped), and a direction that saw no traffic is left out.
    backward = group.columns(reverse=True)
    back_seen = (backward["packets"] > 0) | (backward["bytes"] > 0)
    forward_seen = (forward["packets"] > 0) | (forward["bytes"] > 0) | ~back_seen
    return FlowBatch.concat(
        [FlowBatch(forward).take(forward_seen), FlowBatch(backward).take(back_seen)]
    )


class _Group:
    """The records of one layout and protocol, with their sets' contexts per record."""

    def __init__(
        self,
        layout: Layout,
        rec: NDArray[Any],
        source: FlowSource,
        chunks: list[Chunk],
    ) -> None:
        self.layout = layout
        self.rec = rec
        self.n = len(rec)
        self.source = source
        self.counts = counts = [c[1] for c in chunks]
        self.contexts = contexts = [c[2] for c in chunks]
        self.times = _Times(
            source,
            _per_record([c.export_ms for c in contexts], counts, np.int64),
            _per_record([c.uptime_ms for c in contexts], counts, np.int64),
            _per_record([c.init_ms for c in contexts], counts, np.int64),
        )
        words = [exporter_words(c.exporter) for c in contexts]
        self.exporter_hi = self._column(_per_record([w[0] for w in words], counts, np.uint64))
        self.exporter_lo = self._column(_per_record([w[1] for w in words], counts, np.uint64))
        self.rate = self._rate()

    def _column(self, value: PerRecord, dtype: Any = np.uint64) -> NDArray[Any]:
        return np.full(self.n, value, dtype=dtype) if isinstance(value, int) else value

    def get(self, *elements: int, dtype: Any = np.uint64) -> NDArray[Any] | None:
        return get(self.layout, self.rec, *elements, dtype=dtype)

    def _rate(self) -> PerRecord:
        """Per record: a rate in the record, else its sampler's, else the domain's."""
        rate = _per_record([c.rate for c in self.contexts], self.counts, np.uint64)
        sampler_id = self.get(48, 302)
        if sampler_id is not None and any(c.samplers for c in self.contexts):
            parts = []
            offset = 0
            for count, ctx in zip(self.counts, self.contexts, strict=True):
                ids = sampler_id[offset : offset + count]
                parts.append(sampler_rates(ids, ctx.samplers or {}, ctx.rate))
                offset += count
            rate = np.concatenate(parts)
        in_record = record_rates(self.layout, self.rec)
        if in_record is not None:
            rate = np.where(in_record > 0, in_record, np.uint64(0) + rate)
        return rate

    def columns(self, *, reverse: bool) -> dict[str, NDArray[Any]]:
        """The schema's columns; ``reverse``: of a biflow's reverse direction."""
        n = self.n
        r = REVERSE if reverse else 0
        source = np.empty(n, dtype=np.uint8)
        source.fill(self.source)
        cols: dict[str, NDArray[Any]] = {
            "source": source,
            "exporter_hi": self.exporter_hi,
            "exporter_lo": self.exporter_lo,
        }
        ends = ("dst", "src") if reverse else ("src", "dst")
        for prefix, v4, v6 in ((ends[0], 8, 27), (ends[1], 12, 28)):
            address = _address(self.layout, self.rec, v4, v6, zero_is_absent=False)
            if address is not None:
                cols[f"{prefix}_hi"], cols[f"{prefix}_lo"] = address
        for prefix, v4, v6 in (("nat_" + ends[0], 225, 281), ("nat_" + ends[1], 226, 282)):
            address = _address(self.layout, self.rec, v4, v6, zero_is_absent=True)
            if address is not None:
                cols[f"{prefix}_hi"], cols[f"{prefix}_lo"] = address

        proto = self.get(4, dtype=np.uint8)
        if proto is not None:
            cols["proto"] = proto
        src_port = self.get(7, 180, 182, dtype=np.uint16)
        dst_port = self.get(11, 181, 183, dtype=np.uint16)
        if reverse:
            src_port, dst_port = dst_port, src_port
        icmp = _icmp(self.layout, self.rec, proto, r) if reverse else None
        if icmp is None:
            icmp = _icmp(self.layout, self.rec, proto, 0)
        if icmp is not None:
            # ICMP carries no ports: the schema keeps type << 8 | code in dst_port.
            if proto is not None:
                is_icmp = (proto == 1) | (proto == 58)
            else:  # no protocol sent: the ICMP element is used only if there are no ports
                is_icmp = np.full(n, dst_port is None)
            zero = np.uint16(0)
            dst_port = np.where(is_icmp, icmp, zero if dst_port is None else dst_port)
            src_port = np.where(is_icmp, zero, zero if src_port is None else src_port)
        if src_port is not None:
            cols["src_port"] = src_port
        if dst_port is not None:
            cols["dst_port"] = dst_port

        flags = self.get(r | 6, dtype=np.uint8)  # the classic flags: the low byte
        if flags is not None:
            cols["tcp_flags"] = flags
        interfaces = ("out_if", "in_if") if reverse else ("in_if", "out_if")
        for column, elements in zip(interfaces, ((10, 252), (14, 253)), strict=True):
            value = self.get(*elements, dtype=np.uint32)
            if value is not None:
                cols[column] = value
        nat_ports = (
            ("nat_dst_port", "nat_src_port") if reverse else ("nat_src_port", "nat_dst_port")
        )
        for column, element in zip(nat_ports, (227, 228), strict=True):
            value = self.get(element, dtype=np.uint16)
            if value is not None:
                cols[column] = value
        direction = self.get(61)
        if direction is not None:
            if reverse:
                direction = direction ^ np.uint64(1)
            cols["direction"] = _DIRECTIONS.take(np.minimum(direction, np.uint64(2)))

        packets = self.get(r | 2, r | 86, r | 24, r | 298)
        octets = self.get(r | 1, r | 85, r | 23, r | 231)
        if self.layout.biflow:  # both directions are compared by their counters
            packets = packets if packets is not None else np.zeros(n, dtype=np.uint64)
            octets = octets if octets is not None else np.zeros(n, dtype=np.uint64)
        rate = self.rate
        if not isinstance(rate, int) or rate != 1:
            rate_u64 = np.asarray(rate, dtype=np.uint64)
            if packets is not None:
                packets = packets * rate_u64
            if octets is not None:
                octets = octets * rate_u64
            cols["sampling"] = np.broadcast_to(np.minimum(rate_u64, np.uint64(2**32 - 1)), (n,))
        if packets is not None:
            cols["packets"] = packets
        if octets is not None:
            cols["bytes"] = octets

        start = end = None
        if reverse:
            start = self.times.of(self.layout, self.rec, tuple(r | e for e in _START))
            end = self.times.of(self.layout, self.rec, tuple(r | e for e in _END))
        if start is None:
            start = self.times.of(self.layout, self.rec, _START)
        if end is None:
            end = self.times.of(self.layout, self.rec, _END)
        start = end if start is None else start
        end = start if end is None else end
        if start is None or end is None:
            start = end = self._column(self.times.export_ms, np.int64)
        cols["start"] = start
        cols["end"] = end
        return _complete(cols, n)


def _icmp(
    layout: Layout, rec: NDArray[Any], proto: NDArray[Any] | None, r: int
) -> NDArray[np.uint16] | None:
    """ICMP type << 8 | code, from whichever elements the template has (``r``: REVERSE
    for a biflow's reverse direction, which has its own type codes)."""
    u16 = np.uint16
    v4 = get(layout, rec, r | 32, dtype=u16)
    v6 = get(layout, rec, r | 139, dtype=u16)
    if not r:
        if v4 is None:
            type4, code4 = get(layout, rec, 176, dtype=u16), get(layout, rec, 177, dtype=u16)
            if type4 is not None:
                v4 = (type4 << u16(8)) | (code4 if code4 is not None else u16(0))
        if v6 is None:
            type6, code6 = get(layout, rec, 178, dtype=u16), get(layout, rec, 179, dtype=u16)
            if type6 is not None:
                v6 = (type6 << u16(8)) | (code6 if code6 is not None else u16(0))
    if v4 is not None and v6 is not None and proto is not None:
        both: NDArray[np.uint16] = np.where(proto == 58, v6, v4)
        return both
    return v4 if v4 is not None else v6
