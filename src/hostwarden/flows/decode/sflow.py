"""sFlow v5 datagrams to flow records (one per flow sample) and interface counters.

Layout as in the sFlow version 5 specification (sflow.org/sflow_version_5.txt), XDR:
big-endian 32-bit words, every structure a multiple of four bytes. Read here: the
datagram header (agent address v4/v6, sub-agent, sequence, uptime); flow samples and
expanded flow samples (enterprise 0, formats 1 and 3) with their records raw packet
header (1, parsed by ``packet``), sampled IPv4 (3) and IPv6 (4), extended NAT (1007) and
NAT ports (1020); counter samples and expanded counter samples (formats 2 and 4) with
generic interface counters (record 1). Every other sample or record, including those of
other enterprises, is skipped by its length.

A sample stands for ``sampling_rate`` packets: ``packets`` is the rate and ``bytes`` the
sampled frame length times the rate; ``sampling`` keeps the rate. sFlow has no flow times,
so ``start`` and ``end`` are the time the datagram was received, and the exporter column
is the UDP source the datagram came from (not the agent address it claims). Samples of
frames that carry no IP header (ARP, LLDP …) give no record.

Two forms, held to the same answers by the tests: ``decode`` walks one datagram in Python
(the lengths of samples and records vary), reading fields with precompiled ``struct``
formats into one tuple per sample that numpy takes in one call; ``decode_many`` walks many
datagrams with array operations, one sample or record step at a time for all of them at
once, and parses all their packet headers in one ``packet.parse_headers`` call.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from hostwarden.errors import HostwardenError
from hostwarden.flows.decode.base import DecodeError, DecodeResult, InterfaceCounters
from hostwarden.flows.decode.packet import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    parse_header,
    parse_headers,
)
from hostwarden.flows.schema import FlowBatch, FlowSource
from hostwarden.registry.netaddr import V4_MAPPED_BASE, text_to_int

SFLOW_VERSION: Final = 5

FLOW_SAMPLE: Final = 1
COUNTERS_SAMPLE: Final = 2
FLOW_SAMPLE_EXPANDED: Final = 3
COUNTERS_SAMPLE_EXPANDED: Final = 4

RECORD_RAW_HEADER: Final = 1
RECORD_SAMPLED_IPV4: Final = 3
RECORD_SAMPLED_IPV6: Final = 4
RECORD_EXTENDED_NAT: Final = 1007
RECORD_EXTENDED_NAT_PORT: Final = 1020
RECORD_GENERIC_INTERFACE: Final = 1

#: sFlow header_protocol → pcap LINKTYPE (the vocabulary of ``packet``).
HEADER_PROTOCOLS: Final = {1: LINKTYPE_ETHERNET, 11: LINKTYPE_IPV4, 12: LINKTYPE_IPV6}
#: ifIndex meaning "no interface": the packet came from or went to the agent itself. It
#: becomes 0 in the schema, as do discarded packets and multiple output interfaces.
IF_UNKNOWN: Final = 0x3FFFFFFF
#: From this many flow samples in one datagram on, its headers are parsed with numpy.
BATCH_MIN_SAMPLES: Final = 64
_EXPORTER_CACHE_LIMIT: Final = 4096

_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")
_U32X3 = struct.Struct("!III")
_U32X4 = struct.Struct("!IIII")
_FLOW = struct.Struct("!8I")
_FLOW_EXPANDED = struct.Struct("!11I")
_RAW_HEADER = struct.Struct("!4I")
_SAMPLED_V4 = struct.Struct("!IIIIIII")  # length, proto, src, dst, sport, dport, flags (+ tos)
_SAMPLED_V6 = struct.Struct("!IIQQQQIII")  # length, proto, src, dst, sport, dport, flags
_GENERIC_IF = struct.Struct("!IIQIIQIIIIIIQIIIIII")
_ADDRESS_LENGTH: Final = {0: 0, 1: 4, 2: 16}
_FAMILY: Final = {4: socket.AF_INET, 16: socket.AF_INET6}
_MAPPED = V4_MAPPED_BASE


class SflowDatagram(NamedTuple):
    """The header of an sFlow v5 datagram."""

    agent: str
    sub_agent: int
    sequence: int
    uptime_ms: int
    samples: int


class SflowHeaderError(HostwardenError):
    """The datagram header is unreadable; ``reason`` is a ``DecodeError`` slug."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail, hint="The datagram is not sFlow v5 or is cut short.")
        self.reason = reason


