"""NetFlow v5: a 24-byte header and up to 30 fixed 48-byte records per datagram.

The record format is described as a template of IPFIX elements, so v5 goes through the
same compiled layout and vectorised pass as v9 and IPFIX.
"""

from __future__ import annotations

import struct

from hostwarden.flows.decode.base import DecodeResult
from hostwarden.flows.decode.records import Context, RecordSink
from hostwarden.flows.decode.templates import FieldSpec, compile_layout
from hostwarden.flows.schema import FlowSource

HEADER = struct.Struct(">HHIIIIBBH")
RECORD_LENGTH = 48

#: The v5 record as (element, length): srcaddr, dstaddr, nexthop, input, output, dPkts,
#: dOctets, First, Last, srcport, dstport, pad1, tcp_flags, prot, tos, src_as, dst_as,
#: src_mask, dst_mask, pad2. 210 is IPFIX's paddingOctets.
RECORD = tuple(
    FieldSpec(element, length)
    for element, length in (
        (8, 4), (12, 4), (15, 4), (10, 2), (14, 2), (2, 4), (1, 4), (22, 4), (21, 4), (7, 2),
        (11, 2), (210, 1), (6, 1), (4, 1), (5, 1), (16, 2), (17, 2), (9, 1), (13, 1), (210, 2),
    )
)  # fmt: skip
LAYOUT = compile_layout(RECORD)
assert LAYOUT.record_length == RECORD_LENGTH


def sampling_rate(field: int) -> int:
    """The header's sampling field: 2 bits of mode, 14 of interval; 0 means unsampled.

    The interval is applied whatever the mode says: exporters that fill it in with mode 0
    exist, and one that samples but says interval 0 cannot be scaled anyway."""
    return (field & 0x3FFF) or 1


class Netflow5Decoder:
    """Stateless; ``feed`` adds a datagram's records to a sink."""

    def decode(self, payload: bytes, exporter: str, received_ms: int) -> DecodeResult:
        sink = RecordSink()
        self.feed(payload, exporter, received_ms, sink)
        return sink.result(0)

    def feed(self, payload: bytes, exporter: str, received_ms: int, sink: RecordSink) -> None:
        if len(payload) < HEADER.size:
            sink.error(exporter, "truncated", f"NetFlow v5 datagram of {len(payload)} bytes")
            return
        version, count, uptime, secs, nsecs, _seq, _etype, _eid, sampling = HEADER.unpack_from(
            payload
        )
        if version != 5:
            sink.error(exporter, "bad-version", f"version {version} in a NetFlow v5 decoder")
            return
        room = (len(payload) - HEADER.size) // RECORD_LENGTH
        if count > room:
            sink.error(
                exporter,
                "truncated",
                f"NetFlow v5 header counts {count} records, the datagram holds {room}",
            )
            count = room
        if count <= 0:
            return
        ctx = Context(
            exporter=exporter,
            export_ms=secs * 1000 + nsecs // 1_000_000,
            uptime_ms=uptime,
            init_ms=-1,
            rate=sampling_rate(sampling),
            samplers=None,
        )
        body = payload[HEADER.size : HEADER.size + count * RECORD_LENGTH]
        sink.add(LAYOUT, FlowSource.NETFLOW5, body, count, ctx)
