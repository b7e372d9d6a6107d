"""NetFlow v5: header times and sampling, truncated and over-counted datagrams."""

from __future__ import annotations

from hostwarden.flows.decode import Decoder
from hostwarden.flows.schema import FlowSource
from tests.flows.decode_support import EXPORT_SECS, EXPORTER, rows, v5_datagram


def test_records_get_absolute_times_from_the_header_clock() -> None:
    payload = v5_datagram(
        [{"first": 90_000, "last": 99_500, "src": "192.0.2.7", "dst": "203.0.113.9"}],
        uptime=100_000,
        nsecs=250_000_000,
    )
    result = Decoder().decode(payload, EXPORTER, 0)
    assert result.errors == []
    (row,) = rows(result.batch)
    export_ms = EXPORT_SECS * 1000 + 250
    assert row["start"] == export_ms - 10_000
    assert row["end"] == export_ms - 500
    assert row["source"] == FlowSource.NETFLOW5
    assert (row["exporter"], row["src"], row["dst"]) == (EXPORTER, "192.0.2.7", "203.0.113.9")
    assert row["direction"] == 255  # v5 does not say


def test_a_flow_that_started_before_the_uptime_counter_wrapped_keeps_its_time() -> None:
    payload = v5_datagram([{"first": 2**32 - 1_000, "last": 200}], uptime=500)
    (row,) = rows(Decoder().decode(payload, EXPORTER, 0).batch)
    assert row["start"] == EXPORT_SECS * 1000 - 1_500
    assert row["end"] == EXPORT_SECS * 1000 - 300


def test_header_sampling_interval_scales_packets_and_bytes() -> None:
    for field, rate in ((0x4000 | 100, 100), (0x8000 | 64, 64), (250, 250), (0x4000, 1), (0, 1)):
        payload = v5_datagram([{"packets": 3, "bytes": 1200}], sampling=field)
        (row,) = rows(Decoder().decode(payload, EXPORTER, 0).batch)
        assert (row["packets"], row["bytes"], row["sampling"]) == (3 * rate, 1200 * rate, rate)


def test_every_column_of_a_record() -> None:
    payload = v5_datagram(
        [
            {
                "src_port": 51000,
                "dst_port": 25,
                "proto": 6,
                "tcp_flags": 0x1B,
                "in_if": 3,
                "out_if": 7,
                "packets": 12,
                "bytes": 3400,
            },
            {"proto": 1, "src_port": 0, "dst_port": 0x0303},  # ICMP: type/code as sent
        ]
    )
    first, second = rows(Decoder().decode(payload, EXPORTER, 0).batch)
    assert {k: first[k] for k in ("src_port", "dst_port", "proto", "tcp_flags")} == {
        "src_port": 51000,
        "dst_port": 25,
        "proto": 6,
        "tcp_flags": 0x1B,
    }
    assert (first["in_if"], first["out_if"], first["packets"], first["bytes"]) == (3, 7, 12, 3400)
    assert (first["nat_src"], first["customer_id"], first["local_side"]) == ("", -1, 0)
    assert (second["src_port"], second["dst_port"]) == (0, 0x0303)


def test_a_count_larger_than_the_datagram_decodes_what_is_there() -> None:
    payload = v5_datagram([{}, {}], count=65535)
    result = Decoder().decode(payload, EXPORTER, 0)
    assert len(result.batch) == 2
    assert [e.reason for e in result.errors] == ["truncated"]
    assert "65535" in result.errors[0].detail


def test_a_record_cut_in_half_is_not_decoded() -> None:
    payload = v5_datagram([{}, {}])[:-20]
    result = Decoder().decode(payload, EXPORTER, 0)
    assert len(result.batch) == 1
    assert [e.reason for e in result.errors] == ["truncated"]