def read_datagram_header(payload: bytes) -> tuple[SflowDatagram, int]:
    """The datagram header and the offset of its first sample."""
    size = len(payload)
    if size < 8:
        raise SflowHeaderError("truncated", f"sFlow datagram of {size} bytes has no header")
    version, address_type = _U32X2.unpack_from(payload, 0)
    if version != SFLOW_VERSION:
        raise SflowHeaderError("bad-version", f"sFlow version {version}, expected 5")
    length = _ADDRESS_LENGTH.get(address_type)
    if length is None:
        raise SflowHeaderError("bad-header", f"agent address type {address_type}")
    pos = 8 + length
    if pos + 16 > size:
        raise SflowHeaderError("truncated", f"sFlow datagram header cut at {size} bytes")
    agent = socket.inet_ntop(_FAMILY[length], payload[8:pos]) if length else ""
    sub_agent, sequence, uptime, samples = _U32X4.unpack_from(payload, pos)
    return SflowDatagram(agent, sub_agent, sequence, uptime, samples), pos + 16


# One row per flow sample as the walk collects it: a tuple of these, in this order.
_ROW_FIELDS = (
    "start",
    "exporter_hi",
    "exporter_lo",
    "src_hi",
    "src_lo",
    "dst_hi",
    "dst_lo",
    "src_port",
    "dst_port",
    "proto",
    "tcp_flags",
    "packets",
    "bytes",
    "sampling",
    "in_if",
    "out_if",
    "nat_src_hi",
    "nat_src_lo",
    "nat_dst_hi",
    "nat_dst_lo",
    "nat_src_port",
    "nat_dst_port",
    "has_ip",
)
_AT = {name: i for i, name in enumerate(_ROW_FIELDS)}
_HEADER_FIELDS = (
    "src_hi",
    "src_lo",
    "dst_hi",
    "dst_lo",
    "src_port",
    "dst_port",
    "proto",
    "tcp_flags",
)
_NO_IP = (0, 0, 0, 0, 0, 0, 0, 0)
_NO_NAT = (0, 0, 0, 0)
_NO_NAT_PORTS = (0, 0)


class _Walk:
    """What the walk over one or more datagrams collects."""

    __slots__ = ("counters", "errors", "headers", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[int | bool, ...]] = []
        # Pending headers for the numpy pass: (row, start, end, linktype), offsets into
        # the joined payloads.
        self.headers: list[tuple[int, int, int, int]] = []
        self.errors: list[DecodeError] = []
        self.counters: list[InterfaceCounters] = []


