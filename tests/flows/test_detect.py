"""Which decoder a datagram goes to, from its first bytes."""

from __future__ import annotations

import struct

from hostwarden.flows.decode.detect import detect_protocol
from hostwarden.flows.pcap import read_udp_datagrams
from tests.flows.capture_support import FIXTURES


def test_real_exports_are_recognised() -> None:
    for name, want in {
        "pmacct-sflow.pcap": "sflow5",
        "pmacct-sflow-ipv6.pcap": "sflow5",
        "pmacct-nfprobe-v9.pcap": "netflow9",
        "pmacct-nfprobe-ipfix.pcap": "ipfix",
    }.items():
        datagrams, _ = read_udp_datagrams(FIXTURES / name)
        assert {detect_protocol(d.payload) for d in datagrams} == {want}, name


def test_versions_in_the_header_decide() -> None:
    assert detect_protocol(struct.pack("!HH", 5, 1) + bytes(70)) == "netflow5"
    assert detect_protocol(struct.pack("!HH", 9, 1)) == "netflow9"
    assert detect_protocol(struct.pack("!HH", 10, 16)) == "ipfix"
    assert detect_protocol(struct.pack("!II", 5, 2) + bytes(16)) == "sflow5"
    assert detect_protocol(struct.pack("!II", 5, 0)) == "sflow5"  # agent address unknown


def test_anything_else_is_none() -> None:
    assert detect_protocol(b"") is None
    assert detect_protocol(b"\x00") is None
    assert detect_protocol(struct.pack("!II", 5, 3)) is None  # no such agent address type
    assert detect_protocol(struct.pack("!II", 4, 1)) is None  # sFlow v4
    assert detect_protocol(struct.pack("!H", 7) + bytes(30)) is None  # NetFlow v7
    assert detect_protocol(b"GET / HTTP/1.1\r\n") is None
