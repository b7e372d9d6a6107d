"""sFlow v5: every datagram pmacct exported, decoded and held field by field against
tshark's reading of the same capture; then hand-built datagrams for what pmacct does not
send and for every kind of damage."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from hostwarden.flows.decode.base import DecodeResult, InterfaceCounters
from hostwarden.flows.decode.sflow import (
    BATCH_MIN_SAMPLES,
    SflowDecoder,
    read_datagram_header,
)
from hostwarden.flows.pcap import UdpDatagram, read_udp_datagrams
from hostwarden.flows.schema import DIRECTION_UNKNOWN, FlowBatch, FlowSource
from hostwarden.registry.netaddr import hilo_to_address, text_to_int
from tests.flows.capture_support import (
    FIXTURES,
    Node,
    frame_ms,
    packet_fields,
    tshark_frames,
)

SFLOW_FIXTURES = {
    "pmacct-sflow.pcap": 16343,
    "pmacct-sflow-rate10.pcap": 16344,
    "pmacct-sflow-rawip.pcap": 16345,
    "pmacct-sflow-ipv6.pcap": 16346,
}
IF_UNKNOWN = 0x3FFFFFFF


def decode_all(datagrams: list[UdpDatagram]) -> list[DecodeResult]:
    decoder = SflowDecoder()
    return [decoder.decode(d.payload, d.src_ip, d.timestamp_ms) for d in datagrams]


def rows(batch: FlowBatch) -> list[dict[str, object]]:
    out = []
    for i in range(len(batch)):
        row = {name: int(batch[name][i]) for name in batch.columns}
        row["src"] = str(hilo_to_address(row.pop("src_hi"), row.pop("src_lo")))  # type: ignore[arg-type]
        row["dst"] = str(hilo_to_address(row.pop("dst_hi"), row.pop("dst_lo")))  # type: ignore[arg-type]
        out.append(row)
    return out


def interface(value: int) -> int:
    return 0 if value == IF_UNKNOWN else value


def expected_records(layers: Node) -> list[dict[str, object]]:
    """What the flow schema should hold for each flow sample tshark decoded in a frame."""
    sflow = layers.get("sflow")
    exporter = (layers.get("ip") or layers.get("ipv6")).get(
        "ip.src" if layers.has("ip") else "ipv6.src"
    )
    out: list[dict[str, object]] = []
    for _, sample in sflow.children("Flow sample"):
        rate = sample.int("sflow.flow_sample.sampling_rate")
        raw = sample.get("Raw packet header")
        fields = packet_fields(raw.get("sflow_245.header_tree"))
        if fields is None:
            continue
        src, dst, sport, dport, proto, flags = fields
        out_tree = sample.get("sflow.flow_sample.output_interface_tree")
        out_if = out_tree.int("sflow.flow_sample.output_interface_value")
        if out_tree.int("sflow.flow_sample.output_interface_format"):
            out_if = 0
        out.append(
            {
                "start": frame_ms(layers),
                "end": frame_ms(layers),
                "source": FlowSource.SFLOW5,
                "exporter": exporter,
                "src": src,
                "dst": dst,
                "src_port": sport,
                "dst_port": dport,
                "proto": proto,
                "tcp_flags": flags,
                "packets": rate,
                "bytes": raw.int("sflow_245.header.frame_length") * rate,
                "sampling": rate,
                "in_if": interface(sample.int("sflow.flow_sample.input_interface")),
                "out_if": interface(out_if),
                "direction": DIRECTION_UNKNOWN,
            }
        )
    return out


def expected_counters(layers: Node, exporter: str) -> list[InterfaceCounters]:
    out = []
    for _, sample in layers.get("sflow").children("Counters sample"):
        source = sample.int("sflow.counters_sample.source_id_type") << 24 | sample.int(
            "sflow.counters_sample.source_id_index"
        )
        generic = sample.get("Generic interface counters")
        c = generic.int
        out.append(
            InterfaceCounters(
                exporter=exporter,
                received_ms=frame_ms(layers),
                source_id=source,
                if_index=c("sflow_245.ifindex"),
                if_speed=c("sflow_245.ifspeed"),
                in_octets=c("sflow_245.ifinoct"),
                in_packets=c("sflow_245.ifinpkt")
                + c("sflow_245.ifinmcast")
                + c("sflow_245.ifinbcast"),
                in_errors=c("sflow_245.ifinerr"),
                in_discards=c("sflow_245.ifindisc"),
                out_octets=c("sflow_245.ifoutoct"),
                out_packets=c("sflow_245.ifoutpkt")
                + c("sflow_245.ifoutmcast")
                + c("sflow_245.ifoutbcast"),
                out_errors=c("sflow_245.ifouterr"),
                out_discards=c("sflow_245.ifoutdisc"),
            )
        )
    return out


def decoded_records(result: DecodeResult) -> list[dict[str, object]]:
    out = []
    for row in rows(result.batch):
        exporter = hilo_to_address(row.pop("exporter_hi"), row.pop("exporter_lo"))  # type: ignore[arg-type]
        row["exporter"] = str(exporter)
        for name in (
            "nat_src_hi",
            "nat_src_lo",
            "nat_dst_hi",
            "nat_dst_lo",
            "nat_src_port",
            "nat_dst_port",
            "local_side",
        ):
            assert row.pop(name) == 0
        assert row.pop("customer_id") == row.pop("instance_id") == -1
        out.append(row)
    return out


@pytest.mark.parametrize("name", sorted(SFLOW_FIXTURES))
def test_every_datagram_decodes_as_tshark_reads_it(name: str) -> None:
    path = FIXTURES / name
    frames = tshark_frames(path, [f"udp.port=={SFLOW_FIXTURES[name]},sflow"])
    datagrams, report = read_udp_datagrams(path)
    assert len(datagrams) == len(frames) == report.packets
    results = decode_all(datagrams)
    records = counters = 0
    for datagram, layers, result in zip(datagrams, frames, results, strict=True):
        sflow = layers.get("sflow")
        header, _ = read_datagram_header(datagram.payload)
        assert header.agent == sflow.get("sflow_245.agent", sflow.get("sflow_245.agent.v6"))
        assert header.sub_agent == sflow.int("sflow_245.sub_agent_id")
        assert header.sequence == sflow.int("sflow_245.sequence_number")
        assert header.uptime_ms == sflow.int("sflow_245.sysuptime")
        assert header.samples == sflow.int("sflow_245.numsamples")
        if layers.has("_ws.malformed") or sflow.has("_ws.malformed"):
            assert result.errors, "tshark calls it malformed; the decoder must say so too"
            continue
        assert result.errors == []
        assert decoded_records(result) == expected_records(layers)
        assert result.counters == expected_counters(layers, datagram.src_ip)
        records += len(result.batch)
        counters += len(result.counters)
    assert records > 0
    if name == "pmacct-sflow.pcap":
        assert counters >= 1  # pmacct's agent sent its interface counters


def test_the_same_records_come_from_one_datagram_at_a_time_and_from_many_at_once() -> None:
    for name in SFLOW_FIXTURES:
        datagrams, _ = read_udp_datagrams(FIXTURES / name)
        one_by_one = FlowBatch.concat(r.batch for r in decode_all(datagrams))
        together = SflowDecoder().decode_many(
            (d.payload, d.src_ip, d.timestamp_ms) for d in datagrams
        )
        assert len(together.batch) == len(one_by_one) > 0
        for column in one_by_one.columns:
            assert np.array_equal(together.batch[column], one_by_one[column]), column


def test_pmacct_ipv6_agent_first_datagram_is_malformed_and_the_rest_decodes() -> None:
    # pmacct 1.7.7 garbles the first sample it sends with an IPv6 agent (length 5, no
    # sampling rate): a real exporter's bad datagram.
    datagrams, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow-ipv6.pcap")
    first, *rest = decode_all(datagrams)
    assert [e.reason for e in first.errors] == ["bad-length"]
    assert first.errors[0].exporter == "::1"
    assert "claims 5 bytes" in first.errors[0].detail
    assert len(first.batch) == 0
    assert all(not r.errors and len(r.batch) for r in rest)
    assert {int(s) for r in rest for s in r.batch["sampling"]} == {5}


def test_the_exporter_is_the_udp_source_not_the_agent_address() -> None:
    datagrams, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow.pcap")
    header, _ = read_datagram_header(datagrams[0].payload)
    assert header.agent == "192.0.2.254"
    batch = SflowDecoder().decode(datagrams[0].payload, "198.51.100.7", 1_700_000_000_123).batch
    value = text_to_int("198.51.100.7")
    assert set(batch["exporter_lo"].tolist()) == {value & (2**64 - 1)}
    assert set(batch["exporter_hi"].tolist()) == {0}
    assert set(batch["start"].tolist()) == set(batch["end"].tolist()) == {1_700_000_000_123}


def test_every_truncation_of_every_datagram_is_reported_never_raised() -> None:
    decoder = SflowDecoder()
    for name in SFLOW_FIXTURES:
        datagrams, _ = read_udp_datagrams(FIXTURES / name)
        for datagram in datagrams[:3]:
            payload = datagram.payload
            full = len(decoder.decode(payload, "192.0.2.1", 0).batch)
            for n in range(len(payload)):
                result = decoder.decode(payload[:n], "192.0.2.1", 0)
                assert result.errors, (name, n)
                assert {e.reason for e in result.errors} <= {
                    "truncated",
                    "bad-length",
                    "bad-sample",
                }
                assert len(result.batch) <= full


def test_garbage_and_wrong_versions_are_errors() -> None:
    decoder = SflowDecoder()
    cases = {
        b"": "truncated",
        b"\x00\x00\x00\x05\x00\x00\x00": "truncated",
        struct.pack("!II", 4, 1) + bytes(30): "bad-version",
        struct.pack("!II", 5, 9) + bytes(30): "bad-header",
        bytes(range(256)): "bad-version",
    }
    for payload, reason in cases.items():
        result = decoder.decode(payload, "192.0.2.1", 0)
        assert [e.reason for e in result.errors] == [reason]
        assert len(result.batch) == 0


# --- hand-built datagrams ---------------------------------------------------------------


def xdr_opaque(kind: int, body: bytes) -> bytes:
    assert len(body) % 4 == 0
    return struct.pack("!II", kind, len(body)) + body


def raw_header_record(frame: bytes, frame_length: int | None = None, protocol: int = 1) -> bytes:
    padded = frame + bytes(-len(frame) % 4)
    length = frame_length if frame_length is not None else len(frame) + 4
    return xdr_opaque(1, struct.pack("!IIII", protocol, length, 4, len(frame)) + padded)


def flow_sample(records: list[bytes], rate: int = 1, in_if: int = 5, out_if: int = 6) -> bytes:
    body = struct.pack("!8I", 1, 3, rate, 100, 0, in_if, out_if, len(records))
    return xdr_opaque(1, body + b"".join(records))


def expanded_flow_sample(records: list[bytes], rate: int, in_if: int, out_if: int) -> bytes:
    body = struct.pack("!11I", 1, 0, 70000, rate, 100, 0, 0, in_if, 0, out_if, len(records))
    return xdr_opaque(3, body + b"".join(records))


def generic_counters(if_index: int) -> bytes:
    body = struct.pack(
        "!IIQIIQIIIIIIQIIIIII",
        if_index,
        6,
        10_000_000_000,
        1,
        3,
        123_456_789_012,
        1000,
        20,
        3,
        4,
        5,
        6,
        987_654_321,
        2000,
        30,
        7,
        8,
        9,
        0,
    )
    return xdr_opaque(1, body)


def datagram(samples: list[bytes], count: int | None = None) -> bytes:
    header = struct.pack("!II4sIIII", 5, 1, bytes([10, 0, 0, 1]), 0, 42, 1000, 0)
    header = header[:-4] + struct.pack("!I", len(samples) if count is None else count)
    return header + b"".join(samples)


def tcp_frame(src: str = "192.0.2.10", dst: str = "203.0.113.5") -> bytes:
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        40,
        1,
        0x4000,
        64,
        6,
        0,
        bytes(map(int, src.split("."))),
        bytes(map(int, dst.split("."))),
    )
    tcp = struct.pack("!HHIIBBHHH", 40001, 443, 1, 0, 5 << 4, 0x12, 100, 0, 0)
    return bytes(12) + b"\x08\x00" + ip + tcp


def test_sampling_rate_scales_packets_and_bytes() -> None:
    payload = datagram([flow_sample([raw_header_record(tcp_frame(), frame_length=1518)], 4096)])
    result = SflowDecoder().decode(payload, "192.0.2.1", 5)
    assert result.errors == []
    (row,) = rows(result.batch)
    assert (row["packets"], row["bytes"], row["sampling"]) == (4096, 1518 * 4096, 4096)
    assert (row["src"], row["dst"], row["src_port"], row["dst_port"]) == (
        "192.0.2.10",
        "203.0.113.5",
        40001,
        443,
    )
    assert (row["proto"], row["tcp_flags"], row["in_if"], row["out_if"]) == (6, 0x12, 5, 6)


def test_expanded_samples_and_expanded_counters_are_read() -> None:
    flows = expanded_flow_sample([raw_header_record(tcp_frame())], 512, 70001, 70002)
    counters = xdr_opaque(4, struct.pack("!IIII", 9, 0, 70001, 1) + generic_counters(70001))
    result = SflowDecoder().decode(datagram([flows, counters]), "192.0.2.1", 7)
    assert result.errors == []
    (row,) = rows(result.batch)
    assert (row["in_if"], row["out_if"], row["sampling"]) == (70001, 70002, 512)
    (c,) = result.counters
    assert (c.source_id, c.if_index, c.if_speed) == (70001, 70001, 10_000_000_000)
    assert (c.in_octets, c.in_packets, c.in_discards, c.in_errors) == (123_456_789_012, 1023, 4, 5)
    assert (c.out_octets, c.out_packets, c.out_discards, c.out_errors) == (987_654_321, 2037, 8, 9)
    assert c.received_ms == 7


def test_discarded_and_multiple_output_interfaces_are_not_interface_indexes() -> None:
    discarded = 1 << 30 | 258  # format 1: dropped, reason 258
    several = 2 << 30 | 4  # format 2: sent to 4 interfaces
    payload = datagram(
        [
            flow_sample([raw_header_record(tcp_frame())], out_if=discarded),
            flow_sample([raw_header_record(tcp_frame())], in_if=IF_UNKNOWN, out_if=several),
        ]
    )
    got = [(r["in_if"], r["out_if"]) for r in rows(SflowDecoder().decode(payload, "::1", 0).batch)]
    assert got == [(5, 0), (0, 0)]


def test_unknown_samples_records_and_enterprises_are_skipped_by_their_length() -> None:
    enterprise_sample = xdr_opaque(4300 << 12 | 1, bytes(24))
    odd_record = xdr_opaque(0 << 12 | 2000, bytes(12))
    vendor_record = xdr_opaque(8800 << 12 | 1, bytes(40))
    payload = datagram(
        [
            enterprise_sample,
            flow_sample([odd_record, vendor_record, raw_header_record(tcp_frame())]),
            xdr_opaque(99, b""),
        ]
    )
    result = SflowDecoder().decode(payload, "192.0.2.1", 0)
    assert result.errors == []
    assert len(result.batch) == 1


def test_absurd_sample_and_record_counts_stop_at_the_end_of_the_data() -> None:
    one = flow_sample([raw_header_record(tcp_frame())])
    result = SflowDecoder().decode(datagram([one, one], count=0xFFFFFFFF), "192.0.2.1", 0)
    assert len(result.batch) == 2
    assert [e.reason for e in result.errors] == ["truncated"]

    body = struct.pack("!8I", 1, 3, 1, 100, 0, 5, 6, 0xFFFFFFFF) + raw_header_record(tcp_frame())
    result = SflowDecoder().decode(datagram([xdr_opaque(1, body)]), "192.0.2.1", 0)
    assert len(result.batch) == 1
    assert [e.reason for e in result.errors] == ["truncated"]


def test_lengths_that_cannot_be_true_end_the_datagram_with_an_error() -> None:
    good = flow_sample([raw_header_record(tcp_frame())])
    too_long = struct.pack("!II", 1, 10_000) + bytes(8)
    unaligned = struct.pack("!II", 1, 6) + bytes(8)
    for bad, reason in ((too_long, "truncated"), (unaligned, "bad-length")):
        result = SflowDecoder().decode(datagram([good, bad, good]), "192.0.2.1", 0)
        assert len(result.batch) == 1
        assert [e.reason for e in result.errors] == [reason]
    short_sample = xdr_opaque(1, bytes(16))
    result = SflowDecoder().decode(datagram([short_sample, good]), "192.0.2.1", 0)
    assert len(result.batch) == 1
    assert [e.reason for e in result.errors] == ["bad-sample"]
    trailing = datagram([good]) + bytes(8)
    assert [e.reason for e in SflowDecoder().decode(trailing, "x", 0).errors] == ["bad-length"]


def test_samples_without_an_ip_header_give_no_record() -> None:
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    payload = datagram([flow_sample([raw_header_record(arp)]), flow_sample([])])
    result = SflowDecoder().decode(payload, "192.0.2.1", 0)
    assert result.errors == []
    assert len(result.batch) == 0


def test_sampled_ip_records_and_nat_records_fill_the_schema() -> None:
    v4 = xdr_opaque(
        3,
        struct.pack(
            "!II4s4sIIII", 1400, 17, bytes([192, 0, 2, 1]), bytes([8, 8, 8, 8]), 5353, 53, 0, 0
        ),
    )
    src6 = text_to_int("2001:db8::1").to_bytes(16, "big")
    dst6 = text_to_int("2001:db8::2").to_bytes(16, "big")
    v6 = xdr_opaque(
        4, struct.pack("!II", 1280, 6) + src6 + dst6 + struct.pack("!IIII", 1, 2, 0x18, 0)
    )
    nat = xdr_opaque(
        1007, struct.pack("!I4sI4s", 1, bytes([100, 64, 0, 9]), 1, bytes([8, 8, 4, 4]))
    )
    nat_ports = xdr_opaque(1020, struct.pack("!II", 40000, 53))
    payload = datagram([flow_sample([v4, nat, nat_ports], rate=2), flow_sample([v6])])
    result = SflowDecoder().decode(payload, "192.0.2.1", 0)
    assert result.errors == []
    first, second = rows(result.batch)
    assert (first["src"], first["dst"], first["src_port"], first["dst_port"]) == (
        "192.0.2.1",
        "8.8.8.8",
        5353,
        53,
    )
    assert (first["proto"], first["bytes"], first["packets"]) == (17, 2800, 2)
    assert str(hilo_to_address(first["nat_src_hi"], first["nat_src_lo"])) == "100.64.0.9"  # type: ignore[arg-type]
    assert str(hilo_to_address(first["nat_dst_hi"], first["nat_dst_lo"])) == "8.8.4.4"  # type: ignore[arg-type]
    assert (first["nat_src_port"], first["nat_dst_port"]) == (40000, 53)
    assert (second["src"], second["dst"], second["proto"], second["tcp_flags"]) == (
        "2001:db8::1",
        "2001:db8::2",
        6,
        0x18,
    )


def test_a_large_datagram_takes_the_numpy_path_with_the_same_answer() -> None:
    frames = [tcp_frame(f"192.0.2.{i % 250}", f"203.0.113.{i % 7}") for i in range(100)]
    samples = [flow_sample([raw_header_record(f)], rate=i + 1) for i, f in enumerate(frames)]
    assert len(samples) >= BATCH_MIN_SAMPLES
    payload = datagram(samples)
    whole = SflowDecoder().decode(payload, "192.0.2.1", 0)
    pieces = FlowBatch.concat(
        SflowDecoder().decode(datagram(samples[i : i + 10]), "192.0.2.1", 0).batch
        for i in range(0, 100, 10)
    )
    assert len(whole.batch) == 100
    for column in whole.batch.columns:
        assert np.array_equal(whole.batch[column], pieces[column]), column


def test_random_damage_never_raises_and_both_forms_agree() -> None:
    rng = random.Random(55)
    originals = [
        d.payload for name in SFLOW_FIXTURES for d in read_udp_datagrams(FIXTURES / name)[0]
    ]
    damaged = []
    for _ in range(1500):
        payload = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 8)):
            payload[rng.randrange(len(payload))] = rng.choice((0, 1, 0xFF, rng.randrange(256)))
        damaged.append(bytes(payload[: rng.choice((len(payload), rng.randrange(len(payload))))]))
    damaged += [b"", b"\x00\x00\x00\x05", originals[0][:7], originals[0] + b"\x01"]
    decoder = SflowDecoder()
    assert len(decoder.decode_many([(b"", "192.0.2.1", 0)]).errors) == 1
    assert len(decoder.decode_many([]).batch) == 0
    one_by_one = [decoder.decode(p, "192.0.2.1", 9) for p in damaged]
    together = decoder.decode_many((p, "192.0.2.1", 9) for p in damaged)
    merged = FlowBatch.concat(r.batch for r in one_by_one)
    assert len(together.batch) == len(merged)
    for column in merged.columns:
        assert np.array_equal(together.batch[column], merged[column]), column
    assert together.errors == [e for r in one_by_one for e in r.errors]
    assert sum(bool(r.errors) for r in one_by_one) > 100


def test_decode_many_agrees_with_decode_on_every_hand_built_shape() -> None:
    frame = raw_header_record(tcp_frame())
    v6 = bytes(12) + b"\x86\xdd" + bytes.fromhex("6000000000140640") + bytes(31) + b"\x01"
    v6 += bytes(15) + b"\x02" + struct.pack("!HHIIBBHHH", 1, 2, 0, 0, 0x50, 0x02, 0, 0, 0)
    ip_only = struct.pack("!IIII", 11, 60, 0, 20) + tcp_frame()[14:34]
    shapes = [
        datagram([flow_sample([frame], rate=7)]),
        datagram([expanded_flow_sample([frame], 512, 70001, IF_UNKNOWN)]),
        datagram([flow_sample([xdr_opaque(1001, bytes(16)), frame, xdr_opaque(1002, bytes(16))])]),
        datagram([flow_sample([raw_header_record(v6)]), flow_sample([xdr_opaque(1, ip_only)])]),
        datagram(
            [
                xdr_opaque(2, struct.pack("!III", 1, 3, 1) + generic_counters(3)),
                flow_sample([frame]),
            ]
        ),
        datagram([flow_sample([frame])] * 70),  # more samples than the steps go
        datagram([flow_sample([xdr_opaque(1001, bytes(16))] * 20 + [frame])]),  # more records
        datagram([flow_sample([frame], out_if=1 << 30 | 5), xdr_opaque(4300 << 12 | 1, bytes(8))]),
        datagram([flow_sample([xdr_opaque(1020, struct.pack("!II", 1, 2)), frame])]),
        datagram([flow_sample([frame]), flow_sample([])], count=3),  # one sample missing
        datagram([]),
    ]
    decoder = SflowDecoder()
    items = [(payload, f"192.0.2.{i}", 1000 + i) for i, payload in enumerate(shapes)]
    one_by_one = [decoder.decode(*item) for item in items]
    together = decoder.decode_many(items)
    merged = FlowBatch.concat(r.batch for r in one_by_one)
    assert len(merged) == len(together.batch) == 80
    for column in merged.columns:
        assert np.array_equal(together.batch[column], merged[column]), column
    assert together.errors == [e for r in one_by_one for e in r.errors]
    assert together.counters == [c for r in one_by_one for c in r.counters]
