"""Raw packet headers (as sFlow samples them, as pcap files hold them) to flow fields.

Link layers are named by their pcap LINKTYPE number, the one vocabulary both callers
share: Ethernet II with 802.1Q / QinQ tags, Linux cooked capture v1 and v2, raw IP, BSD
loopback. Above that IPv4 (options skipped by IHL; later fragments carry no ports), IPv6
(a bounded walk over hop-by-hop, routing, fragment, destination-options, AH and mobility
headers), and TCP, UDP, SCTP, DCCP, UDP-Lite ports, TCP flags, and ICMP / ICMPv6 type and
code folded into the destination port as ``type << 8 | code`` (the NetFlow convention the
flow schema uses).

Two forms give the same answers (the tests hold them to it): ``parse_header`` reads one
header with precompiled ``struct`` formats, for the few samples of one datagram, and
``parse_headers`` reads many at once with numpy (every step an array operation over all
headers: tags, IHL, the extension-header walk), for batches such as a pcap import.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from hostwarden.registry.netaddr import V4_MAPPED_BASE

LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276
#: DLT_RAW as some systems wrote it into pcap files before LINKTYPE_RAW existed.
_RAW_ALIASES: Final = frozenset({LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6})

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
#: 802.1Q, 802.1ad (QinQ service tag) and the pre-standard 0x9100 QinQ tag.
VLAN_TPIDS: Final = (0x8100, 0x88A8, 0x9100)
MAX_VLAN_TAGS: Final = 3
#: IPv6 extension headers walked past; more than this many is treated as unreadable.
MAX_EXTENSION_HEADERS: Final = 6
_EXT_GENERIC: Final = (0, 43, 60, 135)  # length in 8-octet units, not counting the first
_EXT_FRAGMENT: Final = 44
_EXT_AH: Final = 51  # length in 4-octet units, minus 2
#: Protocols whose transport header starts with source and destination port.
PORT_PROTOCOLS: Final = (6, 17, 33, 132, 136)
ICMP_PROTOCOLS: Final = (1, 58)
PROTO_TCP: Final = 6

#: What ``ip_transport`` says about fragmentation.
NOT_FRAGMENT: Final = 0
FIRST_FRAGMENT: Final = 1  # carries the transport header
LATER_FRAGMENT: Final = 2  # carries none

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U32_LE = struct.Struct("<I")
_V4 = struct.Struct("!B5xHxB2xII")  # version/IHL, flags+offset, protocol, source, destination
_V6 = struct.Struct("!B5xBxQQQQ")  # version, next header, source hi/lo, destination hi/lo
_EXT = struct.Struct("!BB")  # next header, length
_FRAG6 = struct.Struct("!BxH")  # next header, offset (13 bits) + flags
_PORTS = struct.Struct("!HH")
_TCP = struct.Struct("!HH9xB")  # ports and flags
_ICMP = struct.Struct("!BB")
# The common frame in one read: Ethernet II, IPv4 without options, 14 transport bytes.
_ETHERNET_IPV4 = struct.Struct("!12xHB5xHxB2xIIHH9xB")
_COMMON_LENGTH: Final = _ETHERNET_IPV4.size

_BSD_AF_INET: Final = frozenset({2})
_BSD_AF_INET6: Final = frozenset({10, 24, 28, 30})  # Linux, NetBSD/OpenBSD, FreeBSD, macOS

#: src_hi, src_lo, dst_hi, dst_lo, src_port, dst_port, proto, tcp_flags
HeaderTuple = tuple[int, int, int, int, int, int, int, int]


def network_layer(buf: bytes, pos: int, end: int, linktype: int) -> tuple[int, int]:
    """IP version (4, 6; 0 when the frame carries no IP) and offset of the IP header of
    the frame at ``buf[pos:end]``."""
    if linktype == LINKTYPE_ETHERNET:
        if pos + 14 > end:
            return 0, 0
        ethertype = _U16.unpack_from(buf, pos + 12)[0]
        l3 = pos + 14
        tags = 0
        while ethertype in VLAN_TPIDS and tags < MAX_VLAN_TAGS:
            if l3 + 4 > end:
                return 0, 0
            ethertype = _U16.unpack_from(buf, l3 + 2)[0]
            l3 += 4
            tags += 1
    elif linktype in _RAW_ALIASES:
        if pos >= end:
            return 0, 0
        version = buf[pos] >> 4
        if version == 4 and linktype != LINKTYPE_IPV6:
            return 4, pos
        if version == 6 and linktype != LINKTYPE_IPV4:
            return 6, pos
        return 0, 0
    elif linktype == LINKTYPE_LINUX_SLL:
        if pos + 16 > end:
            return 0, 0
        ethertype = _U16.unpack_from(buf, pos + 14)[0]
        l3 = pos + 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if pos + 20 > end:
            return 0, 0
        ethertype = _U16.unpack_from(buf, pos)[0]
        l3 = pos + 20
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if pos + 4 > end:
            return 0, 0
        # NULL holds the family in the byte order of the capturing host, LOOP in network
        # order; families are small, so whichever order gives a small number is the one.
        family = _U32.unpack_from(buf, pos)[0]
        if family > 0xFFFF:
            family = _U32_LE.unpack_from(buf, pos)[0]
        if family in _BSD_AF_INET:
            return 4, pos + 4
        if family in _BSD_AF_INET6:
            return 6, pos + 4
        return 0, 0
    else:
        return 0, 0
    if ethertype == ETHERTYPE_IPV4:
        return 4, l3
    if ethertype == ETHERTYPE_IPV6:
        return 6, l3
    return 0, 0


def ip_transport(buf: bytes, l3: int, end: int, version: int) -> tuple[int, int, int] | None:
    """Upper-layer protocol, offset of its header and fragment state (``NOT_FRAGMENT``,
    ``FIRST_FRAGMENT``, ``LATER_FRAGMENT``) of the IP packet at ``buf[l3:end]``; None if
    its fixed header is cut short or is not of that version. The offset may lie past
    ``end`` (header cut inside options or extension headers): then there are no ports."""
    if version == 4:
        if l3 + 20 > end:
            return None
        ver_ihl, frag, proto, _, _ = _V4.unpack_from(buf, l3)
        ihl = (ver_ihl & 0x0F) * 4
        if ver_ihl >> 4 != 4 or ihl < 20:
            return None
        if frag & 0x1FFF:
            return proto, l3 + ihl, LATER_FRAGMENT
        return proto, l3 + ihl, FIRST_FRAGMENT if frag & 0x2000 else NOT_FRAGMENT
    if l3 + 40 > end or buf[l3] >> 4 != 6:
        return None
    proto = buf[l3 + 6]
    pos = l3 + 40
    fragment = NOT_FRAGMENT
    for _ in range(MAX_EXTENSION_HEADERS):
        if proto in _EXT_GENERIC or proto == _EXT_AH:
            if pos + 2 > end:
                return proto, end + 1, fragment
            next_header, length = _EXT.unpack_from(buf, pos)
            pos += (length + 2) * 4 if proto == _EXT_AH else (length + 1) * 8
            proto = next_header
        elif proto == _EXT_FRAGMENT:
            if pos + 8 > end:
                return proto, end + 1, fragment
            next_header, offset = _FRAG6.unpack_from(buf, pos)
            pos += 8
            proto = next_header
            if offset & 0xFFF8:
                return proto, pos, LATER_FRAGMENT
            if offset & 1:
                fragment = FIRST_FRAGMENT
        else:
            return proto, pos, fragment
    if proto in _EXT_GENERIC or proto in (_EXT_AH, _EXT_FRAGMENT):
        return proto, end + 1, fragment  # chain longer than the walk goes
    return proto, pos, fragment


def transport_ports(buf: bytes, l4: int, end: int, proto: int) -> tuple[int, int, int]:
    """Source port, destination port (ICMP: type << 8 | code) and TCP flags."""
    if proto == PROTO_TCP:
        if l4 + 14 <= end:
            sport, dport, flags = _TCP.unpack_from(buf, l4)
            return sport, dport, flags
        if l4 + 4 <= end:
            sport, dport = _PORTS.unpack_from(buf, l4)
            return sport, dport, 0
        return 0, 0, 0
    if proto in PORT_PROTOCOLS:
        if l4 + 4 <= end:
            sport, dport = _PORTS.unpack_from(buf, l4)
            return sport, dport, 0
        return 0, 0, 0
    if proto in ICMP_PROTOCOLS and l4 + 2 <= end:
        kind, code = _ICMP.unpack_from(buf, l4)
        return 0, kind << 8 | code, 0
    return 0, 0, 0


def parse_header(buf: bytes, pos: int, end: int, linktype: int) -> HeaderTuple | None:
    """Addresses (128-bit, as hi/lo words), ports, protocol and TCP flags of the frame at
    ``buf[pos:end]``; None when it holds no readable IP header."""
    if linktype == LINKTYPE_ETHERNET and end - pos >= _COMMON_LENGTH:
        ethertype, ver_ihl, frag, proto, src, dst, sport, dport, flags = _ETHERNET_IPV4.unpack_from(
            buf, pos
        )
        if ethertype == ETHERTYPE_IPV4 and ver_ihl == 0x45 and not frag & 0x3FFF:
            src |= V4_MAPPED_BASE
            dst |= V4_MAPPED_BASE
            if proto == PROTO_TCP:
                return 0, src, 0, dst, sport, dport, proto, flags
            if proto in PORT_PROTOCOLS:
                return 0, src, 0, dst, sport, dport, proto, 0
            if proto in ICMP_PROTOCOLS:  # type and code are the first 16 bits
                return 0, src, 0, dst, 0, sport, proto, 0
            return 0, src, 0, dst, 0, 0, proto, 0
    version, l3 = network_layer(buf, pos, end, linktype)
    if not version:
        return None
    found = ip_transport(buf, l3, end, version)
    if found is None:
        return None
    proto, l4, fragment = found
    if version == 4:
        src, dst = _V4.unpack_from(buf, l3)[3:]
        src_hi, src_lo, dst_hi, dst_lo = 0, V4_MAPPED_BASE | src, 0, V4_MAPPED_BASE | dst
    else:
        src_hi, src_lo, dst_hi, dst_lo = _V6.unpack_from(buf, l3)[2:]
    if fragment == LATER_FRAGMENT:
        return src_hi, src_lo, dst_hi, dst_lo, 0, 0, proto, 0
    sport, dport, flags = transport_ports(buf, l4, end, proto)
    return src_hi, src_lo, dst_hi, dst_lo, sport, dport, proto, flags


# --- many headers at once ---------------------------------------------------------------


@dataclass(frozen=True)
class HeaderColumns:
    """Fields of many headers; ``ok`` is False where a header held no readable IP header
    (the other columns are 0 there)."""

    ok: NDArray[np.bool_]
    src_hi: NDArray[np.uint64]
    src_lo: NDArray[np.uint64]
    dst_hi: NDArray[np.uint64]
    dst_lo: NDArray[np.uint64]
    src_port: NDArray[np.uint16]
    dst_port: NDArray[np.uint16]
    proto: NDArray[np.uint8]
    tcp_flags: NDArray[np.uint8]

    @classmethod
    def from_tuples(cls, parsed: list[HeaderTuple | None]) -> HeaderColumns:
        ok = np.array([p is not None for p in parsed], dtype=np.bool_)
        rows = np.array(
            [p if p is not None else (0,) * 8 for p in parsed], dtype=np.uint64
        ).reshape(len(parsed), 8)
        return cls(
            ok,
            rows[:, 0].copy(),
            rows[:, 1].copy(),
            rows[:, 2].copy(),
            rows[:, 3].copy(),
            rows[:, 4].astype(np.uint16),
            rows[:, 5].astype(np.uint16),
            rows[:, 6].astype(np.uint8),
            rows[:, 7].astype(np.uint8),
        )


I64 = NDArray[np.int64]


class _Reader:
    """Gathers bytes at per-row offsets; offsets past the buffer read its last byte (the
    callers mask such rows out by their own bounds checks)."""

    def __init__(self, buf: NDArray[np.uint8]) -> None:
        self.buf = buf

    def u8(self, pos: I64) -> I64:
        return np.take(self.buf, pos, mode="clip").astype(np.int64)

    def u16(self, pos: I64) -> I64:
        return (self.u8(pos) << 8) | self.u8(pos + 1)

    def block(self, pos: I64, width: int) -> NDArray[np.uint8]:
        index = pos[:, None] + np.arange(width, dtype=np.int64)
        return np.take(self.buf, index, mode="clip")


def parse_headers(
    buf: NDArray[np.uint8] | bytes,
    starts: NDArray[np.int64],
    ends: NDArray[np.int64],
    linktypes: NDArray[np.int64] | int,
) -> HeaderColumns:
    """``parse_header`` for every ``buf[starts[i]:ends[i]]`` at once, with array
    operations only; link types other than Ethernet and raw IP fall back to the scalar
    form row by row (they are rare in flow samples)."""
    data = np.frombuffer(buf, dtype=np.uint8) if isinstance(buf, bytes | bytearray) else buf
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    n = len(starts)
    links = np.broadcast_to(np.asarray(linktypes, dtype=np.int64), (n,))
    if n == 0 or len(data) == 0:
        return HeaderColumns.from_tuples([None] * n)
    r = _Reader(data)

    # Link layer → IP version and offset of the IP header.
    eth = links == LINKTYPE_ETHERNET
    ethertype = r.u16(starts + 12)
    l3 = starts + 14
    for _ in range(MAX_VLAN_TAGS):
        tagged = eth & np.isin(ethertype, VLAN_TPIDS)
        ethertype = np.where(tagged, r.u16(l3 + 2), ethertype)
        l3 = np.where(tagged, l3 + 4, l3)
    eth_ok = eth & (l3 <= ends)
    version = np.where(eth_ok & (ethertype == ETHERTYPE_IPV4), 4, 0)
    version = np.where(eth_ok & (ethertype == ETHERTYPE_IPV6), 6, version)

    raw = np.isin(links, tuple(_RAW_ALIASES)) & (starts < ends)
    nibble = r.u8(starts) >> 4
    raw4 = raw & (nibble == 4) & (links != LINKTYPE_IPV6)
    raw6 = raw & (nibble == 6) & (links != LINKTYPE_IPV4)
    version = np.where(raw4, 4, np.where(raw6, 6, version))
    l3 = np.where(raw, starts, l3)

    # IPv4: fixed header, IHL, fragments.
    first = r.u8(l3)
    ihl = (first & 0x0F) * 4
    v4 = (version == 4) & (l3 + 20 <= ends) & (first >> 4 == 4) & (ihl >= 20)
    frag4 = r.u16(l3 + 6)
    proto = np.where(v4, r.u8(l3 + 9), 0)
    l4 = np.where(v4, l3 + ihl, 0)
    fragment = np.where(
        frag4 & 0x1FFF, LATER_FRAGMENT, np.where(frag4 & 0x2000, FIRST_FRAGMENT, NOT_FRAGMENT)
    )
    fragment = np.where(v4, fragment, NOT_FRAGMENT)

    # IPv6: fixed header, then the extension-header walk, one step for all rows at once.
    v6 = (version == 6) & (l3 + 40 <= ends) & (first >> 4 == 6)
    proto = np.where(v6, r.u8(l3 + 6), proto)
    pos = l3 + 40
    walking = v6.copy()
    for _ in range(MAX_EXTENSION_HEADERS):
        generic = walking & (np.isin(proto, _EXT_GENERIC) | (proto == _EXT_AH))
        frag_hdr = walking & (proto == _EXT_FRAGMENT)
        if not (generic.any() or frag_hdr.any()):
            break
        done = walking & ~generic & ~frag_hdr
        l4 = np.where(done, pos, l4)
        walking &= ~done
        cut = (generic & (pos + 2 > ends)) | (frag_hdr & (pos + 8 > ends))
        l4 = np.where(cut, ends + 1, l4)
        walking &= ~cut
        generic &= ~cut
        frag_hdr &= ~cut
        next_header = r.u8(pos)
        length = r.u8(pos + 1)
        step = np.where(proto == _EXT_AH, (length + 2) * 4, (length + 1) * 8)
        offset = r.u16(pos + 2)
        later = frag_hdr & ((offset & 0xFFF8) != 0)
        fragment = np.where(frag_hdr & ~later & ((offset & 1) != 0), FIRST_FRAGMENT, fragment)
        fragment = np.where(later, LATER_FRAGMENT, fragment)
        proto = np.where(generic | frag_hdr, next_header, proto)
        pos = np.where(generic, pos + step, np.where(frag_hdr, pos + 8, pos))
        l4 = np.where(later, pos, l4)
        walking &= ~later
    if walking.any():
        still_ext = walking & (np.isin(proto, _EXT_GENERIC) | np.isin(proto, (_EXT_AH, 44)))
        l4 = np.where(still_ext, ends + 1, np.where(walking, pos, l4))

    ok = v4 | v6
    proto = np.where(ok, proto, 0)
    src_hi = np.zeros(n, dtype=np.uint64)
    dst_hi = np.zeros(n, dtype=np.uint64)
    src_lo = np.zeros(n, dtype=np.uint64)
    dst_lo = np.zeros(n, dtype=np.uint64)
    rows4 = np.flatnonzero(v4)
    if len(rows4):
        addr = r.block(l3[rows4] + 12, 8).view(">u4").astype(np.uint64)
        src_lo[rows4] = addr[:, 0] | np.uint64(V4_MAPPED_BASE)
        dst_lo[rows4] = addr[:, 1] | np.uint64(V4_MAPPED_BASE)
    rows6 = np.flatnonzero(v6)
    if len(rows6):
        addr = r.block(l3[rows6] + 8, 32).view(">u8").astype(np.uint64)
        src_hi[rows6], src_lo[rows6] = addr[:, 0], addr[:, 1]
        dst_hi[rows6], dst_lo[rows6] = addr[:, 2], addr[:, 3]

    # Transport.
    has_l4 = ok & (fragment != LATER_FRAGMENT)
    tcp_full = has_l4 & (proto == PROTO_TCP) & (l4 + 14 <= ends)
    ported = has_l4 & np.isin(proto, PORT_PROTOCOLS) & (l4 + 4 <= ends)
    icmp = has_l4 & np.isin(proto, ICMP_PROTOCOLS) & (l4 + 2 <= ends)
    src_port = np.where(ported, r.u16(l4), 0)
    dst_port = np.where(ported, r.u16(l4 + 2), np.where(icmp, r.u16(l4), 0))
    flags = np.where(tcp_full, r.u8(l4 + 13), 0)

    columns = HeaderColumns(
        ok,
        src_hi,
        src_lo,
        dst_hi,
        dst_lo,
        src_port.astype(np.uint16),
        dst_port.astype(np.uint16),
        proto.astype(np.uint8),
        flags.astype(np.uint8),
    )
    other = np.flatnonzero(~eth & ~np.isin(links, tuple(_RAW_ALIASES)))
    if len(other):
        _fill_scalar(columns, bytes(data), starts, ends, links, other)
    return columns


def _fill_scalar(
    columns: HeaderColumns,
    buf: bytes,
    starts: I64,
    ends: I64,
    links: NDArray[np.int64],
    rows: NDArray[np.intp],
) -> None:
    for row in rows.tolist():
        parsed = parse_header(buf, int(starts[row]), int(ends[row]), int(links[row]))
        if parsed is None:
            continue
        columns.ok[row] = True
        columns.src_hi[row], columns.src_lo[row] = parsed[0], parsed[1]
        columns.dst_hi[row], columns.dst_lo[row] = parsed[2], parsed[3]
        columns.src_port[row], columns.dst_port[row] = parsed[4], parsed[5]
        columns.proto[row], columns.tcp_flags[row] = parsed[6], parsed[7]
