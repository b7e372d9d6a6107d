"""Reading captures: the UDP datagrams tshark sees in every fixture, pcap and pcapng alike,
both byte orders, every link type, and files cut anywhere."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from hostwarden.errors import ValidationFailed
from hostwarden.flows.decode.detect import detect_protocol
from hostwarden.flows.pcap import PcapReader, UdpDatagram, read_udp_datagrams
from tests.flows.capture_support import (
    FIXTURES,
    frame_ms,
    hex_bytes,
    make_traffic,
    pcap_frames,
    tshark_frames,
)

CAPTURES = sorted(p.name for p in FIXTURES.glob("pmacct-*.pcap*") if "truncated" not in p.name)


def tshark_datagrams(path: Path) -> list[UdpDatagram]:
    out = []
    for layers in tshark_frames(path):
        udp = layers.get("udp")
        if udp is None:
            continue
        ip = layers.get("ip")
        if ip is not None:
            if ip.int("ip.frag_offset") or ip.get("ip.flags_tree").int("ip.flags.mf"):
                continue
            src, dst = ip.get("ip.src"), ip.get("ip.dst")
        else:
            ip6 = layers.get("ipv6")
            src, dst = ip6.get("ipv6.src"), ip6.get("ipv6.dst")
        payload = hex_bytes(udp.get("udp.payload", ""))
        out.append(
            UdpDatagram(
                frame_ms(layers),
                src,
                udp.int("udp.srcport"),
                dst,
                udp.int("udp.dstport"),
                payload,
            )
        )
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_every_fixture_yields_the_datagrams_tshark_sees(name: str) -> None:
    datagrams, report = read_udp_datagrams(FIXTURES / name)
    assert datagrams == tshark_datagrams(FIXTURES / name)
    assert not report.truncated
    assert report.datagrams == report.packets == len(datagrams) > 0
    assert report.offset == report.size
    assert report.format == ("pcapng" if name.endswith(".pcapng") else "pcap")
    want = "sflow5" if "sflow" in name else "netflow9" if "v9" in name else "ipfix"
    assert {detect_protocol(d.payload) for d in datagrams} == {want}


def test_pcap_and_pcapng_of_one_capture_give_identical_datagrams() -> None:
    pcap, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow.pcap")
    pcapng, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow.pcapng")
    assert pcap == pcapng


def test_a_pcapng_with_two_interfaces_keeps_each_ones_link_type_and_resolution() -> None:
    # mergecap wrote Ethernet/microsecond and Linux SLL2/nanosecond interfaces into one file.
    merged, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow-merged.pcapng")
    first, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow.pcap")
    second, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow-rate10.pcap")
    assert sorted(merged) == sorted(first + second)
    assert {d.dst_port for d in merged} == {16343, 16344}


# --- byte orders ------------------------------------------------------------------------


def pcap_big_endian(data: bytes) -> bytes:
    out = bytearray(struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data, 0)))
    pos = 24
    while pos < len(data):
        fields = struct.unpack_from("<IIII", data, pos)
        out += struct.pack(">IIII", *fields) + data[pos + 16 : pos + 16 + fields[2]]
        pos += 16 + fields[2]
    return bytes(out)


def pcapng_options_big_endian(data: bytes, pos: int, end: int) -> bytes:
    out = bytearray()
    while pos + 4 <= end:
        code, length = struct.unpack_from("<HH", data, pos)
        value = data[pos + 4 : pos + 4 + length]
        if code == 14 and length == 8:  # if_tsoffset
            value = struct.pack(">q", struct.unpack("<q", value)[0])
        out += struct.pack(">HH", code, length) + value + bytes(-length % 4)
        pos += 4 + length + (-length % 4)
        if code == 0:
            break
    return bytes(out)


def pcapng_big_endian(data: bytes) -> bytes:
    """The same blocks written big-endian (fixed fields swapped, packet bytes kept)."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        kind, length = struct.unpack_from("<II", data, pos)
        end = pos + length - 4
        if kind == 0x0A0D0D0A:
            fixed = struct.pack(">IHHq", *struct.unpack_from("<IHHq", data, pos + 8))
            body = fixed + pcapng_options_big_endian(data, pos + 24, end)
        elif kind == 1:
            fixed = struct.pack(">HHI", *struct.unpack_from("<HHI", data, pos + 8))
            body = fixed + pcapng_options_big_endian(data, pos + 16, end)
        elif kind == 6:
            fields = struct.unpack_from("<IIIII", data, pos + 8)
            packet = data[pos + 28 : pos + 28 + fields[3] + (-fields[3] % 4)]
            body = struct.pack(">IIIII", *fields) + packet
            body += pcapng_options_big_endian(data, pos + 28 + len(packet), end)
        else:
            pos += length
            continue  # statistics and name blocks: not needed for the datagrams
        out += struct.pack(">II", kind, len(body) + 12) + body + struct.pack(">I", len(body) + 12)
        pos += length
    return bytes(out)


