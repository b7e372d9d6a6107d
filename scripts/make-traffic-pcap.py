#!/usr/bin/env python3
"""Writes a small, deterministic traffic capture for the flow exporters to meter.

Ethernet II frames carrying IPv4 and IPv6 with TCP (a full handshake, data and close),
UDP, ICMP and ICMPv6, an IPv4 header with options, an IPv6 header followed by extension
headers, an IPv4 fragment pair, and a part tagged with 802.1Q and one with QinQ
(802.1ad). Packet times span a few minutes so that exporters send their periodic
counters and expire flows on their timers. Standard library only (struct), so the
fixture scripts need nothing but Python and the exporters.

    python3 scripts/make-traffic-pcap.py [--raw-ip] [--rounds N] OUT.pcap

``--raw-ip`` writes the IP packets without their link layer (LINKTYPE_RAW), which makes
pmacct's sFlow probe send IPv4/IPv6 header samples instead of Ethernet ones.
"""

from __future__ import annotations

import socket
import struct
import sys

START = 1_700_000_000  # 2023-11-14T22:13:20Z, a fixed time so the pcap is reproducible

MAC_A = bytes.fromhex("020000000a01")
MAC_B = bytes.fromhex("020000000b02")


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def v4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ident: int = 1,
    ttl: int = 64,
    options: bytes = b"",
    flags_frag: int = 0x4000,
    total_payload: int | None = None,
) -> bytes:
    ihl = 5 + len(options) // 4
    length = ihl * 4 + (len(payload) if total_payload is None else total_payload)
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, length, ident, flags_frag, ttl, proto, 0, v4(src), v4(dst)
    )
    head += options
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    return head + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    return (
        struct.pack("!IHBB", 0x6000_0000, len(payload), next_header, hop_limit)
        + v6(src)
        + v6(dst)
        + payload
    )


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    # Checksums of the transport layer are left zero: the exporters and tshark (which
    # does not verify them by default) read headers, not checksums.
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0) + data


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def icmp(kind: int, code: int, rest: bytes) -> bytes:
    body = struct.pack("!BBH", kind, code, 0) + rest
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def ether(ethertype: int, payload: bytes, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    """An Ethernet II frame; ``tags`` are (TPID, TCI) pairs, outermost first."""
    head = MAC_B + MAC_A
    for tpid, tci in tags:
        head += struct.pack("!HH", tpid, tci)
    frame = head + struct.pack("!H", ethertype) + payload
    return frame + b"\0" * max(0, 60 - len(frame))  # pad to the Ethernet minimum


FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def tcp_session_v4(client: str, server: str, cport: int, sport: int, data: int) -> list[bytes]:
    c, s = 1000, 5000
    return [
        ipv4(client, server, 6, tcp(cport, sport, c, 0, SYN)),
        ipv4(server, client, 6, tcp(sport, cport, s, c + 1, SYN | ACK)),
        ipv4(client, server, 6, tcp(cport, sport, c + 1, s + 1, ACK)),
        ipv4(client, server, 6, tcp(cport, sport, c + 1, s + 1, PSH | ACK, b"G" * 120)),
        ipv4(server, client, 6, tcp(sport, cport, s + 1, c + 121, PSH | ACK, b"H" * data)),
        ipv4(client, server, 6, tcp(cport, sport, c + 121, s + 1 + data, FIN | ACK)),
        ipv4(server, client, 6, tcp(sport, cport, s + 1 + data, c + 122, FIN | ACK)),
        ipv4(client, server, 6, tcp(cport, sport, c + 122, s + 2 + data, ACK)),
    ]


def tcp_session_v6(client: str, server: str, cport: int, sport: int) -> list[bytes]:
    return [
        ipv6(client, server, 6, tcp(cport, sport, 1, 0, SYN)),
        ipv6(server, client, 6, tcp(sport, cport, 9, 2, SYN | ACK)),
        ipv6(client, server, 6, tcp(cport, sport, 2, 10, ACK)),
        ipv6(client, server, 6, tcp(cport, sport, 2, 10, PSH | ACK, b"q" * 300)),
        ipv6(server, client, 6, tcp(sport, cport, 10, 302, RST)),
    ]


def packets() -> list[bytes]:
    frames: list[bytes] = []
    ip4 = 0x0800
    ip6 = 0x86DD

    # IPv4 TCP: a web request and a larger answer.
    for p in tcp_session_v4("192.0.2.10", "203.0.113.5", 40001, 443, 900):
        frames.append(ether(ip4, p))
    # IPv4 UDP: DNS query and answer.
    frames.append(ether(ip4, ipv4("192.0.2.10", "198.51.100.53", 17, udp(53001, 53, b"q" * 30))))
    frames.append(ether(ip4, ipv4("198.51.100.53", "192.0.2.10", 17, udp(53, 53001, b"a" * 90))))
    # ICMP echo, and a port unreachable quoting the datagram that caused it.
    frames.append(
        ether(ip4, ipv4("192.0.2.10", "203.0.113.9", 1, icmp(8, 0, b"\0\1\0\1" + b"p" * 56)))
    )
    frames.append(
        ether(ip4, ipv4("203.0.113.9", "192.0.2.10", 1, icmp(0, 0, b"\0\1\0\1" + b"p" * 56)))
    )
    quoted = ipv4("192.0.2.10", "203.0.113.9", 17, udp(33434, 33435, b"t" * 12))[:28]
    frames.append(ether(ip4, ipv4("203.0.113.9", "192.0.2.10", 1, icmp(3, 3, b"\0" * 4 + quoted))))
    # IPv4 with options (record route, 8 bytes): the transport header starts at IHL*4.
    rr = bytes([7, 7, 4]) + b"\0" * 4 + b"\1"  # RR, length 7, pointer 4, one slot, EOL
    frames.append(
        ether(ip4, ipv4("192.0.2.77", "203.0.113.5", 17, udp(5000, 5001, b"o" * 40), options=rr))
    )
    # An IPv4 fragment pair: the first carries the UDP header, the second only data.
    whole = udp(6000, 6001, b"f" * 64)
    frames.append(
        ether(
            ip4,
            ipv4(
                "192.0.2.88",
                "203.0.113.5",
                17,
                whole[:40],
                ident=77,
                flags_frag=0x2000,
                total_payload=40,
            ),
        )
    )
    frames.append(
        ether(ip4, ipv4("192.0.2.88", "203.0.113.5", 17, whole[40:], ident=77, flags_frag=5))
    )

    # IPv6 TCP, UDP and ICMPv6 echo.
    for p in tcp_session_v6("2001:db8:1::10", "2001:db8:2::5", 50001, 22):
        frames.append(ether(ip6, p))
    frames.append(
        ether(ip6, ipv6("2001:db8:1::10", "2001:db8:2::53", 17, udp(53002, 53, b"q" * 40)))
    )
    frames.append(
        ether(
            ip6, ipv6("2001:db8:1::10", "2001:db8:2::9", 58, icmp(128, 0, b"\0\2\0\1" + b"p" * 32))
        )
    )
    frames.append(
        ether(
            ip6, ipv6("2001:db8:2::9", "2001:db8:1::10", 58, icmp(129, 0, b"\0\2\0\1" + b"p" * 32))
        )
    )
    # IPv6 with a hop-by-hop header (router alert) and a destination options header
    # before UDP: the transport header is found by walking the chain.
    hbh = bytes([60, 0, 5, 2, 0, 0, 1, 0])  # next: dest opts; router alert; PadN
    dest = bytes([17, 0, 1, 4, 0, 0, 0, 0])  # next: UDP; PadN of 4
    frames.append(
        ether(
            ip6, ipv6("2001:db8:1::20", "2001:db8:2::5", 0, hbh + dest + udp(7000, 7001, b"x" * 20))
        )
    )

    # 802.1Q, VLAN 100: IPv4 TCP and IPv6 UDP.
    vlan = ((0x8100, 100),)
    for p in tcp_session_v4("192.0.2.30", "203.0.113.7", 40100, 80, 400)[:4]:
        frames.append(ether(ip4, p, vlan))
    frames.append(
        ether(ip6, ipv6("2001:db8:1::30", "2001:db8:2::7", 17, udp(40200, 123, b"n" * 48)), vlan)
    )
    # QinQ: service tag 0x88a8 VLAN 200 outside, customer tag VLAN 300 inside.
    qinq = ((0x88A8, 200), (0x8100, (3 << 13) | 300))
    frames.append(
        ether(ip4, ipv4("192.0.2.40", "203.0.113.8", 17, udp(40300, 514, b"s" * 60)), qinq)
    )
    frames.append(ether(ip4, ipv4("192.0.2.40", "203.0.113.8", 6, tcp(40301, 25, 1, 0, SYN)), qinq))
    return frames


def without_link_layer(frame: bytes) -> bytes:
    """The IP packet of an Ethernet frame (tags skipped, padding dropped)."""
    pos = 12
    while struct.unpack_from("!H", frame, pos)[0] in (0x8100, 0x88A8):
        pos += 4
    packet = frame[pos + 2 :]
    if packet[0] >> 4 == 4:
        return packet[: struct.unpack_from("!H", packet, 2)[0]]
    return packet[: 40 + struct.unpack_from("!H", packet, 4)[0]]


def main() -> None:
    args = sys.argv[1:]
    raw_ip = "--raw-ip" in args
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 3
    out = args[-1]
    frames = packets()
    if raw_ip:
        frames = [without_link_layer(f) for f in frames]
    linktype = 101 if raw_ip else 1  # LINKTYPE_RAW or LINKTYPE_ETHERNET
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        # Rounds of the same traffic a minute apart, so that periodic counters and flow
        # timers fire in exporters that follow packet time.
        t = START * 1_000_000
        for round_ in range(rounds):
            for frame in frames:
                f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
                f.write(frame)
                t += 250_000
            t += 60_000_000 if round_ < rounds - 1 else 0


if __name__ == "__main__":
    main()