class SflowDecoder:
    """Decodes sFlow v5 datagrams; holds no state between them except a cache of parsed
    exporter addresses."""

    def __init__(self) -> None:
        self._exporters: dict[str, tuple[int, int]] = {}

    def decode(self, payload: bytes, exporter: str, received_ms: int) -> DecodeResult:
        """Records and counters of one datagram; never raises on bad input."""
        walk = _Walk()
        self._walk(walk, payload, exporter, received_ms)
        return self._result(walk, payload)

    def decode_many(self, datagrams: Iterable[tuple[bytes, str, int]]) -> DecodeResult:
        """Many datagrams ``(payload, exporter, received_ms)`` at once, with the answer of
        ``decode`` one by one in the same order, several times faster: the form for
        imports, and for a collector that reads datagrams in bursts.

        Every step is an array operation over all datagrams: their headers, then their
        samples one step at a time (the k-th sample of every datagram together), then
        the records of every flow sample one step at a time, then all packet headers in
        one ``parse_headers`` call. Only counter samples are read in Python. A datagram
        with anything unusual (an error, sampled-IP or NAT records, more samples or
        records than the steps go) is left to ``decode``, so that both forms agree."""
        items = list(datagrams)
        if not items:
            return DecodeResult(batch=_empty_batch())
        batch = _Batch(items, [self._exporter_words(exporter) for _, exporter, _ in items])
        flows, counter_samples = _locate_samples(batch)
        counters: dict[int, list[InterfaceCounters]] = {}
        for index, body, end, kind in counter_samples:
            if index in batch.dirty:
                continue
            walk = _Walk()
            _, exporter, received_ms = items[index]
            self._counter_records(walk, batch.joined, body, end, kind, exporter, received_ms)
            if walk.errors:
                batch.dirty.add(index)
            counters.setdefault(index, []).extend(walk.counters)
        clean = _flow_columns(batch, flows)
        fallback = {index: self.decode(*items[index]) for index in sorted(batch.dirty)}
        errors: list[DecodeError] = []
        found: list[InterfaceCounters] = []
        for index in sorted(set(counters) | set(fallback)):
            if index in fallback:
                errors += fallback[index].errors
                found += fallback[index].counters
            else:
                found += counters[index]
        pieces = [(index, r.batch) for index, r in fallback.items() if len(r.batch)]
        return DecodeResult(batch=_in_datagram_order(clean, pieces), errors=errors, counters=found)

    # --- the walk --------------------------------------------------------------------

    def _exporter_words(self, exporter: str) -> tuple[int, int]:
        words = self._exporters.get(exporter)
        if words is None:
            try:
                value = text_to_int(exporter)
            except HostwardenError:
                value = 0
            words = (value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF)
            if len(self._exporters) >= _EXPORTER_CACHE_LIMIT:
                self._exporters.clear()
            self._exporters[exporter] = words
        return words

    def _walk(
        self,
        walk: _Walk,
        payload: bytes,
        exporter: str,
        received_ms: int,
    ) -> None:
        # The hot path of sFlow collection: one function, struct formats bound to locals,
        # one tuple per flow sample. Lengths are checked before every read, so that bad
        # input ends as a DecodeError, never as an exception.
        errors = walk.errors
        try:
            header, pos = read_datagram_header(payload)
        except SflowHeaderError as exc:
            errors.append(DecodeError(exporter, exc.reason, exc.message))
            return
        exporter_hi, exporter_lo = self._exporter_words(exporter)
        size = len(payload)
        count = header.samples
        inline = count < BATCH_MIN_SAMPLES
        rows = walk.rows
        pending_headers = walk.headers
        unpack_pair = _U32X2.unpack_from
        unpack_flow = _FLOW.unpack_from
        unpack_raw = _RAW_HEADER.unpack_from
        for index in range(count):
            if pos + 8 > size:
                errors.append(
                    DecodeError(
                        exporter,
                        "truncated",
                        f"sFlow datagram {header.sequence} from agent {header.agent} "
                        f"announces {count} samples but ends after {index}",
                    )
                )
                return
            kind, length = unpack_pair(payload, pos)
            body = pos + 8
            end = body + length
            if length & 3 or end > size:
                errors.append(
                    DecodeError(
                        exporter,
                        "bad-length" if length & 3 else "truncated",
                        f"sFlow sample {index} (format {kind >> 12}:{kind & 0xFFF}) of datagram "
                        f"{header.sequence} claims {length} bytes, {size - body} remain",
                    )
                )
                return
            pos = end
            if kind == FLOW_SAMPLE:
                if length < 32:
                    errors.append(_short_sample(exporter, header, index, length, 32))
                    continue
                _, _, rate, _, _, in_if, out_if, records = unpack_flow(payload, body)
                # Compact form: format in the top two bits, so any value from IF_UNKNOWN
                # up is "unknown", "discarded" or "several interfaces": no ifIndex.
                in_if = in_if if in_if < IF_UNKNOWN else 0
                out_if = out_if if out_if < IF_UNKNOWN else 0
                rpos = body + 32
            elif kind == FLOW_SAMPLE_EXPANDED:
                if length < 44:
                    errors.append(_short_sample(exporter, header, index, length, 44))
                    continue
                (_, _, _, rate, _, _, in_format, in_if, out_format, out_if, records) = (
                    _FLOW_EXPANDED.unpack_from(payload, body)
                )
                in_if = in_if if not in_format and in_if != IF_UNKNOWN else 0
                out_if = out_if if not out_format and out_if != IF_UNKNOWN else 0
                rpos = body + 44
            elif kind in (COUNTERS_SAMPLE, COUNTERS_SAMPLE_EXPANDED):
                self._counter_records(walk, payload, body, end, kind, exporter, received_ms)
                continue
            else:
                continue  # other formats and enterprises: skipped by their length

            fields: tuple[int, ...] | None = None
            pending: tuple[int, int, int] | None = None
            frame_length = 0
            nat = _NO_NAT
            nat_ports = _NO_NAT_PORTS
            for _ in range(records):
                if rpos + 8 > end:
                    errors.append(
                        DecodeError(
                            exporter,
                            "truncated",
                            f"flow sample {index} of datagram {header.sequence} announces "
                            f"{records} records",
                        )
                    )
                    break
                record, record_length = unpack_pair(payload, rpos)
                record_body = rpos + 8
                rpos = record_body + record_length
                if record_length & 3 or rpos > end:
                    errors.append(
                        DecodeError(
                            exporter,
                            "bad-length",
                            f"flow record format {record >> 12}:{record & 0xFFF} in datagram "
                            f"{header.sequence} claims {record_length} bytes, "
                            f"{end - record_body} remain in its sample",
                        )
                    )
                    break
                if fields is not None or pending is not None:
                    if record == RECORD_EXTENDED_NAT:
                        nat = _nat_addresses(payload, record_body, rpos) or nat
                    elif record == RECORD_EXTENDED_NAT_PORT and record_length >= 8:
                        nat_ports = unpack_pair(payload, record_body)
                    continue
                if record == RECORD_RAW_HEADER:
                    if record_length < 16:
                        continue
                    protocol, frame_length, _, header_length = unpack_raw(payload, record_body)
                    linktype = HEADER_PROTOCOLS.get(protocol)
                    if linktype is None:
                        continue
                    start = record_body + 16
                    stop = min(start + header_length, rpos)
                    if inline:
                        fields = parse_header(payload, start, stop, linktype) or _NO_IP
                    else:
                        pending = (start, stop, linktype)
                elif record == RECORD_SAMPLED_IPV4 and record_length >= 28:
                    frame_length, proto, src, dst, sport, dport, flags = _SAMPLED_V4.unpack_from(
                        payload, record_body
                    )
                    fields = (0, _MAPPED | src, 0, _MAPPED | dst, sport, dport, proto, flags)
                elif record == RECORD_SAMPLED_IPV6 and record_length >= 52:
                    frame_length, proto, sh, sl, dh, dl, sport, dport, flags = (
                        _SAMPLED_V6.unpack_from(payload, record_body)
                    )
                    fields = (sh, sl, dh, dl, sport, dport, proto, flags)
                elif record == RECORD_EXTENDED_NAT:
                    nat = _nat_addresses(payload, record_body, rpos) or nat
                elif record == RECORD_EXTENDED_NAT_PORT and record_length >= 8:
                    nat_ports = unpack_pair(payload, record_body)
            if fields is None:
                if pending is None:
                    continue  # no header record of a kind that is read
                pending_headers.append((len(rows), *pending))
                fields = _NO_IP
            elif fields is _NO_IP:
                continue  # not an IP packet: no record
            rate = rate or 1
            rows.append(
                (
                    received_ms,
                    exporter_hi,
                    exporter_lo,
                    *fields,
                    rate,
                    frame_length * rate,
                    rate,
                    in_if,
                    out_if,
                    *nat,
                    nat_ports[0] & 0xFFFF,
                    nat_ports[1] & 0xFFFF,
                    pending is None,
                )
            )
        if pos != size:
            errors.append(
                DecodeError(
                    exporter,
                    "bad-length",
                    f"{size - pos} bytes after the {count} samples of sFlow datagram "
                    f"{header.sequence}",
                )
            )

    def _counter_records(
        self,
        walk: _Walk,
        payload: bytes,
        pos: int,
        end: int,
        kind: int,
        exporter: str,
        received_ms: int,
    ) -> None:
        if kind == COUNTERS_SAMPLE:
            if end - pos < 12:
                walk.errors.append(DecodeError(exporter, "bad-sample", "short counters sample"))
                return
            _, source_id, records = _U32X3.unpack_from(payload, pos)
            pos += 12
        else:
            if end - pos < 16:
                walk.errors.append(DecodeError(exporter, "bad-sample", "short counters sample"))
                return
            _, source_type, source_index, records = _U32X4.unpack_from(payload, pos)
            source_id = source_type << 24 | source_index
            pos += 16
        for _ in range(records):
            if pos + 8 > end:
                walk.errors.append(
                    DecodeError(
                        exporter, "truncated", f"counters sample announces {records} records"
                    )
                )
                return
            record, length = _U32X2.unpack_from(payload, pos)
            body = pos + 8
            pos = body + length
            if length & 3 or pos > end:
                walk.errors.append(
                    DecodeError(
                        exporter,
                        "bad-length",
                        f"counters record format {record >> 12}:{record & 0xFFF} claims "
                        f"{length} bytes, {end - body} remain in its sample",
                    )
                )
                return
            if record == RECORD_GENERIC_INTERFACE and length >= _GENERIC_IF.size:
                (
                    if_index,
                    _,
                    if_speed,
                    _,
                    _,
                    in_octets,
                    in_ucast,
                    in_mcast,
                    in_bcast,
                    in_discards,
                    in_errors,
                    _,
                    out_octets,
                    out_ucast,
                    out_mcast,
                    out_bcast,
                    out_discards,
                    out_errors,
                    _,
                ) = _GENERIC_IF.unpack_from(payload, body)
                walk.counters.append(
                    InterfaceCounters(
                        exporter=exporter,
                        received_ms=received_ms,
                        source_id=source_id,
                        if_index=if_index,
                        if_speed=if_speed,
                        in_octets=in_octets,
                        in_packets=in_ucast + in_mcast + in_bcast,
                        in_errors=in_errors,
                        in_discards=in_discards,
                        out_octets=out_octets,
                        out_packets=out_ucast + out_mcast + out_bcast,
                        out_errors=out_errors,
                        out_discards=out_discards,
                    )
                )

    # --- rows to columns -------------------------------------------------------------

    def _result(self, walk: _Walk, joined: bytes) -> DecodeResult:
        # The batch is passed in: DecodeResult's default builds an empty FlowBatch, which
        # costs more than decoding a small datagram.
        if not walk.rows:
            return DecodeResult(batch=_empty_batch(), errors=walk.errors, counters=walk.counters)
        table = np.array(walk.rows, dtype=np.uint64)
        if walk.headers:
            pending = np.array(walk.headers, dtype=np.int64)
            parsed = parse_headers(joined, pending[:, 1], pending[:, 2], pending[:, 3])
            at = pending[:, 0]
            table[at, _AT["has_ip"]] = parsed.ok
            for name in _HEADER_FIELDS:
                table[at, _AT[name]] = getattr(parsed, name)
            has_ip = table[:, _AT["has_ip"]] != 0
            if not has_ip.all():
                table = table[has_ip]
        columns: dict[str, NDArray[np.generic]] = {
            name: table[:, i] for i, name in enumerate(_ROW_FIELDS[:-1])
        }
        columns["end"] = columns["start"]
        columns["source"] = np.full(len(table), FlowSource.SFLOW5, dtype=np.uint8)
        return DecodeResult(batch=FlowBatch(columns), errors=walk.errors, counters=walk.counters)


