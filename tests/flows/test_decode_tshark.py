"""Real exports decode to what tshark reads in them, field by field.

The fixtures come from real exporters (scripts/make-flow-fixtures.sh: softflowd NetFlow
v5, v9 and IPFIX in its time formats, sampled and biflow; scripts/make-sflow-fixtures.sh:
pmacct's nfprobe). tshark's dissection of the same capture is turned into the schema's
records with the schema's rules (sampling scaling, absolute times, ICMP type/code in the
destination port, biflow reverse records) and compared with every column the decoder
produced."""

from __future__ import annotations

import calendar
import re
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hostwarden.flows.decode import Decoder
from hostwarden.flows.pcap import read_udp_datagrams
from hostwarden.flows.schema import NAMES, FlowBatch, FlowSource
from hostwarden.registry.netaddr import texts_to_hilo
from tests.flows.capture_support import FIXTURES, Node, tshark_frames

CAPTURES = {
    "softflowd-v5.pcap": 2055,
    "softflowd-v5-sampled.pcap": 2055,
    "softflowd-v9.pcap": 2055,
    "softflowd-v9-sampled.pcap": 2055,
    "softflowd-ipfix.pcap": 4739,
    "softflowd-ipfix-sampled.pcap": 4739,
    "softflowd-ipfix-biflow.pcap": 4739,
    "softflowd-ipfix-sec.pcap": 4739,
    "softflowd-ipfix-ms-ipv6.pcap": 4739,
    "softflowd-ipfix-us.pcap": 4739,
    "softflowd-ipfix-ns.pcap": 4739,
    "pmacct-nfprobe-v9.pcap": 12055,
    "pmacct-nfprobe-ipfix.pcap": 14739,
}

_DATE = re.compile(r"(\w{3})\s+(\d+), (\d+) (\d+):(\d+):(\d+)(?:\.(\d+))? UTC")
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}


def _ms(text: str) -> int:
    """tshark's time text in ms: relative seconds ("2.500000000") or a UTC date."""
    if text[0].isdigit():
        return int(Decimal(text) * 1000)
    m = _DATE.fullmatch(text)
    assert m, text
    month, day, year, hh, mm, ss, fraction = m.groups()
    seconds = calendar.timegm((int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss)))
    return seconds * 1000 + int((fraction or "0").ljust(3, "0")[:3])


def _value(node: Node, key: str, default: Any = None, *, reverse: bool = False) -> Any:
    # A biflow record repeats a key for its reverse element, after the forward one.
    values = node.all(key)
    if reverse:
        return values[1] if len(values) > 1 else default
    return values[0] if values else default


def _with_full_counts(path: Path, tmp_path: Path) -> Path:
    """A copy of a NetFlow v9 capture with every header count at 65535.

    tshark stops reading a v9 datagram after the header's count of records, and softflowd
    1.1.0 under-counts when it samples (3 of the 9 records of its first datagram). The
    decoder does not use the count (the flowset lengths delimit a datagram), so tshark
    gets a copy where the count cannot stop it; the decoder reads the original."""
    data = bytearray(path.read_bytes())
    pos = 24
    for datagram in read_udp_datagrams(path)[0]:
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        frame = data[pos + 16 : pos + 16 + caplen]
        at = frame.rfind(datagram.payload)
        assert at >= 0
        if datagram.payload[:2] == b"\x00\x09":
            data[pos + 16 + at + 2 : pos + 16 + at + 4] = b"\xff\xff"
        pos += 16 + caplen
    copy = tmp_path / path.name
    copy.write_bytes(bytes(data))
    return copy


