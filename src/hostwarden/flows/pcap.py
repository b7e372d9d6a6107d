"""UDP datagrams out of pcap and pcapng captures, for importing recorded flow exports.

pcap: both byte orders, micro- and nanosecond timestamps. pcapng: section header,
interface description (link type, ``if_tsresol``, ``if_tsoffset``), enhanced, simple and
obsolete packet blocks, several interfaces and several sections, each in its own byte
order; other blocks are skipped by their length. Link types: Ethernet (802.1Q/QinQ
tags), Linux cooked v1/v2, raw IP, BSD loopback (NULL/LOOP), as ``decode.packet`` reads
them. IPv4 and IPv6 (extension headers walked); fragments are skipped and counted, not
reassembled: export datagrams fit one packet.

Nothing in a file makes the reader raise once its magic number is known: a record cut
short or a length that cannot be true ends the reading, and ``PcapReport`` says so with
the byte offset of that record. The file is memory-mapped and read with precompiled
``struct`` formats; each payload is copied out as ``bytes``.

A maintained library was considered first: dpkt's pcapng reader keeps the first
interface's link type and timestamp resolution for every packet and neither reader says
where a file was cut; python-pcapng builds an object per block and field and is several
times slower; scapy is slower still. None reads the link layers and IP to the UDP payload
the way the flow decoders need, so that code (``decode.packet``) is shared anyway.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple

from hostwarden.errors import ValidationFailed
from hostwarden.flows.decode.packet import (
    ETHERTYPE_IPV4,
    LINKTYPE_ETHERNET,
    ip_transport,
    network_layer,
)

#: A record longer than this is taken as a sign of corruption, not a packet.
MAX_RECORD_BYTES: Final = 256 * 1024

_PCAP_MAGIC_US: Final = 0xA1B2C3D4
_PCAP_MAGIC_NS: Final = 0xA1B23C4D
_PCAPNG_SHB: Final = 0x0A0D0D0A
_PCAPNG_BOM: Final = 0x1A2B3C4D
_IDB: Final = 1
_OPB: Final = 2
_SPB: Final = 3
_EPB: Final = 6
_OPT_TSRESOL: Final = 9
_OPT_TSOFFSET: Final = 14
_UDP = struct.Struct("!HHH")
_U32_LE = struct.Struct("<I")
# The common packet in one read: Ethernet II, IPv4 without options, UDP header.
_ETHERNET_IPV4_UDP = struct.Struct("!12xHB5xHxB2x4s4sHHH")
_ADDRESS_CACHE_LIMIT: Final = 65536


class UdpDatagram(NamedTuple):
    timestamp_ms: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    payload: bytes


@dataclass
class PcapReport:
    """What reading a capture met; filled while iterating, complete when it ends."""

    format: str = ""  # "pcap" or "pcapng"
    size: int = 0  # bytes in the file
    offset: int = 0  # bytes read so far (for progress)
    packets: int = 0  # packet records read
    datagrams: int = 0  # UDP datagrams yielded
    #: Packets not yielded, by reason: ``fragment``, ``not-ip``, ``bad-ip``, ``not-udp``,
    #: ``short`` (cut by the snap length), ``link-type``, ``unknown-interface``.
    skipped: Counter[str] = field(default_factory=Counter)
    #: The file ends inside a record, or a record's length cannot be true.
    truncated: bool = False
    truncated_at: int | None = None  # byte offset of the record that could not be read
    detail: str = ""

    def stop(self, offset: int, detail: str) -> None:
        self.truncated = True
        self.truncated_at = offset
        self.detail = detail


@dataclass
class _Interface:
    linktype: int
    snaplen: int
    # timestamp units → ms: ms = ts * multiplier // divisor, or (ts * 1000) >> shift
    multiplier: int = 1
    divisor: int = 1000
    shift: int = -1
    offset_ms: int = 0

    def ms(self, ts: int) -> int:
        if self.shift >= 0:
            return ((ts * 1000) >> self.shift) + self.offset_ms
        return ts * self.multiplier // self.divisor + self.offset_ms


class PcapReader:
    """Iterate over the UDP datagrams of a pcap or pcapng file (or its bytes).

    ``report`` holds the counts, and whether and where the file was cut short. Iterate
    once; the file is closed when the iteration ends or the iterator is dropped."""

    def __init__(self, source: str | os.PathLike[str] | bytes) -> None:
        self.source = source
        self.report = PcapReport()
        self._names: dict[bytes, str] = {}

    def __iter__(self) -> Iterator[UdpDatagram]:
        if isinstance(self.source, bytes | bytearray):
            yield from self._read(bytes(self.source))
            return
        path = Path(self.source)
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                yield from self._read(b"")
                return
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                yield from self._read(mapped)

    def _read(self, buf: bytes | mmap.mmap) -> Iterator[UdpDatagram]:
        size = len(buf)
        self.report.size = size
        if size < 4:
            self.report.format = "pcap"
            self.report.stop(0, f"file of {size} bytes has no header")
            return
        magic_le = struct.unpack_from("<I", buf, 0)[0]
        if magic_le == _PCAPNG_SHB:
            self.report.format = "pcapng"
            yield from self._pcapng(buf)
        elif magic_le in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            yield from self._pcap(buf, "<")
        elif struct.unpack_from(">I", buf, 0)[0] in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            yield from self._pcap(buf, ">")
        else:
            raise ValidationFailed(
                f"the file starts with 0x{bytes(buf[:4]).hex()}: not a pcap or pcapng capture.",
                hint="Give a capture written by tcpdump, tshark or dumpcap (pcap or pcapng); "
                "gzip-compressed captures must be unpacked first.",
            )

    # --- pcap ------------------------------------------------------------------------

    def _pcap(self, buf: bytes | mmap.mmap, order: str) -> Iterator[UdpDatagram]:
        report = self.report
        report.format = "pcap"
        size = len(buf)
        if size < 24:
            report.stop(0, f"pcap file header cut at {size} bytes")
            return
        magic, _, _, _, _, snaplen, network = struct.unpack_from(order + "IHHiIII", buf, 0)
        nano = magic == _PCAP_MAGIC_NS
        linktype = network & 0xFFFF
        record = struct.Struct(order + "IIII")
        handle = self._handle
        pos = 24
        while pos < size:
            if pos + 16 > size:
                report.stop(pos, f"record header cut at byte {size}")
                return
            seconds, fraction, caplen, _ = record.unpack_from(buf, pos)
            data = pos + 16
            end = data + caplen
            if caplen > MAX_RECORD_BYTES:
                report.stop(pos, f"record claims {caplen} bytes (snap length {snaplen})")
                return
            if end > size:
                report.stop(pos, f"record of {caplen} bytes cut at byte {size}")
                return
            report.packets += 1
            report.offset = pos = end
            ms = seconds * 1000 + (fraction // 1_000_000 if nano else fraction // 1000)
            datagram = handle(buf, data, end, linktype, ms)
            if datagram is not None:
                yield datagram

    # --- pcapng ----------------------------------------------------------------------

    def _pcapng(self, buf: bytes | mmap.mmap) -> Iterator[UdpDatagram]:
        report = self.report
        size = len(buf)
        pos = 0
        order = "<"
        formats = _PcapngFormats(order)
        interfaces: list[_Interface] = []
        handle = self._handle
        last_ms = 0
        while pos < size:
            if pos + 12 > size:
                report.stop(pos, f"block header cut at byte {size}")
                return
            if _U32_LE.unpack_from(buf, pos)[0] == _PCAPNG_SHB:
                bom = buf[pos + 8 : pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    report.stop(pos, "section header with an unknown byte-order magic")
                    return
                interfaces = []
                if formats.order != order:
                    formats = _PcapngFormats(order)
            kind, length = formats.block.unpack_from(buf, pos)
            if length < 12 or length & 3:
                report.stop(pos, f"block type {kind} claims {length} bytes")
                return
            if pos + length > size:
                report.stop(pos, f"block of {length} bytes cut at byte {size}")
                return
            if formats.u32.unpack_from(buf, pos + length - 4)[0] != length:
                report.stop(pos, f"block type {kind}: leading and trailing lengths differ")
                return
            block_end = pos + length - 4
            body = pos + 8
            if kind in (_EPB, _OPB):
                if kind == _EPB:
                    if body + 20 > block_end:
                        report.stop(pos, "enhanced packet block too short")
                        return
                    iface, high, low, caplen, _ = formats.epb.unpack_from(buf, body)
                else:
                    if body + 20 > block_end:
                        report.stop(pos, "packet block too short")
                        return
                    iface, _, high, low, caplen, _ = struct.unpack_from(order + "HHIIII", buf, body)
                data = body + 20
                end = data + caplen
                if end > block_end:
                    report.stop(pos, f"packet of {caplen} bytes overruns its block")
                    return
                report.packets += 1
                report.offset = pos + length
                if iface >= len(interfaces):
                    report.skipped["unknown-interface"] += 1
                else:
                    interface = interfaces[iface]
                    last_ms = interface.ms(high << 32 | low)
                    datagram = handle(buf, data, end, interface.linktype, last_ms)
                    if datagram is not None:
                        yield datagram
            elif kind == _SPB:
                report.packets += 1
                report.offset = pos + length
                if not interfaces:
                    report.skipped["unknown-interface"] += 1
                else:
                    original = formats.u32.unpack_from(buf, body)[0]
                    snap = interfaces[0].snaplen or original
                    end = body + 4 + min(original, snap, block_end - body - 4)
                    # No timestamp in a simple packet block: the last one seen stands in.
                    datagram = handle(buf, body + 4, end, interfaces[0].linktype, last_ms)
                    if datagram is not None:
                        yield datagram
            elif kind == _IDB:
                if body + 8 > block_end:
                    report.stop(pos, "interface description block too short")
                    return
                linktype, _, snaplen = struct.unpack_from(order + "HHI", buf, body)
                interface = _Interface(linktype, snaplen)
                _interface_options(interface, buf, body + 8, block_end, order)
                interfaces.append(interface)
            pos += length
            report.offset = pos

    # --- one packet ------------------------------------------------------------------

    def _handle(
        self, buf: bytes | mmap.mmap, pos: int, end: int, linktype: int, ms: int
    ) -> UdpDatagram | None:
        skipped = self.report.skipped
        data: bytes = buf  # type: ignore[assignment]  # mmap reads like bytes here
        if linktype == LINKTYPE_ETHERNET and end - pos >= _ETHERNET_IPV4_UDP.size:
            ethertype, ver_ihl, frag, proto, src, dst, sport, dport, length = (
                _ETHERNET_IPV4_UDP.unpack_from(data, pos)
            )
            if ethertype == ETHERTYPE_IPV4 and ver_ihl == 0x45:
                l4 = pos + 34
                if frag & 0x3FFF:
                    skipped["fragment"] += 1
                elif proto != 17:
                    skipped["not-udp"] += 1
                elif length < 8 or l4 + length > end:
                    skipped["short"] += 1
                else:
                    self.report.datagrams += 1
                    name = self._name
                    payload = data[l4 + 8 : l4 + length]
                    return UdpDatagram(ms, name(src), sport, name(dst), dport, payload)
                return None
        version, l3 = network_layer(data, pos, end, linktype)
        if not version:
            skipped["not-ip"] += 1
            return None
        found = ip_transport(data, l3, end, version)
        if found is None:
            skipped["bad-ip"] += 1
            return None
        proto, l4, fragment = found
        if fragment:
            skipped["fragment"] += 1
            return None
        if proto != 17:
            skipped["not-udp"] += 1
            return None
        if l4 + 8 > end:
            skipped["short"] += 1
            return None
        sport, dport, length = _UDP.unpack_from(data, l4)
        if length < 8 or l4 + length > end:
            skipped["short"] += 1
            return None
        if version == 4:
            src, dst = self._name(data[l3 + 12 : l3 + 16]), self._name(data[l3 + 16 : l3 + 20])
        else:
            src, dst = self._name(data[l3 + 8 : l3 + 24]), self._name(data[l3 + 24 : l3 + 40])
        self.report.datagrams += 1
        return UdpDatagram(ms, src, sport, dst, dport, data[l4 + 8 : l4 + length])

    def _name(self, packed: bytes) -> str:
        name = self._names.get(packed)
        if name is None:
            family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
            name = socket.inet_ntop(family, packed)
            if len(self._names) >= _ADDRESS_CACHE_LIMIT:
                self._names.clear()
            self._names[packed] = name
        return name


class _PcapngFormats:
    """The fixed block fields of one byte order, compiled once per section."""

    def __init__(self, order: str) -> None:
        self.order = order
        self.block = struct.Struct(order + "II")
        self.u32 = struct.Struct(order + "I")
        self.epb = struct.Struct(order + "IIIII")


def _interface_options(
    interface: _Interface, buf: bytes | mmap.mmap, pos: int, end: int, order: str
) -> None:
    """``if_tsresol`` and ``if_tsoffset`` of an interface description block."""
    resolution = 6
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, pos)
        value = pos + 4
        if code == 0 or value + length > end:
            break
        if code == _OPT_TSRESOL and length >= 1:
            resolution = buf[value]
        elif code == _OPT_TSOFFSET and length >= 8:
            interface.offset_ms = struct.unpack_from(order + "q", buf, value)[0] * 1000
        pos = value + (length + 3) // 4 * 4
    if resolution & 0x80:
        interface.shift = resolution & 0x7F
    else:
        exponent = resolution
        if exponent >= 3:
            interface.multiplier, interface.divisor = 1, 10 ** (exponent - 3)
        else:
            interface.multiplier, interface.divisor = 10 ** (3 - exponent), 1


def read_udp_datagrams(path: str | os.PathLike[str]) -> tuple[list[UdpDatagram], PcapReport]:
    """Every UDP datagram of a capture, and the report (for small files and tests)."""
    reader = PcapReader(path)
    datagrams = list(reader)
    return datagrams, reader.report