_EMPTY_COLUMNS = {name: column[:0] for name, column in FlowBatch.empty().columns.items()}


def _empty_batch() -> FlowBatch:
    """A batch without records, at a fifth of the cost of ``FlowBatch.empty()`` (which
    fills every column with ``np.full``); its arrays of length 0 are shared, harmlessly."""
    return FlowBatch(_EMPTY_COLUMNS)


def _short_sample(
    exporter: str, header: SflowDatagram, index: int, length: int, needed: int
) -> DecodeError:
    return DecodeError(
        exporter,
        "bad-sample",
        f"flow sample {index} of datagram {header.sequence} has {length} bytes, "
        f"needs at least {needed}",
    )


def _nat_addresses(payload: bytes, pos: int, end: int) -> tuple[int, int, int, int] | None:
    words: list[int] = []
    for _ in range(2):
        if pos + 4 > end:
            return None
        kind = _U32.unpack_from(payload, pos)[0]
        pos += 4
        if kind == 1 and pos + 4 <= end:
            words += (0, _MAPPED | _U32.unpack_from(payload, pos)[0])
            pos += 4
        elif kind == 2 and pos + 16 <= end:
            hi, lo = struct.unpack_from("!QQ", payload, pos)
            words += (hi, lo)
            pos += 16
        else:
            return None
    return words[0], words[1], words[2], words[3]