class _Expected:
    """tshark's records turned into schema rows, with the exporters' options applied."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, ...]] = []
        self.rates: dict[tuple[str, int, int], int] = {}
        self.init_ms: dict[tuple[str, int, int], int] = {}

    def frame(self, layers: Node) -> None:
        ip = layers.get("ip") or layers.get("ipv6")
        exporter = ip.get("ip.src") if layers.get("ip") else ip.get("ipv6.src")
        cflow = layers.get("cflow")
        version = int(cflow.get("cflow.version"))
        stamp = cflow.get("cflow.timestamp_tree")
        if version == 10:
            export_ms = int(stamp.get("cflow.exporttime")) * 1000
            domain = (exporter, 10, int(cflow.get("cflow.od_id")))
            uptime_ms = -1
        else:
            export_ms = int(stamp.get("cflow.unix_secs")) * 1000
            export_ms += int(stamp.get("cflow.unix_nsecs", "0")) // 1_000_000
            uptime_ms = _ms(cflow.get("cflow.sysuptime"))
            domain = (exporter, 9, int(cflow.get("cflow.source_id", "0")))
        header_rate = int(cflow.get("cflow.samplerate", "0")) or 1
        for name, node in cflow:
            if not isinstance(node, Node):
                continue
            if name.startswith("pdu "):  # NetFlow v5
                self.record(node, exporter, version, export_ms, uptime_ms, header_rate, -1)
            elif name.startswith(("FlowSet ", "Set ")):
                for flow_name, flow in node:
                    if flow_name.startswith("Flow ") and isinstance(flow, Node):
                        self.flow(flow, domain, exporter, version, export_ms, uptime_ms)

    def flow(
        self,
        flow: Node,
        domain: tuple[str, int, int],
        exporter: str,
        version: int,
        export_ms: int,
        uptime_ms: int,
    ) -> None:
        if flow.has("cflow.sys_init_time"):
            self.init_ms[domain] = _ms(flow.get("cflow.sys_init_time"))
        if flow.has("cflow.sampling_interval"):
            self.rates[domain] = int(flow.get("cflow.sampling_interval"))
        if flow.has("cflow.sampling_packet_interval"):
            interval = int(flow.get("cflow.sampling_packet_interval"))
            space = int(flow.get("cflow.sampling_packet_space", "0"))
            self.rates[domain] = (interval + space) // interval
        if not flow.has("cflow.srcaddr") and not flow.has("cflow.srcaddrv6"):
            return  # an options record
        rate = self.rates.get(domain, 1)
        init = self.init_ms.get(domain, -1)
        if len(flow.all("cflow.packets")) > 1:  # RFC 5103 biflow
            forward = self.record(
                flow, exporter, version, export_ms, uptime_ms, rate, init, add=False
            )
            backward = self.record(
                flow, exporter, version, export_ms, uptime_ms, rate, init, reverse=True, add=False
            )
            names = NAMES
            fwd_seen = forward[names.index("packets")] or forward[names.index("bytes")]
            back_seen = backward[names.index("packets")] or backward[names.index("bytes")]
            if fwd_seen or not back_seen:
                self.rows.append(forward)
            if back_seen:
                self.rows.append(backward)
            return
        self.record(flow, exporter, version, export_ms, uptime_ms, rate, init)

    def record(
        self,
        flow: Node,
        exporter: str,
        version: int,
        export_ms: int,
        uptime_ms: int,
        rate: int,
        init_ms: int,
        *,
        reverse: bool = False,
        add: bool = True,
    ) -> tuple[int, ...]:
        src = flow.get("cflow.srcaddr") or flow.get("cflow.srcaddrv6")
        dst = flow.get("cflow.dstaddr") or flow.get("cflow.dstaddrv6")
        src_port = int(flow.get("cflow.srcport", "0"))
        dst_port = int(flow.get("cflow.dstport", "0"))
        in_if = int(flow.get("cflow.inputint", "0"))
        out_if = int(flow.get("cflow.outputint", "0"))
        proto = int(flow.get("cflow.protocol"))
        icmp = _value(flow, "cflow.icmp_type_code_ipv4", reverse=reverse)
        if icmp is None and flow.has("cflow.icmp_ipv6_type"):
            icmp = str(
                int(_value(flow, "cflow.icmp_ipv6_type", reverse=reverse) or "0") << 8
                | int(_value(flow, "cflow.icmp_ipv6_code", reverse=reverse) or "0")
            )
        direction = int(flow.get("cflow.direction", "255"))
        if reverse:
            src, dst = dst, src
            src_port, dst_port = dst_port, src_port
            in_if, out_if = out_if, in_if
            direction = direction ^ 1 if direction <= 1 else direction
            if icmp is None:
                icmp = _value(flow, "cflow.icmp_type_code_ipv4")
        if icmp is not None and proto in (1, 58):
            src_port, dst_port = 0, int(icmp, 0)
        flags = int(_value(flow, "cflow.tcpflags", "0", reverse=reverse) or "0", 0)
        packets = int(_value(flow, "cflow.packets", "0", reverse=reverse) or "0") * rate
        octets = int(_value(flow, "cflow.octets", "0", reverse=reverse) or "0") * rate
        start, end = self.times(
            flow.get("cflow.timedelta_tree"), version, export_ms, uptime_ms, init_ms
        )
        (exporter_hi,), (exporter_lo,) = texts_to_hilo([exporter])
        (src_hi,), (src_lo,) = texts_to_hilo([src])
        (dst_hi,), (dst_lo,) = texts_to_hilo([dst])
        source = {5: FlowSource.NETFLOW5, 9: FlowSource.NETFLOW9, 10: FlowSource.IPFIX}[version]
        values = {
            "start": start,
            "end": end,
            "source": int(source),
            "exporter_hi": int(exporter_hi),
            "exporter_lo": int(exporter_lo),
            "src_hi": int(src_hi),
            "src_lo": int(src_lo),
            "dst_hi": int(dst_hi),
            "dst_lo": int(dst_lo),
            "src_port": src_port,
            "dst_port": dst_port,
            "proto": proto,
            "tcp_flags": flags,
            "packets": packets,
            "bytes": octets,
            "sampling": rate,
            "in_if": in_if,
            "out_if": out_if,
            "direction": direction,
            # Neither exporter sends post-NAT fields; attribution is filled at ingest.
            "nat_src_hi": 0,
            "nat_src_lo": 0,
            "nat_dst_hi": 0,
            "nat_dst_lo": 0,
            "nat_src_port": 0,
            "nat_dst_port": 0,
            "local_side": 0,
            "customer_id": -1,
            "instance_id": -1,
        }
        row = tuple(values[n] for n in NAMES)
        if add:
            self.rows.append(row)
        return row

    @staticmethod
    def times(
        tree: Node, version: int, export_ms: int, uptime_ms: int, init_ms: int
    ) -> tuple[int, int]:
        out = []
        for side in ("start", "end"):
            relative = tree.get(f"cflow.time{side}")
            absolute = tree.get(f"cflow.abstime{side}")
            if absolute is not None and _ms(absolute) != 0:
                out.append(_ms(absolute))
                continue
            # tshark shows a sysUptime of 0 as the date 1970-01-01: relative 0 all the same.
            value = _ms(relative) if relative is not None else 0
            if version == 10:
                out.append(init_ms + value)
            else:
                delta = (uptime_ms - value) & 0xFFFFFFFF
                delta = delta - (1 << 32) if delta >= 1 << 31 else delta
                out.append(export_ms - delta)
        return out[0], out[1]


def _decoded_rows(batch: FlowBatch) -> list[tuple[int, ...]]:
    columns = [batch[n].tolist() for n in NAMES]
    return [tuple(int(v) for v in row) for row in zip(*columns, strict=True)]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_every_field_matches_tshark(name: str, tmp_path: Path) -> None:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{name} is not generated yet (scripts/make-*-fixtures.sh)")
    port = CAPTURES[name]
    for_tshark = _with_full_counts(path, tmp_path)
    frames = tshark_frames(for_tshark, decode_as=[f"udp.port=={port},cflow"])
    expected = _Expected()
    for layers in frames:
        expected.frame(layers)

    datagrams, report = read_udp_datagrams(path)
    assert not report.truncated
    decoder = Decoder()
    batches = []
    for d in datagrams:
        result = decoder.decode(d.payload, d.src_ip, d.timestamp_ms)
        assert result.errors == [], result.errors
        batches.append(result.batch)
    assert result.buffered == 0
    decoded = _decoded_rows(FlowBatch.concat(batches))

    assert len(decoded) == len(expected.rows) > 0
    assert sorted(decoded) == sorted(expected.rows)


def test_sampled_exports_scale_counters_by_the_announced_rate() -> None:
    for name in (
        "softflowd-v5-sampled.pcap",
        "softflowd-v9-sampled.pcap",
        "softflowd-ipfix-sampled.pcap",
    ):
        datagrams, _ = read_udp_datagrams(FIXTURES / name)
        result = Decoder().decode_many((d.payload, d.src_ip, d.timestamp_ms) for d in datagrams)
        assert len(result.batch) > 0
        assert set(result.batch["sampling"].tolist()) == {10}, name
        assert (result.batch["packets"] % 10 == 0).all()


def test_decoding_in_bulk_equals_decoding_one_by_one() -> None:
    for name in CAPTURES:
        path = FIXTURES / name
        if not path.exists():
            continue
        datagrams, _ = read_udp_datagrams(path)
        one = Decoder()
        singles = FlowBatch.concat(
            [one.decode(d.payload, d.src_ip, d.timestamp_ms).batch for d in datagrams]
        )
        bulk = Decoder().decode_many((d.payload, d.src_ip, d.timestamp_ms) for d in datagrams)
        assert sorted(_decoded_rows(bulk.batch)) == sorted(_decoded_rows(singles)), name


def test_data_sent_before_its_template_is_decoded_when_the_template_comes() -> None:
    # softflowd sends its templates in the first datagram only: hand the datagrams over
    # last-first, so every data set waits for the template in the final one.
    datagrams, _ = read_udp_datagrams(FIXTURES / "softflowd-v9.pcap")
    in_order = Decoder().decode_many((d.payload, d.src_ip, d.timestamp_ms) for d in datagrams)
    decoder = Decoder()
    batches = []
    last = datagrams[0].timestamp_ms
    for i, d in enumerate(reversed(datagrams)):
        result = decoder.decode(d.payload, d.src_ip, last)
        assert result.errors == []
        batches.append(result.batch)
        if i < len(datagrams) - 1:
            assert result.buffered > 0 and len(result.batch) == 0
    assert result.buffered == 0
    assert sorted(_decoded_rows(FlowBatch.concat(batches))) == sorted(_decoded_rows(in_order.batch))
    assert decoder.templates.stats["data-sets-released"] > 0
