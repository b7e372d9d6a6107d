"""Packet headers: what tshark reads from the same frames, and the numpy form agreeing with
the scalar one on every frame, every truncation of it and random corruptions."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest

from hostwarden.flows.decode import packet
from hostwarden.flows.decode.packet import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    HeaderTuple,
    parse_header,
    parse_headers,
)
from hostwarden.registry.netaddr import hilo_to_address
from tests.flows.capture_support import make_traffic, packet_fields, pcap_frames, tshark_frames


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_traffic(tmp_path_factory.mktemp("traffic"))


@pytest.fixture(scope="module")
def traffic_raw_ip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_traffic(tmp_path_factory.mktemp("traffic"), "--raw-ip")


def readable(parsed: HeaderTuple | None) -> tuple[str, str, int, int, int, int] | None:
    if parsed is None:
        return None
    src_hi, src_lo, dst_hi, dst_lo, sport, dport, proto, flags = parsed
    src, dst = hilo_to_address(src_hi, src_lo), hilo_to_address(dst_hi, dst_lo)
    return str(src), str(dst), sport, dport, proto, flags


def columns_as_tuples(buf: bytes, starts: list[int], ends: list[int], links: list[int]) -> list:
    cols = parse_headers(
        buf,
        np.array(starts, dtype=np.int64),
        np.array(ends, dtype=np.int64),
        np.array(links, dtype=np.int64),
    )
    out: list[HeaderTuple | None] = []
    for i in range(len(starts)):
        if not cols.ok[i]:
            out.append(None)
            continue
        out.append(
            tuple(  # type: ignore[arg-type]
                int(getattr(cols, name)[i])
                for name in (
                    "src_hi",
                    "src_lo",
                    "dst_hi",
                    "dst_lo",
                    "src_port",
                    "dst_port",
                    "proto",
                    "tcp_flags",
                )
            )
        )
    return out


def both_forms(frames: list[bytes], links: list[int]) -> tuple[list, list]:
    """Scalar and numpy answers for the same frames, laid end to end in one buffer."""
    buf = b"".join(frames)
    starts, ends, pos = [], [], 0
    for frame in frames:
        starts.append(pos)
        ends.append(pos + len(frame))
        pos += len(frame)
    scalar = [parse_header(buf, s, e, k) for s, e, k in zip(starts, ends, links, strict=True)]
    return scalar, columns_as_tuples(buf, starts, ends, links)


@pytest.mark.parametrize("variant", ["ethernet", "raw-ip"])
def test_every_frame_reads_as_tshark_reads_it(
    variant: str, traffic: Path, traffic_raw_ip: Path
) -> None:
    path = traffic if variant == "ethernet" else traffic_raw_ip
    linktype, frames = pcap_frames(path)
    expected = [packet_fields(layers) for layers in tshark_frames(path)]
    scalar, vector = both_forms(frames, [linktype] * len(frames))
    assert [readable(p) for p in scalar] == expected
    assert vector == scalar
    protocols = {e[4] for e in expected if e}
    assert protocols == {1, 6, 17, 58}


def test_tags_options_extension_headers_and_fragments_are_read(traffic: Path) -> None:
    _, frames = pcap_frames(traffic)
    got = [readable(parse_header(f, 0, len(f), LINKTYPE_ETHERNET)) for f in frames[:32]]
    # IPv4 with record-route option: UDP read after IHL*4 bytes.
    assert got[13] == ("192.0.2.77", "203.0.113.5", 5000, 5001, 17, 0)
    # The first fragment carries the ports, the later one none.
    assert got[14] == ("192.0.2.88", "203.0.113.5", 6000, 6001, 17, 0)
    assert got[15] == ("192.0.2.88", "203.0.113.5", 0, 0, 17, 0)
    # ICMP port unreachable: type 3, code 3; ICMPv6 echo request 128.
    assert got[12] == ("203.0.113.9", "192.0.2.10", 0, 3 << 8 | 3, 1, 0)
    assert got[22] == ("2001:db8:1::10", "2001:db8:2::9", 0, 128 << 8, 58, 0)
    # IPv6 hop-by-hop and destination options before UDP.
    assert got[24] == ("2001:db8:1::20", "2001:db8:2::5", 7000, 7001, 17, 0)
    # 802.1Q and QinQ.
    assert got[25] == ("192.0.2.30", "203.0.113.7", 40100, 80, 6, 0x02)
    assert got[30] == ("192.0.2.40", "203.0.113.8", 40300, 514, 17, 0)


def test_every_truncation_gives_the_same_answer_in_both_forms(traffic: Path) -> None:
    _, frames = pcap_frames(traffic)
    cuts = [frame[:n] for frame in frames[:32] for n in range(len(frame) + 1)]
    scalar, vector = both_forms(cuts, [LINKTYPE_ETHERNET] * len(cuts))
    assert vector == scalar
    # A frame cut inside its IP header has no record; cut after it, it keeps its addresses.
    assert scalar[:14] == [None] * 14


def test_random_corruption_gives_the_same_answer_in_both_forms(
    traffic: Path, traffic_raw_ip: Path
) -> None:
    rng = random.Random(5)
    frames, links = [], []
    for path in (traffic, traffic_raw_ip):
        linktype, originals = pcap_frames(path)
        for _ in range(3000):
            frame = bytearray(rng.choice(originals))
            for _ in range(rng.randint(1, 6)):
                frame[rng.randrange(min(len(frame), 80))] = rng.randrange(256)
            frames.append(bytes(frame[: rng.randint(0, len(frame))]))
            links.append(linktype)
    scalar, vector = both_forms(frames, links)
    assert vector == scalar


def test_other_link_layers_carry_the_same_packet(traffic_raw_ip: Path) -> None:
    _, packets = pcap_frames(traffic_raw_ip)
    ip = packets[0]  # IPv4 TCP SYN
    ip6 = packets[16]  # IPv6 TCP SYN
    want4 = ("192.0.2.10", "203.0.113.5", 40001, 443, 6, 0x02)
    want6 = ("2001:db8:1::10", "2001:db8:2::5", 50001, 22, 6, 0x02)
    sll = bytes(14) + b"\x08\x00"
    sll2 = b"\x86\xdd" + bytes(18)
    cases = [
        (LINKTYPE_LINUX_SLL, sll + ip, want4),
        (LINKTYPE_LINUX_SLL2, sll2 + ip6, want6),
        (LINKTYPE_NULL, struct.pack("<I", 2) + ip, want4),  # little-endian host
        (LINKTYPE_NULL, struct.pack(">I", 30) + ip6, want6),  # big-endian macOS
        (LINKTYPE_LOOP, struct.pack(">I", 24) + ip6, want6),
        (LINKTYPE_RAW, ip, want4),
        (12, ip6, want6),  # DLT_RAW as OpenBSD numbers it
        (LINKTYPE_IPV4, ip, want4),
        (LINKTYPE_IPV4, ip6, None),
        (LINKTYPE_IPV6, ip6, want6),
        (LINKTYPE_NULL, struct.pack("<I", 7) + ip, None),  # not an IP family
        (147, ip, None),  # a user link type: unknown
    ]
    for linktype, frame, want in cases:
        assert readable(parse_header(frame, 0, len(frame), linktype)) == want, linktype
    scalar, vector = both_forms([c[1] for c in cases], [c[0] for c in cases])
    assert vector == scalar


def ipv6_with_extensions(kinds: list[int], final: int, transport: bytes) -> bytes:
    chain = b""
    for i, kind in enumerate(kinds):
        following = kinds[i + 1] if i + 1 < len(kinds) else final
        if kind == 44:
            chain += struct.pack("!BBHI", following, 0, 0, 1)
        elif kind == 51:
            chain += struct.pack("!BBH", following, 1, 0) + bytes(8)  # AH: (1 + 2) * 4 bytes
        else:
            chain += struct.pack("!BB", following, 0) + bytes(6)
    body = chain + transport
    first = kinds[0] if kinds else final
    return (
        struct.pack("!IHBB", 0x60000000, len(body), first, 64)
        + bytes(15)
        + b"\x01"
        + bytes(15)
        + b"\x02"
        + body
    )


def test_the_ipv6_extension_walk_is_bounded_and_knows_fragments() -> None:
    udp = struct.pack("!HHHH", 1000, 2000, 8, 0)
    cases = {
        "routing, AH, then UDP": (ipv6_with_extensions([43, 51], 17, udp), (1000, 2000, 17)),
        "first fragment keeps ports": (ipv6_with_extensions([44], 17, udp), (1000, 2000, 17)),
        "too many headers": (
            ipv6_with_extensions([60] * (packet.MAX_EXTENSION_HEADERS + 1), 17, udp),
            (0, 0, 60),
        ),
        "no next header": (ipv6_with_extensions([], 59, udp), (0, 0, 59)),
    }
    later = bytearray(ipv6_with_extensions([44], 17, udp))
    later[40 + 2 : 40 + 4] = struct.pack("!H", 8 << 3)  # offset 8: a later fragment
    cases["later fragment has none"] = (bytes(later), (0, 0, 17))
    for name, (frame, (sport, dport, proto)) in cases.items():
        parsed = parse_header(frame, 0, len(frame), LINKTYPE_IPV6)
        assert parsed is not None, name
        assert parsed[4:7] == (sport, dport, proto), name
    frames = [c[0] for c in cases.values()]
    frames += [f[:n] for f in frames for n in range(len(f))]
    scalar, vector = both_forms(frames, [LINKTYPE_IPV6] * len(frames))
    assert vector == scalar


def test_an_empty_batch_and_an_empty_buffer_are_fine() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert len(parse_headers(b"", empty, empty, LINKTYPE_ETHERNET).ok) == 0
    one = np.zeros(1, dtype=np.int64)
    assert not parse_headers(b"", one, one, LINKTYPE_ETHERNET).ok.any()