# --- many datagrams at once -------------------------------------------------------------

#: Sample steps per datagram and record steps per flow sample that ``decode_many`` takes
#: at most; a datagram that needs more goes to ``decode``. The loops end as soon as no
#: datagram has more (pmacct sends up to 8 samples of two records, switches about as many
#: samples of two to four records in a 1500-byte datagram).
MAX_SAMPLE_STEPS: Final = 64
MAX_RECORD_STEPS: Final = 16

I64 = NDArray[np.int64]


class _Batch:
    """The payloads laid end to end, each padded to four bytes so that every XDR word is
    aligned and can be read from one ``>u4`` view."""

    def __init__(self, items: list[tuple[bytes, str, int]], words: list[tuple[int, int]]):
        parts = [p if not len(p) & 3 else p + bytes(-len(p) % 4) for p, _, _ in items]
        self.joined = b"".join(parts)
        self.words = np.frombuffer(self.joined, dtype=">u4")
        padded = np.array([len(p) for p in parts], dtype=np.int64)
        self.base = np.concatenate(([0], np.cumsum(padded)[:-1])).astype(np.int64)
        self.size = np.array([len(p) for p, _, _ in items], dtype=np.int64)
        self.received_ms = np.array([ms for _, _, ms in items], dtype=np.int64)
        self.exporter_hi = np.array([hi for hi, _ in words], dtype=np.uint64)
        self.exporter_lo = np.array([lo for _, lo in words], dtype=np.uint64)
        self.dirty: set[int] = set()

    def word(self, offset: I64) -> I64:
        """The 32-bit words at byte offsets (a multiple of four; past the end: the last)."""
        if not len(self.words):
            return np.zeros_like(offset)
        value: I64 = np.take(self.words, offset >> 2, mode="clip").astype(np.int64)
        return value

    def mark(self, datagrams: I64) -> None:
        self.dirty.update(np.unique(datagrams).tolist())