def test_big_endian_files_read_the_same() -> None:
    pcap = (FIXTURES / "pmacct-sflow-rate10.pcap").read_bytes()  # nanosecond pcap
    pcapng = (FIXTURES / "pmacct-sflow-merged.pcapng").read_bytes()
    assert pcap_big_endian(pcap) != pcap
    assert list(PcapReader(pcap_big_endian(pcap))) == list(PcapReader(pcap))
    assert list(PcapReader(pcapng_big_endian(pcapng))) == list(PcapReader(pcapng))


def test_sections_of_both_byte_orders_follow_each_other() -> None:
    little = (FIXTURES / "pmacct-sflow.pcapng").read_bytes()
    big = pcapng_big_endian((FIXTURES / "pmacct-sflow-merged.pcapng").read_bytes())
    reader = PcapReader(little + big)
    got = list(reader)
    assert got == list(PcapReader(little)) + list(PcapReader(big))
    assert not reader.report.truncated


# --- hand-built pcapng blocks -----------------------------------------------------------


def block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def test_timestamp_resolution_offset_simple_and_obsolete_packet_blocks() -> None:
    frame = pcap_frames(FIXTURES / "pmacct-sflow-rawip.pcap")[1][0]
    idb = block(
        1,
        struct.pack("<HHI", 1, 0, 0)
        + option(9, bytes([0x80 | 10]))  # 2^-10 s units
        + option(14, struct.pack("<q", 100))  # plus 100 s
        + option(0, b""),
    )
    ts = 5 * 1024 + 512  # 5.5 s in 2^-10 units
    epb = block(
        6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame
    )
    spb = block(3, struct.pack("<I", len(frame)) + frame)
    opb = block(2, struct.pack("<HHIIII", 0, 0, 0, 2048, len(frame), len(frame)) + frame)
    custom = block(0x00000BAD, b"vendor data")
    reader = PcapReader(SHB + idb + custom + epb + spb + opb)
    got = list(reader)
    assert [d.timestamp_ms for d in got] == [105_500, 105_500, 102_000]
    assert len({d.payload for d in got}) == 1
    assert reader.report.packets == 3
    assert not reader.report.truncated

    stray = block(6, struct.pack("<IIIII", 3, 0, 0, len(frame), len(frame)) + frame)
    reader = PcapReader(SHB + idb + stray)
    assert list(reader) == []
    assert reader.report.skipped["unknown-interface"] == 1


# --- damage -----------------------------------------------------------------------------


def record_ends(data: bytes, pcapng: bool) -> list[int]:
    """Offsets where each record (pcap) or block (pcapng) ends."""
    ends, pos = ([], 0) if pcapng else ([24], 24)
    while pos < len(data):
        if pcapng:
            pos += struct.unpack_from("<I", data, pos + 4)[0]
        else:
            pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        ends.append(pos)
    return ends