def _locate_samples(batch: _Batch) -> tuple[I64, list[tuple[int, int, int, int]]]:
    """Flow samples as rows ``datagram, body, end, format`` in datagram order, and counter
    samples as tuples of the same; datagrams that break a rule go to ``batch.dirty``."""
    word = batch.word
    n = len(batch.size)
    base, stop = batch.base, batch.base + batch.size
    address = word(base + 4)
    length = np.select([address == 0, address == 1, address == 2], [0, 4, 16], -1)
    readable = (batch.size >= 8) & (word(base) == SFLOW_VERSION) & (length >= 0)
    readable &= base + 24 + length <= stop
    left = np.where(readable, word(base + 20 + length), 0)
    pos = base + 24 + length
    dirty = ~readable
    datagram = np.arange(n, dtype=np.int64)
    found: list[I64] = []
    counter_rows: list[I64] = []
    for step in range(MAX_SAMPLE_STEPS):
        active = (left > 0) & ~dirty
        if not active.any():
            break
        kind, size = word(pos), word(pos + 4)
        end = pos + 8 + size
        flow = (kind == FLOW_SAMPLE) | (kind == FLOW_SAMPLE_EXPANDED)
        short = flow & (size < np.where(kind == FLOW_SAMPLE, 32, 44))
        dirty |= active & ((pos + 8 > stop) | ((size & 3) != 0) | (end > stop) | short)
        active &= ~dirty
        rows = np.flatnonzero(active & flow)
        found.append(np.stack([datagram[rows], pos[rows] + 8, end[rows], kind[rows]], axis=1))
        counting = active & ((kind == COUNTERS_SAMPLE) | (kind == COUNTERS_SAMPLE_EXPANDED))
        rows = np.flatnonzero(counting)
        stepped = np.full(len(rows), step, dtype=np.int64)
        counter_rows.append(
            np.stack([datagram[rows], stepped, pos[rows] + 8, end[rows], kind[rows]], axis=1)
        )
        pos = np.where(active, end, pos)
        left = np.where(active, left - 1, left)
    dirty |= (left > 0) | (pos != stop)
    batch.mark(datagram[dirty])

    flows = np.concatenate(found) if found else np.zeros((0, 4), dtype=np.int64)
    # Steps visit the first sample of every datagram, then the second …: back to
    # datagram order (stable, so samples keep theirs).
    flows = flows[np.argsort(flows[:, 0], kind="stable")]
    flows = flows[~dirty[flows[:, 0]]]
    counted = np.concatenate(counter_rows) if counter_rows else np.zeros((0, 5), np.int64)
    counted = counted[np.lexsort((counted[:, 1], counted[:, 0]))]
    counters = [(d, b, e, k) for d, _, b, e, k in counted.tolist() if not dirty[d]]
    return flows, counters


def _flow_columns(batch: _Batch, flows: I64) -> tuple[dict[str, NDArray[Any]], I64] | None:
    """Columns of the records of the flow samples ``flows`` whose datagrams stay clean,
    and the datagram of each row; datagrams found unusual go to ``batch.dirty``."""
    if batch.dirty:
        dirty = np.fromiter(batch.dirty, dtype=np.int64)
        flows = flows[~np.isin(flows[:, 0], dirty)]
    if not len(flows):
        return None
    word = batch.word
    datagram, body, end = flows[:, 0], flows[:, 1], flows[:, 2]
    expanded = flows[:, 3] == FLOW_SAMPLE_EXPANDED

    rate = np.where(expanded, word(body + 12), word(body + 8))
    rate = np.where(rate == 0, 1, rate)
    compact_in, compact_out = word(body + 20), word(body + 24)
    in_if = np.where(compact_in < IF_UNKNOWN, compact_in, 0)
    out_if = np.where(compact_out < IF_UNKNOWN, compact_out, 0)
    if expanded.any():
        in_format, in_value = word(body + 24), word(body + 28)
        out_format, out_value = word(body + 32), word(body + 36)
        in_known = (in_format == 0) & (in_value != IF_UNKNOWN)
        out_known = (out_format == 0) & (out_value != IF_UNKNOWN)
        in_if = np.where(expanded, np.where(in_known, in_value, 0), in_if)
        out_if = np.where(expanded, np.where(out_known, out_value, 0), out_if)
    left = np.where(expanded, word(body + 40), word(body + 28))
    pos = body + np.where(expanded, 44, 32)

    n = len(body)
    bad = np.zeros(n, dtype=np.bool_)
    start = np.full(n, -1, dtype=np.int64)
    stop = np.zeros(n, dtype=np.int64)
    link = np.zeros(n, dtype=np.int64)
    frame = np.zeros(n, dtype=np.int64)
    for _ in range(MAX_RECORD_STEPS):
        active = (left > 0) & ~bad
        if not active.any():
            break
        kind, length = word(pos), word(pos + 4)
        record_end = pos + 8 + length
        bad |= active & (
            (pos + 8 > end)
            | ((length & 3) != 0)
            | (record_end > end)
            | np.isin(kind, _RECORDS_LEFT_TO_DECODE)
        )
        active &= ~bad
        raw = active & (start < 0) & (kind == RECORD_RAW_HEADER) & (length >= 16)
        protocol = word(pos + 8)
        linktype = np.select(
            [protocol == p for p in HEADER_PROTOCOLS], list(HEADER_PROTOCOLS.values()), 0
        )
        take = raw & (linktype != 0)
        start = np.where(take, pos + 24, start)
        stop = np.where(take, np.minimum(pos + 24 + word(pos + 20), record_end), stop)
        link = np.where(take, linktype, link)
        frame = np.where(take, word(pos + 12), frame)
        pos = np.where(active, record_end, pos)
        left = np.where(active, left - 1, left)
    bad |= left > 0

    keep = start >= 0
    if bad.any():
        batch.mark(datagram[bad])
        keep &= ~np.isin(datagram, datagram[bad])
    rows = np.flatnonzero(keep)
    data = np.frombuffer(batch.joined, dtype=np.uint8)
    parsed = parse_headers(data, start[rows], stop[rows], link[rows])
    rows = rows[parsed.ok]
    at = datagram[rows]
    rates = rate[rows].astype(np.uint64)
    received = batch.received_ms[at]
    columns: dict[str, NDArray[Any]] = {
        "start": received,
        "end": received,
        "source": np.full(len(rows), FlowSource.SFLOW5, dtype=np.uint8),
        "exporter_hi": batch.exporter_hi[at],
        "exporter_lo": batch.exporter_lo[at],
        "packets": rates,
        "bytes": frame[rows].astype(np.uint64) * rates,
        "sampling": rates,
        "in_if": in_if[rows],
        "out_if": out_if[rows],
    }
    for name in _HEADER_FIELDS:
        columns[name] = getattr(parsed, name)[parsed.ok]
    return columns, at


#: Flow records that ``decode_many`` leaves to ``decode`` (rare in the field).
_RECORDS_LEFT_TO_DECODE: Final = (
    RECORD_SAMPLED_IPV4,
    RECORD_SAMPLED_IPV6,
    RECORD_EXTENDED_NAT,
    RECORD_EXTENDED_NAT_PORT,
)


def _in_datagram_order(
    clean: tuple[dict[str, NDArray[Any]], NDArray[np.int64]] | None,
    fallback: list[tuple[int, FlowBatch]],
) -> FlowBatch:
    """One batch of the vectorised rows and those ``decode`` gave, ordered by datagram."""
    if not fallback:
        return FlowBatch(clean[0]) if clean is not None and len(clean[1]) else _empty_batch()
    batches = [batch for _, batch in fallback]
    order = [np.full(len(batch), index, dtype=np.int64) for index, batch in fallback]
    if clean is not None and len(clean[1]):
        batches.append(FlowBatch(clean[0]))
        order.append(clean[1])
    merged = FlowBatch.concat(batches)
    return merged.take(np.argsort(np.concatenate(order), kind="stable"))