@pytest.mark.parametrize("name", ["pmacct-sflow.pcap", "pmacct-sflow.pcapng"])
def test_a_file_cut_anywhere_stops_there_and_says_where(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    pcapng = name.endswith(".pcapng")
    ends = record_ends(data, pcapng)
    whole = list(PcapReader(data))
    data = data[: ends[4]]  # the header blocks and the first few packets
    for n in range(len(data) + 1):
        reader = PcapReader(data[:n])
        got = list(reader)
        assert got == whole[: len(got)], n
        boundary = n in ends
        assert reader.report.truncated is not boundary, n
        if not boundary:
            assert reader.report.truncated_at == max([0, *[e for e in ends if e <= n]]), n
            assert reader.report.detail


def test_the_truncated_fixture_keeps_every_whole_record() -> None:
    datagrams, report = read_udp_datagrams(FIXTURES / "pmacct-sflow-truncated.pcap")
    complete, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow.pcap")
    assert datagrams == complete[:-1]
    assert report.truncated
    ends = record_ends((FIXTURES / "pmacct-sflow.pcap").read_bytes(), pcapng=False)
    assert report.truncated_at == ends[-2]  # where the last record starts
    assert "cut at byte" in report.detail


def test_lengths_that_cannot_be_true_stop_the_reading() -> None:
    data = bytearray((FIXTURES / "pmacct-sflow.pcap").read_bytes())
    second = record_ends(bytes(data), pcapng=False)[1]
    data[second + 8 : second + 12] = struct.pack("<I", 0x7FFFFFF0)
    reader = PcapReader(bytes(data))
    assert len(list(reader)) == 1
    assert reader.report.truncated_at == second
    assert "claims" in reader.report.detail

    ng = bytearray((FIXTURES / "pmacct-sflow.pcapng").read_bytes())
    blocks = record_ends(bytes(ng), pcapng=True)
    ng[blocks[-2] - 4 : blocks[-2]] = struct.pack("<I", 12)  # trailing length disagrees
    reader = PcapReader(bytes(ng))
    list(reader)
    assert reader.report.truncated
    assert "lengths differ" in reader.report.detail


def test_what_is_not_a_capture_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a capture\n")
    with pytest.raises(ValidationFailed, match="not a pcap or pcapng capture") as caught:
        list(PcapReader(path))
    assert caught.value.hint
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    datagrams, report = read_udp_datagrams(empty)
    assert datagrams == []
    assert report.truncated and report.truncated_at == 0


# --- link types and skipped packets -----------------------------------------------------


def pcap_file(linktype: int, frames: list[bytes], order: str = "<") -> bytes:
    out = bytearray(struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
    for i, frame in enumerate(frames):
        out += struct.pack(order + "IIII", 1_700_000_000 + i, 1000 * i, len(frame), len(frame))
        out += frame
    return bytes(out)


def test_traffic_gives_its_udp_datagrams_and_counts_what_it_skips(tmp_path: Path) -> None:
    traffic = make_traffic(tmp_path)
    datagrams, report = read_udp_datagrams(traffic)
    assert datagrams == tshark_datagrams(traffic)
    rounds = 3
    assert report.skipped["fragment"] == 2 * rounds
    assert report.skipped["not-udp"] == 23 * rounds  # TCP, ICMP, ICMPv6
    assert len(datagrams) == 7 * rounds
    assert report.packets == len(datagrams) + sum(report.skipped.values())
    assert {(d.dst_ip, d.dst_port) for d in datagrams} >= {
        ("198.51.100.53", 53),
        ("2001:db8:2::5", 7001),  # behind IPv6 extension headers
        ("203.0.113.8", 514),  # QinQ
    }


def test_every_link_type_gives_the_same_datagrams(tmp_path: Path) -> None:
    _, packets = pcap_frames(make_traffic(tmp_path, "--raw-ip"))
    want = list(PcapReader(pcap_file(101, packets)))
    assert len(want) == 21

    def family(p: bytes, v4: int, v6: int, order: str) -> bytes:
        return struct.pack(order + "I", v4 if p[0] >> 4 == 4 else v6)

    def sll(p: bytes) -> bytes:
        return bytes(14) + (b"\x08\x00" if p[0] >> 4 == 4 else b"\x86\xdd")

    def sll2(p: bytes) -> bytes:
        return (b"\x08\x00" if p[0] >> 4 == 4 else b"\x86\xdd") + bytes(18)

    wrapped = {
        "NULL": (0, [family(p, 2, 24, "<") + p for p in packets]),
        "LOOP": (108, [family(p, 2, 30, ">") + p for p in packets]),
        "SLL": (113, [sll(p) + p for p in packets]),
        "SLL2": (276, [sll2(p) + p for p in packets]),
        "IPV4/IPV6 by version": (101, packets),
    }
    for name, (linktype, frames) in wrapped.items():
        assert list(PcapReader(pcap_file(linktype, frames))) == want, name
        assert list(PcapReader(pcap_file(linktype, frames, ">"))) == want, name
    reader = PcapReader(pcap_file(147, packets))
    assert list(reader) == []
    assert reader.report.skipped["not-ip"] == len(packets)


def test_a_datagram_cut_by_the_snap_length_is_skipped_as_short() -> None:
    (frame,) = pcap_frames(FIXTURES / "pmacct-sflow.pcap")[1][:1]
    reader = PcapReader(pcap_file(1, [frame[:200]]))
    assert list(reader) == []
    assert reader.report.skipped["short"] == 1
